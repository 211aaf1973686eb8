"""The generation service's ``train_generator`` job kind: a training request planned once, then trained.

``plan_training`` is every check a request gets, run once at StartTraining: generator, profile and config
keys, seed, classes (and a class-conditional config's ``num_classes`` against them), the training
manifest (pinned by the sha256 of its bytes; the split rule in ``training_data``) and an initialisation's
fit (a trained model of the same generator, complete, of the same classes when class-conditional, with
equal network-shaping ``model_fields``). A request that would fail is refused with its status instead of
becoming a failed job. The job runs from the plan: it reads the pinned manifest, trains, and checkpoints
into the model's prefix, so a restarted service resumes from the last checkpoint (bit-exactly: the
backend's state holds everything, ``core/training.py`` replays the data order from the step).

The model record (``models.py``) is the domain output ListTrainedModels reads; the framework's
``summary.json`` beside it is what marks the job done.

Class labels. A request's ``classes`` are sorted (``normalise_classes``) and that order is the model's class
order, recorded in ``ModelRecord.classes``: a training item's label reaches the backend as its index in that
list. Only a class-conditional StyleGAN2-ADA (``num_classes > 0``; Karras et al. 2020, ADA, conditional models:
a class embedding in the mapping network and a projection discriminator, Miyato & Koyama 2018) uses the index;
``num_classes`` must then equal ``len(classes)``, checked at plan time. DDPM and unconditional StyleGAN2-ADA
ignore labels, and DermGAN builds its own (image, class, map) set from the items. Sampling maps
``Conditioning.label`` back to the index with the record's ``classes`` (``check_conditioning``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from skingenbench.services.core.classes import CLASSES
from skingenbench.services.core.errors import (
    DataIntegrityError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from skingenbench.services.core.hashing import canonical_json, content_address, output_prefix, sha256_bytes
from skingenbench.services.core.manifest import Item, Manifest, ParentRef, Provenance
from skingenbench.services.generation import models
from skingenbench.services.generation.class_labels import check_class_count
from skingenbench.services.generation.core.backend import as_json, check_seeds
from skingenbench.services.generation.core.registry import GENERATORS, create_backend
from skingenbench.services.generation.core.training import train
from skingenbench.services.generation.training_data import (
    conditional_training_set,
    load_training_images,
    select_training_items,
)
from skingenbench.services.generation.transfer_init import check_init, init_folder
from skingenbench.services.platform.job_kind import JobKind, JobOutputs, JobPlan, ObjectRef
from skingenbench.services.platform.jobs import JobContext, JobInterrupted
from skingenbench.services.platform.manifest_io import read_manifest
from skingenbench.services.platform.servicer import parse_json_field, request_key
from skingenbench.services.platform.store import ObjectStore

from skingenbench.api.v1 import common_pb2, generation_pb2

TRAIN_STAGE, TRAIN_VERSION = "train_generator", "1"
DEFAULT_CLASSES = ("MEL",)


# -- the plan ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainingPlan(JobPlan):
    generator: str
    profile: str
    overrides: dict[str, Any]  # the request's config_json
    config: dict[str, Any]  # the full config (JSON form): what the address hashes and the record keeps
    classes: tuple[str, ...]  # sorted: the model's class order
    seed: int
    name: str
    train: ObjectRef  # the training manifest and the sha256 of its bytes as read at Start
    init: dict[str, str]  # as requested ({"uri"[, "sha256"]}; empty: none): what the address hashes
    init_model: ObjectRef | None  # a trained model to start from, pinned by its record's sha256
    init_folder: str  # or a local folder of pretrained weights ("" for none)


@dataclass
class PlannedTraining:
    """What ``plan_training`` found: the plan, and the training items it pins (by the manifest's sha256)."""

    plan: TrainingPlan
    items: list[Item]

    @property
    def classes(self) -> list[str]:
        return list(self.plan.classes)

    @property
    def seed(self) -> int:
        return self.plan.seed


def normalise_classes(classes: list[str] | tuple[str, ...]) -> list[str]:
    chosen = sorted(set(classes or DEFAULT_CLASSES))
    unknown = [c for c in chosen if c not in CLASSES]
    if unknown:
        raise InvalidArgument(
            f"unknown class(es) {', '.join(unknown)}", field="classes", hint=f"one of: {', '.join(CLASSES)}"
        )
    return chosen


def canonical_request(request: generation_pb2.TrainGeneratorRequest) -> generation_pb2.TrainGeneratorRequest:
    """The request with its defaults spelt out (profile, sorted classes), so that spellings of one request share
    one job id, as they share one model address. Nothing is checked here: ``plan_training`` does that."""
    canonical = generation_pb2.TrainGeneratorRequest()
    canonical.CopyFrom(request)
    canonical.profile = request.profile or "paper"
    canonical.classes[:] = sorted(set(request.classes or DEFAULT_CLASSES))
    return canonical


def _read_manifest(store: ObjectStore, ref: common_pb2.ManifestRef) -> tuple[Manifest, str, str]:
    if not ref.uri:
        raise InvalidArgument("train manifest is required (train.uri)", field="train")
    key = request_key(store, ref.uri, "train.uri")  # a malformed key names the field
    try:
        raw = store.get_bytes(key)
    except NotFound:
        raise NotFound(f"train manifest not found: {store.uri(key)}") from None
    sha = sha256_bytes(raw)
    if ref.sha256 and ref.sha256 != sha:
        raise DataIntegrityError(
            f"manifest {store.uri(key)} has changed since it was referenced (sha256 mismatch)"
        )
    return Manifest.from_json(raw), store.uri(key), sha


def plan_training(
    store: ObjectStore, request: generation_pb2.TrainGeneratorRequest | dict[str, Any]
) -> PlannedTraining:
    """Check a TrainGeneratorRequest completely and work out where its model lives.

    ``request`` may also be the request as a dict (proto field names, int64 values as strings: how job
    records keep it)."""
    if isinstance(request, dict):
        request = json_format.ParseDict(request, generation_pb2.TrainGeneratorRequest())
    generator = request.generator
    if not generator:
        raise InvalidArgument(
            "generator is required", field="generator", hint=f"one of: {', '.join(GENERATORS.names())}"
        )
    GENERATORS.get(generator)  # NotFound for an unknown name
    profile = request.profile or "paper"
    overrides = parse_json_field(request.config_json, "config_json")
    backend = create_backend(generator, profile, overrides)  # unknown keys and bad values refused; no weights
    (seed,) = check_seeds([int(request.seed)])
    classes = normalise_classes(list(request.classes))
    check_class_count(generator, backend.config, classes)
    manifest, uri, sha = _read_manifest(store, request.train)
    items = select_training_items(manifest, classes, uri)
    init = {
        k: v
        for k, v in (("uri", request.init_checkpoint.uri), ("sha256", request.init_checkpoint.sha256))
        if v
    }
    init_model, init_folder = check_init(store, init, backend, generator, classes) if init else (None, "")
    name = str(request.name)
    items_hash = sha256_bytes(canonical_json([item.to_dict() for item in items]).encode())
    identity = {
        "generator": generator,
        "config": dataclasses.asdict(backend.config),
        "classes": classes,
        "name": name,
        "init": init,
    }
    prefix = output_prefix(
        f"models/{generator}", content_address(TRAIN_STAGE, TRAIN_VERSION, [items_hash], identity, seed)
    )
    plan = TrainingPlan(
        prefix,
        generator,
        profile,
        overrides,
        as_json(dataclasses.asdict(backend.config)),
        tuple(classes),
        seed,
        name,
        ObjectRef(uri, sha),
        init,
        init_model,
        init_folder,
    )
    return PlannedTraining(plan, items)


# -- the training job -------------------------------------------------------------------------------------
_prefix_locks: dict[str, threading.Lock] = {}
_prefix_locks_guard = threading.Lock()


def _prefix_lock(prefix: str) -> threading.Lock:
    """Two jobs whose requests differ only in spelling share a prefix: they must not train it at once."""
    with _prefix_locks_guard:
        return _prefix_locks.setdefault(prefix, threading.Lock())


class TrainKind(JobKind[generation_pb2.TrainGeneratorRequest, TrainingPlan]):
    """StartTraining: a generator trained on a train-only manifest, checkpointed into its model prefix."""

    name = "train_generator"
    stage = TRAIN_STAGE
    version = TRAIN_VERSION
    request_type = generation_pb2.TrainGeneratorRequest
    plan_type = TrainingPlan

    def plan(self, request: generation_pb2.TrainGeneratorRequest, store: ObjectStore) -> TrainingPlan:
        return plan_training(store, request).plan

    def run(self, plan: TrainingPlan, ctx: JobContext) -> JobOutputs:
        """Train, checkpointing into the model's prefix; a resumed job continues from the last checkpoint."""
        with _prefix_lock(plan.output_prefix):
            return self._train(plan, ctx)

    def _train(self, plan: TrainingPlan, ctx: JobContext) -> JobOutputs:
        store = ctx.store
        key = f"{plan.output_prefix}/{models.RECORD_NAME}"
        record = models.read_record(store, key) if store.exists(key) else None
        if record is not None and record.complete:
            # Trained to the end by a job that stopped before its completion marker (or by a job of another
            # spelling of the request): the last checkpoint is the final one, nothing is left to train.
            return _training_outputs(store, record, {"reused_model": True})
        backend = create_backend(plan.generator, plan.profile, plan.overrides)
        if as_json(dataclasses.asdict(backend.config)) != plan.config:
            raise FailedPrecondition(
                f"the {plan.generator} profile {plan.profile!r} has changed since the job was "
                "planned; its model address names the old config",
                hint="submit the request again to train under the current config",
            )
        manifest = read_manifest(
            store, plan.train.uri, plan.train.sha256
        )  # DATA_LOSS if it changed since Start
        items = select_training_items(manifest, list(plan.classes), plan.train.uri)
        ctx.progress(0, 0, f"loading {len(items)} training images")
        dataset = load_training_images(
            store, items, backend.resolution, list(plan.classes), ctx.check_cancelled
        )
        if backend.conditional:  # its training set pairs each image with a semantic map
            dataset = conditional_training_set(store, backend, items, dataset)
        total = backend.total_steps_for(len(dataset))
        # A checkpoint replaces whatever initial weights there were: skip the (possibly slow) export.
        resuming = record is not None and bool(record.checkpoint)
        with contextlib.nullcontext(None) if resuming else init_folder(store, plan) as folder:
            backend.build(plan.seed, total_steps=total, init_from=folder)
        config_document = backend.config_json()
        if record is None:
            store.put_bytes(f"{plan.output_prefix}/config.json", config_document.encode(), "application/json")
            record = models.write_record(store, _new_record(plan, key, total, len(dataset)))

        def save(step: int, state: dict[str, Any]) -> None:
            record.checkpoint = models.save_checkpoint(
                store, plan.output_prefix, step, state, config_document
            )
            record.step = step
            models.write_record(store, record)
            models.prune_checkpoints(store, plan.output_prefix)

        def load() -> dict[str, Any] | None:
            if not record.checkpoint:
                return None
            record.training.setdefault("resumed_from", []).append(record.checkpoint["step"])
            return models.load_checkpoint(store, record.checkpoint)

        def report(step: int, total_steps: int, metrics: dict[str, float]) -> None:
            ctx.progress(step, total_steps, "training", **metrics)

        result = train(
            backend,
            dataset,
            seed=plan.seed,
            on_progress=report,
            save_checkpoint=save,
            load_checkpoint=load,
            should_stop=lambda: ctx.should_stop,
            progress_every=max(1, total // 500),
        )
        if result.interrupted:
            ctx.check_cancelled()  # raises: the job stops here and resumes from the checkpoint just written
            raise JobInterrupted("training stopped early")
        record.complete, record.completed_at = True, models.utc_now()
        record.training.update(device=backend.device, metrics=result.metrics)
        models.write_record(store, record)
        return _training_outputs(
            store,
            record,
            {"resumed_from": result.resumed_from, "reused_model": False, "loss": result.metrics.get("loss")},
        )


def _new_record(plan: TrainingPlan, key: str, total: int, dataset_size: int) -> models.ModelRecord:
    settings = {
        "generator": plan.generator,
        "profile": plan.profile,
        "overrides": plan.overrides,
        "config": plan.config,
        "classes": list(plan.classes),
        "name": plan.name,
        "init": plan.init,
    }
    provenance = Provenance(
        stage=f"{TRAIN_STAGE}:{plan.generator}",
        stage_version=TRAIN_VERSION,
        config=settings,
        seed=plan.seed,
        parents=[ParentRef(plan.train.uri, plan.train.sha256)],
    )
    return models.ModelRecord(
        key=key,
        generator=plan.generator,
        profile=plan.profile,
        config=as_json(plan.config),
        overrides=plan.overrides,
        trained_on={"uri": plan.train.uri, "sha256": plan.train.sha256, "item_count": dataset_size},
        classes=list(plan.classes),
        seed=plan.seed,
        name=plan.name,
        total_steps=total,
        provenance=as_json(dataclasses.asdict(provenance)),
        training={"dataset_size": dataset_size},
    )


def _training_outputs(store: ObjectStore, record: models.ModelRecord, extra: dict[str, Any]) -> JobOutputs:
    outputs = JobOutputs(
        summary={
            "model_uri": store.uri(record.key),
            "step": record.step,
            "total_steps": record.total_steps,
            "dataset_size": record.trained_on["item_count"],
            "device": record.training.get("device", ""),
            **extra,
        }
    )
    outputs.add("model", store.uri(record.key), record.sha256)
    outputs.add("checkpoint", store.uri(record.checkpoint["key"]), record.checkpoint["sha256"])
    return outputs
