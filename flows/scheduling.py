"""Submit each cell of the grid as soon as its inputs exist, as many at once as its stage has slots.

The flow used to wait for a whole stage before starting the next (every sample before any classifier,
every test before any comparison), and its thread pool ran at most 8 tasks. Here the flow's thread adds
cells with ``add`` (a task, its arguments, and what to do with its result); a cell whose inputs come
from other cells is added by their ``then`` callbacks, so it starts the moment its last input is done.
Per endpoint pool at most ``pool.capacity()`` cells run (the sum of the endpoints' slots, asked again
as endpoints come and go) plus as many again submitted ahead (``limit``: they wait on the pool's slot, so a
freed slot is taken at once instead of after a Prefect task start), and the rest wait here in order —
not in the task runner's threads, where a cell waiting for a classification slot would hold a thread a
free generation slot could use. The task runner's threads are created on demand, so a run uses about
twice as many as its endpoints have slots.

Everything that submits runs in the flow's own thread (``run`` drains the finished cells' callbacks
there): Prefect tasks are submitted from the flow run's context, never from a worker thread.

A cell that fails is recorded and its dependants never start; every independent cell still runs to the
end (its job is stored and a re-run reuses it), then ``run`` raises ``GridFailed`` naming each failure.
"""

from __future__ import annotations

import contextvars
import dataclasses
import logging
import queue
from collections import deque
from collections.abc import Callable
from typing import Any

from skingenbench.flows.endpoints import EndpointPool
from skingenbench.flows.progress import GridProgress

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class CellContext:
    """What a task knows about the cell it runs (copied into its thread by the task runner)."""

    progress: GridProgress | None
    stage: str
    cell: str


_CURRENT: contextvars.ContextVar[CellContext | None] = contextvars.ContextVar(
    "skingenbench_cell", default=None
)


def current_cell() -> CellContext | None:
    """The cell the running task belongs to (None outside a scheduled cell, e.g. a unit test)."""
    return _CURRENT.get()


class GridFailed(RuntimeError):
    """Cells of the grid failed; the others finished (and are reused by a re-run)."""


@dataclasses.dataclass
class _Cell:
    pool: str
    stage: str
    cell: str
    task: Any
    args: tuple
    kwargs: dict[str, Any]
    tags: tuple[str, ...]
    then: Callable[[Any], None] | None
    summary: Callable[[Any], dict[str, Any]] | None


class CellScheduler:
    """Cells per endpoint pool, submitted as slots allow; ``run`` returns when every cell has ended."""

    def __init__(self, pools: dict[str, EndpointPool], progress: GridProgress | None = None) -> None:
        self.pools = pools
        self.progress = progress
        self._ready: dict[str, deque[_Cell]] = {name: deque() for name in pools}
        self._in_flight: dict[str, int] = dict.fromkeys(pools, 0)
        self._finished: queue.Queue[tuple[_Cell, Any]] = queue.Queue()
        self.failures: list[tuple[str, BaseException]] = []
        self.peak_in_flight = 0  # the most cells submitted at once (what the simulation test reads)

    def add(
        self,
        pool: str,
        stage: str,
        cell: str,
        task: Any,
        *args: Any,
        tags: tuple[str, ...] = (),
        then: Callable[[Any], None] | None = None,
        summary: Callable[[Any], dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        """A cell: ``task(*args, **kwargs)`` on ``pool``'s endpoints, shown as ``cell`` (the task run's
        name) under ``stage``; ``then(result)`` runs in the flow thread when it succeeds."""
        self._ready[pool].append(_Cell(pool, stage, cell, task, args, kwargs, tuple(tags), then, summary))
        self._submit_ready()

    def run(self, poll_s: float = 0.5) -> None:
        """Drain: submit ready cells as slots free, run each finished cell's ``then``; raise
        ``GridFailed`` at the end if any cell failed."""
        while any(self._in_flight.values()) or any(self._ready.values()):
            self._submit_ready()
            try:
                cell, future = self._finished.get(timeout=poll_s)
            except queue.Empty:
                continue  # the pools' capacity may have grown (a new endpoint): look again
            self._in_flight[cell.pool] -= 1
            self._settle(cell, future)
        if self.failures:
            lines = "; ".join(f"{cell}: {exc}" for cell, exc in self.failures)
            raise GridFailed(f"{len(self.failures)} cell(s) of the grid failed: {lines}")

    def limit(self, pool: str) -> int:
        """Cells of a pool in flight at most: twice its slots. The half submitted ahead wait at the pool's
        slot, past Prefect's start of a task run (measured ~1 s on a loaded 2-core machine), so a freed slot
        is taken at once."""
        return 2 * self.pools[pool].capacity()

    def _submit_ready(self) -> None:
        for name, ready in self._ready.items():
            while ready and self._in_flight[name] < self.limit(name):
                self._submit(ready.popleft())
        self.peak_in_flight = max(self.peak_in_flight, sum(self._in_flight.values()))

    def _submit(self, cell: _Cell) -> None:
        named = cell.task.with_options(task_run_name=cell.cell, tags=set(cell.tags))
        token = _CURRENT.set(CellContext(self.progress, cell.stage, cell.cell))
        try:  # the task runner copies this context into the task's thread at submit
            future = named.submit(*cell.args, **cell.kwargs)
        finally:
            _CURRENT.reset(token)
        self._in_flight[cell.pool] += 1
        future.add_done_callback(lambda done: self._finished.put((cell, done)))

    def _settle(self, cell: _Cell, future: Any) -> None:
        try:
            result = future.result()
        except Exception as exc:
            log.error("%s failed: %s", cell.cell, exc)
            self.failures.append((cell.cell, exc))
            if self.progress:
                self.progress.finished(cell.stage, cell.cell, ok=False, result={"error": str(exc)[:200]})
            return
        if self.progress:
            summary = cell.summary(result) if cell.summary else {}
            self.progress.finished(cell.stage, cell.cell, ok=True, result=summary)
        if cell.then is not None:
            try:
                cell.then(result)
            except Exception as exc:  # a bug in the flow's own wiring of the next cells
                log.exception("after %s", cell.cell)
                self.failures.append((cell.cell, exc))
