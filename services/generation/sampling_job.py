"""The generation service's ``sample`` job and what Generate shares with it: sampler options with their
defaults resolved, conditioning checked against what the model can honour, and images written to the store.

Requests arrive as the dicts the job runner persists (proto field names; int64 values as strings). A sample
lives at a content address of (checkpoint, count, resolved sampler, conditioning, seed): a repeated request
finds the finished manifest, and an interrupted one keeps the PNGs it already wrote.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from skingenbench.services.core.errors import (
    Cancelled,
    FailedPrecondition,
    InvalidArgument,
)
from skingenbench.services.core.hashing import content_address, output_prefix, sha256_bytes
from skingenbench.services.core.manifest import (
    MANIFEST_NAME,
    Item,
    Manifest,
    ManifestRef,
    ParentRef,
    Provenance,
)
from skingenbench.services.generation import models
from skingenbench.services.generation.core.backend import GeneratorBackend, SamplerOptions
from skingenbench.services.generation.core.sampling import image_seeds, to_png_bytes
from skingenbench.services.generation.training_job import class_count
from skingenbench.services.platform.jobs import JobContext
from skingenbench.services.platform.manifest_io import write_manifest
from skingenbench.services.platform.store import ObjectStore

SAMPLE_STAGE, SAMPLE_VERSION = "sample", "1"


# -- sampling ---------------------------------------------------------------------------------------------
def sampler_options(data: dict[str, Any] | None) -> SamplerOptions:
    """SamplerOptions from a request's ``sampler`` dict. truncation_psi 0 (the proto default) stays 0,
    "unset": ``resolve_sampler`` gives it the backend's default (StyleGAN2-ADA paper: 0.8, as the
    reference study sampled; 1.0, no truncation, elsewhere)."""
    data = data or {}
    options = SamplerOptions(sampler=str(data.get("sampler", "")), steps=int(data.get("steps", 0)),
                             eta=float(data.get("eta", 0.0)),
                             truncation_psi=float(data.get("truncation_psi") or 0.0),
                             batch_size=int(data.get("batch_size", 0)))
    options.validate()
    return options


def resolve_sampler(backend: GeneratorBackend, options: SamplerOptions) -> SamplerOptions:
    """Defaults filled in, so a manifest records exactly how its images were drawn."""
    if options.truncation_psi == 0.0:
        default_psi = float(getattr(getattr(backend, "config", None), "default_truncation_psi", 1.0))
        options = dataclasses.replace(options, truncation_psi=default_psi)
    resolve = getattr(backend, "resolve_options", None)
    if resolve is None:
        options.validate()
        return dataclasses.replace(options, batch_size=options.batch_size or backend.sample_batch_size)
    resolved = resolve(options)
    if isinstance(resolved, SamplerOptions):
        return resolved
    if isinstance(resolved, int):  # a GAN has one sampler: only the batch size needs a default
        samplers = getattr(backend, "samplers", ()) or ("",)
        return dataclasses.replace(options, sampler=options.sampler or samplers[0], batch_size=resolved)
    sampler, steps, eta, batch_size = resolved
    return SamplerOptions(sampler, steps, eta, options.truncation_psi, batch_size)


def check_conditioning(backend: GeneratorBackend, record: models.ModelRecord,
                       conditioning: dict[str, Any] | None) -> dict[str, Any] | None:
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
        raise InvalidArgument(f"{record.generator} is unconditional (trained on {record.label}); it cannot "
                              f"honour {given}", field="conditioning", hint="leave conditioning empty")
    return None


def class_conditioning(backend: GeneratorBackend, record: models.ModelRecord,
                       conditioning: dict[str, Any]) -> dict[str, Any]:
    """``{"label": name, "class": index}`` for a class-conditional model from a request's ``label``.

    The index is the label's position in the record's sorted ``classes``, the order training used
    (``load_training_images``); the backend draws with the index and ignores the name, which rides along so
    that manifests, replies and the sample's content address say which class was drawn. A conditional model
    has no "class it draws", so a missing label is refused rather than defaulted: a silent default would
    label a synthetic set with a class nobody asked for.
    """
    classes = list(record.classes)
    if len(classes) != class_count(backend.config):
        raise FailedPrecondition(f"model {record.key} is conditioned on {class_count(backend.config)} classes but "
                                 f"its record lists {len(classes)} ({', '.join(classes)}); the class order is "
                                 "unknown", hint="retrain it: StartTraining checks num_classes against classes")
    others = sorted(k for k in conditioning if k != "label")
    if others:
        raise InvalidArgument(f"{record.generator} is conditional on the class only; it cannot honour "
                              f"{', '.join(others)}", field="conditioning",
                              hint=f"give only conditioning.label, one of {', '.join(classes)}")
    label = conditioning.get("label")
    if label is None:
        raise InvalidArgument(f"this {record.generator} model is class-conditional: conditioning.label must name "
                              f"the class to draw, one of {', '.join(classes)}", field="conditioning.label",
                              hint=f"e.g. label {classes[0]!r}")
    if label not in classes:
        raise InvalidArgument(f"this {record.generator} model draws {', '.join(classes)}; it was not trained on "
                              f"{label!r}", field="conditioning.label", hint=f"one of {', '.join(classes)}")
    return {"label": label, "class": classes.index(label)}


def sample_to_store(store: ObjectStore, record: models.ModelRecord, backend: GeneratorBackend, count: int,
                    seed: int, options: SamplerOptions, *, conditioning: dict[str, Any] | None = None,
                    progress: Callable[[int, int, float], None] | None = None,
                    before_batch: Callable[[int, int], None] | None = None) -> tuple[ManifestRef, bool]:
    """Draw ``count`` images (seeds seed..seed+count-1) as PNGs plus a manifest; returns (ref, reused).

    The location is a content address of (checkpoint, count, resolved sampler, conditioning, seed), so a
    repeated request finds the finished manifest and an interrupted one keeps the PNGs it already wrote.
    ``conditioning`` (checked by ``check_conditioning``) goes to the backend unchanged; its ``label`` (the
    requested class of a conditional model) labels the items, else the model's ``record.label``.
    """
    if count < 1:
        raise InvalidArgument(f"count must be >= 1, got {count}", field="count")
    options = resolve_sampler(backend, options)
    seeds = image_seeds(count, seed)
    settings = dataclasses.asdict(options)
    address = content_address(SAMPLE_STAGE, SAMPLE_VERSION, [record.checkpoint["sha256"]],
                              {"count": count, "sampler": settings, "conditioning": conditioning or {}}, seed)
    label = (conditioning or {}).get("label") or record.label
    prefix = output_prefix(f"samples/{record.generator}", address)
    manifest_key = f"{prefix}/{MANIFEST_NAME}"
    if store.exists(manifest_key):
        raw = store.get_bytes(manifest_key)
        return ManifestRef(store.uri(manifest_key), sha256_bytes(raw), count), True
    checkpoint_uri, model_uri = store.uri(record.checkpoint["key"]), store.uri(record.key)
    items: list[Item] = []
    started = time.perf_counter()
    for start in range(0, count, options.batch_size):
        batch = seeds[start:start + options.batch_size]
        keys = [f"{prefix}/images/seed-{s}.png" for s in batch]
        if all(store.exists(k) for k in keys):  # written before an interruption: same seeds, same bytes
            hashes = [sha256_bytes(store.get_bytes(k)) for k in keys]
        else:
            if before_batch is not None:
                before_batch(start, len(batch))
            images = backend.sample(batch, options, conditioning)
            hashes = [store.put_bytes(key, to_png_bytes(image), "image/png").sha256
                      for key, image in zip(keys, images, strict=True)]
        for s, key, sha in zip(batch, keys, hashes, strict=True):
            items.append(Item(key=key, sha256=sha, label=label, lesion_id=f"synthetic-{record.model_id}-{s}",
                              split="train", source=record.generator, image_id=f"{record.model_id}-{s}",
                              meta={"synthetic": True, "seed": s, **settings, "model_uri": model_uri,
                                    "checkpoint_uri": checkpoint_uri, "checkpoint_step": record.step,
                                    **({"conditioning": conditioning} if conditioning else {})}))
        if progress is not None:
            progress(len(items), count, len(items) / max(time.perf_counter() - started, 1e-9))
    provenance = Provenance(
        stage=f"{SAMPLE_STAGE}:{record.generator}", stage_version=SAMPLE_VERSION, seed=seed,
        config={"model_uri": model_uri, "checkpoint_uri": checkpoint_uri, "count": count, "sampler": settings,
                "conditioning": conditioning or {}, "device": backend.device},
        parents=[ParentRef(model_uri, record.sha256),
                 ParentRef(record.trained_on["uri"], record.trained_on["sha256"])])
    manifest = Manifest(items, provenance, name=f"{record.generator}-{record.model_id}-seed{seed}-n{count}",
                        extra={"synthetic": True, "model_uri": model_uri})
    return write_manifest(store, manifest_key, manifest), False


def sample_job(cache: models.BackendCache) -> Callable[[dict[str, Any], JobContext], dict[str, Any]]:
    """The ``sample`` handler, sharing the servicer's cache of loaded models."""

    def handler(request: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        record = models.resolve_model(ctx.store, request.get("model_uri", ""))
        backend = cache.get(record)
        conditioning = check_conditioning(backend, record, request.get("conditioning"))
        count, seed = int(request.get("count", 0)), int(request.get("seed", 0))

        def before_batch(done: int, size: int) -> None:
            if ctx.should_stop:
                ctx.check_cancelled()
                raise Cancelled("sampling stopped")

        def report(done: int, total: int, images_per_second: float) -> None:
            ctx.progress(done, total, "sampling", images_per_second=images_per_second)

        options = sampler_options(request.get("sampler"))
        ref, reused = sample_to_store(ctx.store, record, backend, count, seed, options,
                                      conditioning=conditioning, progress=report, before_batch=before_batch)
        ctx.add_output("manifest", ref.uri, ref.sha256)
        return {"item_count": ref.item_count, "model_uri": ctx.store.uri(record.key),
                "reused_output": reused}

    return handler
