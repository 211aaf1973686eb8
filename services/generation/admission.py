"""What guards the server from synchronous Generate calls: a bounded queue in front of the sampler, and a
per-call deadline checked before every batch.

Generate is the call other tools make (as people call medigan's ``generate()``): at most
``generate_concurrency`` calls sample at once and ``generate_queue`` more may wait; a caller beyond that
gets RESOURCE_EXHAUSTED at once instead of pushing the accelerator out of memory. A batch that the measured
throughput says would finish after the call's deadline is not started. Both limits come from
``SKINGENBENCH_GENERATION_CONCURRENCY`` / ``SKINGENBENCH_GENERATION_QUEUE`` (or the settings' ``extra``);
docs/generation.md is the guide.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator

import grpc
from skingenbench.services.core.errors import Cancelled, ResourceExhausted
from skingenbench.services.platform.server import ServiceContext


def generation_setting(ctx: ServiceContext, name: str, default: int) -> int:
    """An integer setting of the generation service: the settings' ``extra``, else the environment."""
    raw = ctx.settings.extra.get(name) or os.environ.get(f"SKINGENBENCH_GENERATION_{name.upper()}", "")
    return int(raw) if raw else default


class Admission:
    """A bounded queue in front of the sampler: ``running`` calls at once, ``waiting`` more in line."""

    def __init__(self, running: int, waiting: int) -> None:
        self.capacity = max(1, running) + max(0, waiting)
        self._slots = threading.BoundedSemaphore(max(1, running))
        self._lock = threading.Lock()
        self._admitted = 0

    @contextlib.contextmanager
    def slot(self, context: grpc.ServicerContext) -> Iterator[None]:
        with self._lock:
            if self._admitted >= self.capacity:
                raise ResourceExhausted(
                    f"the generator is busy ({self.capacity} Generate calls running or queued)",
                    hint="retry with backoff, or use StartSampling for large sets",
                )
            self._admitted += 1
        try:
            while not self._slots.acquire(timeout=0.05):
                remaining = context.time_remaining()
                if not context.is_active():
                    raise Cancelled("the caller went away while queued")
                if remaining is not None and remaining <= 0:
                    raise TimeoutError("deadline passed while waiting for a free generator slot")
            try:
                yield
            finally:
                self._slots.release()
        finally:
            with self._lock:
                self._admitted -= 1


class Deadline:
    """Refuses to start a batch that the measured throughput says would end after the call's deadline."""

    def __init__(self, context: grpc.ServicerContext, count: int) -> None:
        self.context, self.count = context, count
        self.seconds_per_image = 0.0
        self._pending: tuple[float, int] | None = None  # (start time, size) of the batch being drawn

    def before_batch(self, done: int, size: int) -> None:
        remaining = self.context.time_remaining()
        if remaining is not None and remaining < self.seconds_per_image * size:
            raise TimeoutError(
                f"the deadline would pass before the next {size} image(s) ({done} of "
                f"{self.count} done at {self.seconds_per_image:.2f} s/image); give a longer "
                "deadline or ask for fewer images"
            )
        if not self.context.is_active():  # the deadline passed (gRPC cancels the call) or the caller left
            raise Cancelled("the call ended before the next batch")
        self._pending = (time.perf_counter(), size)

    def after_batch(self) -> None:
        if self._pending is not None:  # batches found already in the store took no time to "draw"
            started, size = self._pending
            self.seconds_per_image = (time.perf_counter() - started) / max(size, 1)
            self._pending = None
