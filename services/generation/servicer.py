"""The generation servicer: registry metadata, training and sampling jobs, and synchronous Generate.

Generate is the call other tools make (as people call medigan's ``generate()``), so it guards the
server: at most ``generate_concurrency`` calls sample at once and ``generate_queue`` more may wait; a
caller beyond that gets RESOURCE_EXHAUSTED at once instead of pushing the accelerator out of memory.
A call's deadline is checked before every batch, and a batch that would finish after it is not started.
Both limits come from ``SKINGENBENCH_GENERATION_CONCURRENCY`` / ``SKINGENBENCH_GENERATION_QUEUE`` (or the
settings' ``extra``); docs/generation.md is the guide.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator

import grpc
from skingenbench.services.core.errors import Cancelled, InvalidArgument, ResourceExhausted
from skingenbench.services.generation import controllability_job, models, sampling_job, training_job
from skingenbench.services.generation.core.backend import GeneratorBackend, SamplerOptions, check_seeds
from skingenbench.services.generation.core.registry import GENERATORS, backend_from_config_json
from skingenbench.services.generation.core.sampling import image_seeds, to_png_bytes
from skingenbench.services.platform.jobs_service import job_reply
from skingenbench.services.platform.server import ServiceContext
from skingenbench.services.platform.servicer import (
    entry_from_description,
    list_response,
    request_to_dict,
    service_info,
)

from skingenbench.api.v1 import common_pb2, generation_pb2, generation_pb2_grpc

INLINE_MAX_IMAGES = 64
INLINE_MAX_BYTES = 32 * 1024 * 1024
STORE_MAX_IMAGES = 10_000  # a synchronous call beyond this is a job: StartSampling


def _setting(ctx: ServiceContext, name: str, default: int) -> int:
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
                raise ResourceExhausted(f"the generator is busy ({self.capacity} Generate calls running or "
                                        "queued)",
                                        hint="retry with backoff, or use StartSampling for large sets")
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
            raise TimeoutError(f"the deadline would pass before the next {size} image(s) ({done} of "
                               f"{self.count} done at {self.seconds_per_image:.2f} s/image); give a longer "
                               "deadline or ask for fewer images")
        if not self.context.is_active():  # the deadline passed (gRPC cancels the call) or the caller left
            raise Cancelled("the call ended before the next batch")
        self._pending = (time.perf_counter(), size)

    def after_batch(self) -> None:
        if self._pending is not None:  # batches found already in the store took no time to "draw"
            started, size = self._pending
            self.seconds_per_image = (time.perf_counter() - started) / max(size, 1)
            self._pending = None


def model_to_proto(store, record: models.ModelRecord) -> generation_pb2.TrainedModel:
    checkpoint = store.uri(record.checkpoint["key"]) if record.checkpoint else ""
    return generation_pb2.TrainedModel(
        model_uri=store.uri(record.key), generator=record.generator, profile=record.profile,
        trained_on=common_pb2.ManifestRef(uri=record.trained_on["uri"], sha256=record.trained_on["sha256"],
                                          item_count=int(record.trained_on["item_count"])),
        classes=record.classes, step=record.step, checkpoint_uri=checkpoint,
        provenance_json=json.dumps(record.provenance, sort_keys=True), complete=record.complete,
        name=record.name)


class GenerationServicer(generation_pb2_grpc.GenerationServicer):
    def __init__(self, ctx: ServiceContext, cache: models.BackendCache) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.cache = cache
        self.admission = Admission(_setting(ctx, "concurrency", 2), _setting(ctx, "queue", 2))

    # -- metadata -----------------------------------------------------------------------------------------
    def GetServiceInfo(self, request, context):
        return service_info(self.ctx, GENERATORS.names())

    def ListModels(self, request, context):
        return list_response(GENERATORS.describe, GENERATORS.names())

    def DescribeModel(self, request, context):
        return entry_from_description(GENERATORS.describe(request.name))

    def ListTrainedModels(self, request, context):
        if request.generator:
            GENERATORS.get(request.generator)
        records = models.list_records(self.store, request.generator)
        return generation_pb2.ListTrainedModelsResponse(
            models=[model_to_proto(self.store, r) for r in records])

    # -- jobs ---------------------------------------------------------------------------------------------
    def StartTraining(self, request, context):
        data = request_to_dict(request)
        plan = training_job.plan_training(self.store, data)  # every refusal happens here, with its status
        data.update(profile=plan.profile, classes=plan.classes)  # spelling variants share one job
        return job_reply(self.ctx.runner, "train_generator", data)

    def StartSampling(self, request, context):
        if request.count <= 0:
            raise InvalidArgument(f"count must be >= 1, got {request.count}", field="count")
        data = request_to_dict(request)
        record = models.resolve_model(self.store, request.model_uri)
        unbuilt = self._check_sampler(record, sampling_job.sampler_options(data.get("sampler")))
        sampling_job.check_conditioning(unbuilt, record, data.get("conditioning"))
        check_seeds([int(request.seed), int(request.seed) + int(request.count) - 1])
        data["model_uri"] = self.store.uri(record.key)  # a name resolves now, not when the job runs
        return job_reply(self.ctx.runner, "sample", data)

    def StartControllability(self, request, context):
        data = request_to_dict(request)
        plan = controllability_job.plan_controllability(self.store, data)  # refusals with their status, now
        self._check_sampler(plan.record, plan.options)
        data["model_uri"] = self.store.uri(plan.record.key)  # a name resolves now, not when the job runs
        return job_reply(self.ctx.runner, "controllability", data)

    def _check_sampler(self, record: models.ModelRecord, options: SamplerOptions) -> GeneratorBackend:
        """Refuse sampler options the model cannot honour before a job exists; returns the backend, unbuilt
        (its config only: no weights are loaded for a check)."""
        unbuilt = backend_from_config_json(self.store.get_bytes(f"{record.prefix}/config.json"))
        sampling_job.resolve_sampler(unbuilt, options)
        return unbuilt

    # -- synchronous generation -----------------------------------------------------------------------------
    def Generate(self, request, context):
        count, seed = int(request.count), int(request.seed)
        if count <= 0:
            raise InvalidArgument(f"count must be >= 1, got {count}", field="count")
        to_store = request.output == generation_pb2.OUTPUT_MODE_STORE
        if not to_store and count > INLINE_MAX_IMAGES:
            raise ResourceExhausted(f"{count} images exceed the inline cap of {INLINE_MAX_IMAGES}",
                                    hint="use output OUTPUT_MODE_STORE, StartSampling, or several calls with "
                                         "seed offsets (image i has seed + i)")
        if to_store and count > STORE_MAX_IMAGES:
            raise ResourceExhausted(f"{count} images exceed the synchronous cap of {STORE_MAX_IMAGES}",
                                    hint="use StartSampling (a job) for large sets")
        seeds = image_seeds(count, seed)
        options = sampling_job.sampler_options(request_to_dict(request.sampler))
        record = models.resolve_model(self.store, request.model)
        with self.admission.slot(context):
            backend = self.cache.get(record)
            options = sampling_job.resolve_sampler(backend, options)
            conditioning = sampling_job.check_conditioning(backend, record, request_to_dict(request.conditioning))
            deadline = Deadline(context, count)
            model_uri = self.store.uri(record.key)
            if to_store:
                ref, _ = sampling_job.sample_to_store(self.store, record, backend, count, seed, options,
                                              conditioning=conditioning, before_batch=deadline.before_batch,
                                              progress=lambda *_: deadline.after_batch())
                return generation_pb2.GenerateResponse(model_uri=model_uri, manifest=common_pb2.ManifestRef(
                    uri=ref.uri, sha256=ref.sha256, item_count=ref.item_count))
            return self._inline(backend, record, seeds, options, conditioning, deadline, model_uri)

    def _inline(self, backend, record, seeds, options, conditioning, deadline,
                model_uri) -> generation_pb2.GenerateResponse:
        if len(seeds) * backend.resolution ** 2 * 3 > INLINE_MAX_BYTES:
            side = backend.resolution
            raise ResourceExhausted(f"{len(seeds)} images of {side}x{side} may exceed the inline cap of "
                                    f"{INLINE_MAX_BYTES >> 20} MiB", hint="use OUTPUT_MODE_STORE")
        response = generation_pb2.GenerateResponse(model_uri=model_uri)
        label = (conditioning or {}).get("label") or record.label
        conditioning_json = json.dumps(conditioning or {"label": label}, sort_keys=True)
        size, total_bytes = options.batch_size, 0
        for start in range(0, len(seeds), size):
            batch = seeds[start:start + size]
            deadline.before_batch(start, len(batch))
            images = backend.sample(batch, options, conditioning)
            deadline.after_batch()
            for image_seed, image in zip(batch, images, strict=True):
                png = to_png_bytes(image)
                total_bytes += len(png)
                if total_bytes > INLINE_MAX_BYTES:
                    raise ResourceExhausted(f"the PNGs exceed the inline cap of {INLINE_MAX_BYTES >> 20} MiB",
                                            hint="use OUTPUT_MODE_STORE")
                response.images.add(png=png, seed=image_seed, label=label,
                                    conditioning_json=conditioning_json)
        return response


def setup(ctx: ServiceContext) -> None:
    cache = models.BackendCache(ctx.store, size=_setting(ctx, "model_cache", 2))
    generation_pb2_grpc.add_GenerationServicer_to_server(GenerationServicer(ctx, cache), ctx.server)
    ctx.runner.register_handler("train_generator", training_job.train_generator_job)
    ctx.runner.register_handler("sample", sampling_job.sample_job(cache))
    ctx.runner.register_handler("controllability", controllability_job.controllability_job(cache))
