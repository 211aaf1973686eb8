"""The generation service's ``sample`` job kind and what Generate shares with it: sampler options with their
defaults resolved, conditioning checked against what the model can honour, and images written to the store.

Every check runs once, at Start (``check_sampling``, against the model's config alone: no weights are loaded
for a check). The plan pins the model record by its sha256 and carries the resolved sampler and the checked
conditioning, so the job draws exactly what was planned. A sample lives at a content address of
(checkpoint, count, resolved sampler, conditioning, seed); an interrupted job keeps the PNGs it already
wrote and a re-run finds them, and the framework's completion marker says when the set is finished.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from skingenbench.services.core.errors import (
    Cancelled,
    FailedPrecondition,
    InvalidArgument,
    SkinGenBenchError,
)
from skingenbench.services.core.hashing import content_address, output_prefix, sha256_bytes
from skingenbench.services.core.manifest import MANIFEST_NAME, Item, Manifest, ParentRef, Provenance
from skingenbench.services.generation import models
from skingenbench.services.generation.class_labels import class_count
from skingenbench.services.generation.core.backend import GeneratorBackend, SamplerOptions, check_seeds
from skingenbench.services.generation.core.registry import backend_from_config_json
from skingenbench.services.generation.core.sampling import image_seeds, to_png_bytes
from skingenbench.services.platform.job_kind import JobKind, JobOutputs, JobPlan, ObjectRef
from skingenbench.services.platform.jobs import JobContext
from skingenbench.services.platform.manifest_io import write_manifest
from skingenbench.services.platform.servicer import request_to_dict
from skingenbench.services.platform.store import ObjectStore

from skingenbench.api.v1 import generation_pb2

SAMPLE_STAGE, SAMPLE_VERSION = "sample", "1"
RequestWithModel = TypeVar(
    "RequestWithModel", generation_pb2.SampleRequest, generation_pb2.ControllabilityRequest
)


# -- sampling ---------------------------------------------------------------------------------------------
def sampler_options(data: dict[str, Any] | None) -> SamplerOptions:
    """SamplerOptions from a request's ``sampler`` dict. truncation_psi 0 (the proto default) stays 0,
    "unset": ``resolve_sampler`` gives it the backend's default (StyleGAN2-ADA paper: 0.8, as the
    reference study sampled; 1.0, no truncation, elsewhere)."""
    data = data or {}
    options = SamplerOptions(
        sampler=str(data.get("sampler", "")),
        steps=int(data.get("steps", 0)),
        eta=float(data.get("eta", 0.0)),
        truncation_psi=float(data.get("truncation_psi") or 0.0),
        batch_size=int(data.get("batch_size", 0)),
    )
    options.validate()
    return options


def resolve_sampler(backend: GeneratorBackend, options: SamplerOptions) -> SamplerOptions:
    """Defaults filled in, so a manifest records exactly how its images were drawn."""
    if options.truncation_psi == 0.0:
        default_psi = float(getattr(getattr(backend, "config", None), "default_truncation_psi", 1.0))
        options = dataclasses.replace(options, truncation_psi=default_psi)
    return backend.resolve_options(options)


def check_conditioning(
    backend: GeneratorBackend, record: models.ModelRecord, conditioning: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The conditioning the backend is given, from a request's ``Conditioning`` (as a dict).

    - A conditional backend (DermGAN, semantic maps) gets the fields as they are.
    - A class-conditional StyleGAN2-ADA (``num_classes > 0``) needs a ``label``: see ``class_conditioning``.
    - Unconditional generators take no conditioning but a label equal to the class they learnt.
    """
    conditioning = {k: v for k, v in (conditioning or {}).items() if not (v is None or v is False or v == "")}
    if backend.conditional:
        return conditioning or None
    if class_count(backend.config):
        return class_conditioning(backend, record, conditioning)
    label = conditioning.pop("label", record.label)
    if label != record.label or conditioning:
        given = ", ".join(sorted(conditioning)) or f"label {label!r}"
        raise InvalidArgument(
            f"{record.generator} is unconditional (trained on {record.label}); it cannot honour {given}",
            field="conditioning",
            hint="leave conditioning empty",
        )
    return None


def class_conditioning(
    backend: GeneratorBackend, record: models.ModelRecord, conditioning: dict[str, Any]
) -> dict[str, Any]:
    """``{"label": name, "class": index}`` for a class-conditional model from a request's ``label``.

    The index is the label's position in the record's sorted ``classes``, the order training used
    (``load_training_images``); the backend draws with the index and ignores the name, which rides along so
    that manifests, replies and the sample's content address say which class was drawn. A conditional model
    has no "class it draws", so a missing label is refused rather than defaulted: a silent default would
    label a synthetic set with a class nobody asked for.
    """
    classes = list(record.classes)
    if len(classes) != class_count(backend.config):
        raise FailedPrecondition(
            f"model {record.key} is conditioned on {class_count(backend.config)} classes but "
            f"its record lists {len(classes)} ({', '.join(classes)}); the class order is "
            "unknown",
            hint="retrain it: StartTraining checks num_classes against classes",
        )
    others = sorted(k for k in conditioning if k != "label")
    if others:
        raise InvalidArgument(
            f"{record.generator} is conditional on the class only; it cannot honour {', '.join(others)}",
            field="conditioning",
            hint=f"give only conditioning.label, one of {', '.join(classes)}",
        )
    label = conditioning.get("label")
    if label is None:
        raise InvalidArgument(
            f"this {record.generator} model is class-conditional: conditioning.label must name "
            f"the class to draw, one of {', '.join(classes)}",
            field="conditioning.label",
            hint=f"e.g. label {classes[0]!r}",
        )
    if label not in classes:
        raise InvalidArgument(
            f"this {record.generator} model draws {', '.join(classes)}; it was not trained on {label!r}",
            field="conditioning.label",
            hint=f"one of {', '.join(classes)}",
        )
    return {"label": label, "class": classes.index(label)}


# -- checks at Start ----------------------------------------------------------------------------------------
def unbuilt_backend(store: ObjectStore, record: models.ModelRecord) -> GeneratorBackend:
    """The model's backend with its config only (no weights): what a check at Start needs."""
    return backend_from_config_json(store.get_bytes(f"{record.prefix}/config.json"))


@dataclass(frozen=True)
class CheckedSampling:
    """A sampling request that passed every check: the model, the resolved sampler, the conditioning."""

    record: models.ModelRecord
    options: SamplerOptions
    conditioning: dict[str, Any] | None


def check_sampling(
    store: ObjectStore,
    model: str,
    count: int,
    seed: int,
    sampler: dict[str, Any] | None,
    conditioning: dict[str, Any] | None,
) -> CheckedSampling:
    """Everything StartSampling and Generate refuse, checked once: count, seeds, sampler, model, conditioning.

    ``sampler`` and ``conditioning`` are the request's messages as dicts (proto field names)."""
    if count <= 0:
        raise InvalidArgument(f"count must be >= 1, got {count}", field="count")
    check_seeds([seed, seed + count - 1])  # image i has seed + i: the first and the last bound them all
    options = sampler_options(sampler)
    record = models.resolve_model(store, model)
    unbuilt = unbuilt_backend(store, record)
    options = resolve_sampler(unbuilt, options)
    return CheckedSampling(record, options, check_conditioning(unbuilt, record, conditioning))


def with_resolved_model(store: ObjectStore, request: RequestWithModel) -> RequestWithModel:
    """The request with a model name ("ddpm", a run's label) replaced by the URI of the model it names now.

    A name resolves when the job is started, not when it runs, and the job's id hashes the request: so a
    request by name after a newer model was trained is a new job for that model, not the old job found again.
    A reference that does not resolve is left as it is: the kind's plan refuses it, in its order of checks.
    """
    if not request.model_uri or "/" in request.model_uri:
        return request  # empty, or a record URI/key/prefix: nothing to resolve
    try:
        record = models.resolve_model(store, request.model_uri)
    except SkinGenBenchError:
        return request
    resolved = type(request)()
    resolved.CopyFrom(request)
    resolved.model_uri = store.uri(record.key)
    return resolved


# -- the sample job -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SamplePlan(JobPlan):
    model: ObjectRef  # the model record, pinned by the sha256 of its bytes at Start
    generator: str
    count: int
    seed: int
    sampler: SamplerOptions  # defaults resolved: exactly how the images are drawn and recorded
    conditioning: dict[str, Any]  # as checked ({}: none), what the backend is given


def sample_plan(store: ObjectStore, checked: CheckedSampling, count: int, seed: int) -> SamplePlan:
    """The plan of a checked request; its prefix is the content address the sample has always had."""
    record, conditioning = checked.record, checked.conditioning or {}
    address = content_address(
        SAMPLE_STAGE,
        SAMPLE_VERSION,
        [record.checkpoint["sha256"]],
        {"count": count, "sampler": dataclasses.asdict(checked.options), "conditioning": conditioning},
        seed,
    )
    return SamplePlan(
        output_prefix(f"samples/{record.generator}", address),
        ObjectRef(store.uri(record.key), record.sha256),
        record.generator,
        count,
        seed,
        checked.options,
        conditioning,
    )


def draw_samples(
    store: ObjectStore,
    plan: SamplePlan,
    record: models.ModelRecord,
    backend: GeneratorBackend,
    *,
    progress: Callable[[int, int, float], None] | None = None,
    before_batch: Callable[[int, int], None] | None = None,
) -> JobOutputs:
    """Draw the plan's images (seeds seed..seed+count-1) as PNGs, then the manifest that lists them.

    PNGs already in the prefix (written before an interruption: same seeds, same bytes) are kept. The
    conditioning's ``label`` (the requested class of a conditional model) labels the items, else the
    model's ``record.label``.
    """
    options, conditioning = plan.sampler, plan.conditioning or None
    settings = dataclasses.asdict(options)
    label = (conditioning or {}).get("label") or record.label
    seeds = image_seeds(plan.count, plan.seed)
    checkpoint_uri, model_uri = store.uri(record.checkpoint["key"]), store.uri(record.key)
    items: list[Item] = []
    started = time.perf_counter()
    for start in range(0, plan.count, options.batch_size):
        batch = seeds[start : start + options.batch_size]
        keys = [f"{plan.output_prefix}/images/seed-{s}.png" for s in batch]
        if all(store.exists(k) for k in keys):
            hashes = [sha256_bytes(store.get_bytes(k)) for k in keys]
        else:
            if before_batch is not None:
                before_batch(start, len(batch))
            images = backend.sample(batch, options, conditioning)
            hashes = [
                store.put_bytes(key, to_png_bytes(image), "image/png").sha256
                for key, image in zip(keys, images, strict=True)
            ]
        for s, key, sha in zip(batch, keys, hashes, strict=True):
            items.append(
                Item(
                    key=key,
                    sha256=sha,
                    label=label,
                    lesion_id=f"synthetic-{record.model_id}-{s}",
                    split="train",
                    source=record.generator,
                    image_id=f"{record.model_id}-{s}",
                    meta={
                        "synthetic": True,
                        "seed": s,
                        **settings,
                        "model_uri": model_uri,
                        "checkpoint_uri": checkpoint_uri,
                        "checkpoint_step": record.step,
                        **({"conditioning": conditioning} if conditioning else {}),
                    },
                )
            )
        if progress is not None:
            progress(len(items), plan.count, len(items) / max(time.perf_counter() - started, 1e-9))
    provenance = Provenance(
        stage=f"{SAMPLE_STAGE}:{record.generator}",
        stage_version=SAMPLE_VERSION,
        seed=plan.seed,
        config={
            "model_uri": model_uri,
            "checkpoint_uri": checkpoint_uri,
            "count": plan.count,
            "sampler": settings,
            "conditioning": conditioning or {},
            "device": backend.device,
        },
        parents=[
            ParentRef(model_uri, record.sha256),
            ParentRef(record.trained_on["uri"], record.trained_on["sha256"]),
        ],
    )
    manifest = Manifest(
        items,
        provenance,
        name=f"{record.generator}-{record.model_id}-seed{plan.seed}-n{plan.count}",
        extra={"synthetic": True, "model_uri": model_uri},
    )
    ref = write_manifest(store, f"{plan.output_prefix}/{MANIFEST_NAME}", manifest)
    outputs = JobOutputs(
        summary={"item_count": ref.item_count, "model_uri": model_uri, "reused_output": False}
    )
    outputs.add("manifest", ref.uri, ref.sha256)
    return outputs


class SampleKind(JobKind[generation_pb2.SampleRequest, SamplePlan]):
    """StartSampling: ``count`` images of a trained model into the store, with a manifest."""

    name = "sample"
    stage = SAMPLE_STAGE
    version = SAMPLE_VERSION
    request_type = generation_pb2.SampleRequest
    plan_type = SamplePlan

    def __init__(self, cache: models.BackendCache) -> None:
        self.cache = cache  # shared with Generate: a model loaded once serves both

    def plan(self, request: generation_pb2.SampleRequest, store: ObjectStore) -> SamplePlan:
        count, seed = int(request.count), int(request.seed)
        checked = check_sampling(
            store,
            request.model_uri,
            count,
            seed,
            request_to_dict(request.sampler),
            request_to_dict(request.conditioning),
        )
        return sample_plan(store, checked, count, seed)

    def run(self, plan: SamplePlan, ctx: JobContext) -> JobOutputs:
        record = models.read_record(ctx.store, plan.model.uri, plan.model.sha256)
        backend = self.cache.get(record)

        def before_batch(done: int, size: int) -> None:
            if ctx.should_stop:
                ctx.check_cancelled()
                raise Cancelled("sampling stopped")

        def report(done: int, total: int, images_per_second: float) -> None:
            ctx.progress(done, total, "sampling", images_per_second=images_per_second)

        return draw_samples(ctx.store, plan, record, backend, progress=report, before_batch=before_batch)
