"""Generate, the synchronous call other tools make: images inline in the reply, or a set into the store.

Both modes check the request once, as StartSampling does (``sampling_job.check_sampling``), before they take
a generator slot (``admission.Admission``); a refused request never waits in line. Inline images are capped
by count and bytes (gRPC messages are small: DESIGN.md, rule 1). A set into the store is the ``sample`` job's
plan run synchronously: the same content address, the same files and the same completion marker, so a
finished set (from a job or an earlier call) is returned without drawing anything.
"""

from __future__ import annotations

import json

import grpc
from skingenbench.services.core.errors import InvalidArgument, ResourceExhausted
from skingenbench.services.generation import models
from skingenbench.services.generation.admission import Admission, Deadline
from skingenbench.services.generation.core.backend import GeneratorBackend
from skingenbench.services.generation.core.sampling import image_seeds, to_png_bytes
from skingenbench.services.generation.sampling_job import (
    CheckedSampling,
    check_sampling,
    draw_samples,
    sample_plan,
)
from skingenbench.services.platform.job_kind import finished_outputs, mark_finished
from skingenbench.services.platform.servicer import request_to_dict
from skingenbench.services.platform.store import ObjectStore

from skingenbench.api.v1 import common_pb2, generation_pb2

INLINE_MAX_IMAGES = 64
INLINE_MAX_BYTES = 32 * 1024 * 1024
STORE_MAX_IMAGES = 10_000  # a synchronous call beyond this is a job: StartSampling


def generate(
    store: ObjectStore,
    cache: models.BackendCache,
    admission: Admission,
    request: generation_pb2.GenerateRequest,
    context: grpc.ServicerContext,
) -> generation_pb2.GenerateResponse:
    count, seed = int(request.count), int(request.seed)
    if count <= 0:
        raise InvalidArgument(f"count must be >= 1, got {count}", field="count")
    to_store = request.output == generation_pb2.OUTPUT_MODE_STORE
    if not to_store and count > INLINE_MAX_IMAGES:
        raise ResourceExhausted(
            f"{count} images exceed the inline cap of {INLINE_MAX_IMAGES}",
            hint="use output OUTPUT_MODE_STORE, StartSampling, or several calls with "
            "seed offsets (image i has seed + i)",
        )
    if to_store and count > STORE_MAX_IMAGES:
        raise ResourceExhausted(
            f"{count} images exceed the synchronous cap of {STORE_MAX_IMAGES}",
            hint="use StartSampling (a job) for large sets",
        )
    checked = check_sampling(
        store,
        request.model,
        count,
        seed,
        request_to_dict(request.sampler),
        request_to_dict(request.conditioning),
    )
    model_uri = store.uri(checked.record.key)
    if to_store:
        ref = _to_store(store, cache, admission, checked, count, seed, context)
        return generation_pb2.GenerateResponse(model_uri=model_uri, manifest=ref)
    with admission.slot(context):
        backend = cache.get(checked.record)
        response = generation_pb2.GenerateResponse(model_uri=model_uri)
        _inline(response, backend, checked, image_seeds(count, seed), Deadline(context, count))
        return response


def _to_store(
    store: ObjectStore,
    cache: models.BackendCache,
    admission: Admission,
    checked: CheckedSampling,
    count: int,
    seed: int,
    context: grpc.ServicerContext,
) -> common_pb2.ManifestRef:
    plan = sample_plan(store, checked, count, seed)
    outputs = finished_outputs(store, plan)
    if outputs is None:
        with admission.slot(context):
            backend = cache.get(checked.record)
            deadline = Deadline(context, count)
            outputs = draw_samples(
                store,
                plan,
                checked.record,
                backend,
                before_batch=deadline.before_batch,
                progress=lambda *_: deadline.after_batch(),
            )
        mark_finished(store, plan, outputs)  # last, as the job runner does: every file it names is stored
    manifest = outputs.files["manifest"]
    return common_pb2.ManifestRef(uri=manifest.uri, sha256=manifest.sha256, item_count=count)


def _inline(
    response: generation_pb2.GenerateResponse,
    backend: GeneratorBackend,
    checked: CheckedSampling,
    seeds: list[int],
    deadline: Deadline,
) -> None:
    options, conditioning = checked.options, checked.conditioning
    if len(seeds) * backend.resolution**2 * 3 > INLINE_MAX_BYTES:
        side = backend.resolution
        raise ResourceExhausted(
            f"{len(seeds)} images of {side}x{side} may exceed the inline cap of {INLINE_MAX_BYTES >> 20} MiB",
            hint="use OUTPUT_MODE_STORE",
        )
    label = (conditioning or {}).get("label") or checked.record.label
    conditioning_json = json.dumps(conditioning or {"label": label}, sort_keys=True)
    size, total_bytes = options.batch_size, 0
    for start in range(0, len(seeds), size):
        batch = seeds[start : start + size]
        deadline.before_batch(start, len(batch))
        images = backend.sample(batch, options, conditioning)
        deadline.after_batch()
        for image_seed, image in zip(batch, images, strict=True):
            png = to_png_bytes(image)
            total_bytes += len(png)
            if total_bytes > INLINE_MAX_BYTES:
                raise ResourceExhausted(
                    f"the PNGs exceed the inline cap of {INLINE_MAX_BYTES >> 20} MiB",
                    hint="use OUTPUT_MODE_STORE",
                )
            response.images.add(png=png, seed=image_seed, label=label, conditioning_json=conditioning_json)
