"""The generation service's ``train_generator`` job: requests checked and planned, data loaded, training run.

Requests arrive as the dicts the job runner persists (proto field names; int64 values as strings).
``plan_training`` is also what StartTraining runs before it accepts a job, so a request that would fail
is refused at once with its status instead of becoming a failed job.

Training data rule (DESIGN.md, science rules: a generator never sees evaluation images). Every item of
the requested classes in the named manifest must carry ``split == "train"``; one val, test or unsplit
item of those classes refuses the whole request with FAILED_PRECONDITION rather than being filtered
out, so a caller who passed the wrong manifest finds out instead of training on a silently different
set. Items of other classes are ignored whatever their split. Callers pass a train-only manifest,
e.g. the preprocessing output of ``splits: ["train"]``.

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
import json
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
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
from skingenbench.services.generation.core.backend import GeneratorBackend, check_seeds
from skingenbench.services.generation.core.registry import GENERATORS, create_backend
from skingenbench.services.generation.core.training import train
from skingenbench.services.platform.jobs import JobContext, JobInterrupted
from skingenbench.services.platform.manifest_io import read_item, read_verified
from skingenbench.services.platform.servicer import parse_json_field
from skingenbench.services.platform.store import ObjectStore

TRAIN_STAGE, TRAIN_VERSION = "train_generator", "1"
DEFAULT_CLASSES = ("MEL",)


# -- training requests ------------------------------------------------------------------------------------
@dataclass
class TrainingPlan:
    generator: str
    profile: str
    overrides: dict[str, Any]
    config: Any
    classes: list[str]
    seed: int
    name: str
    manifest_uri: str
    manifest_sha256: str
    items: list[Item]
    init: dict[str, str]  # {"uri", "sha256"} or empty
    prefix: str


def normalise_classes(classes: list[str] | tuple[str, ...]) -> list[str]:
    chosen = sorted(set(classes or DEFAULT_CLASSES))
    unknown = [c for c in chosen if c not in CLASSES]
    if unknown:
        raise InvalidArgument(f"unknown class(es) {', '.join(unknown)}", field="classes",
                              hint=f"one of: {', '.join(CLASSES)}")
    return chosen


def _read_manifest(store: ObjectStore, ref: dict[str, Any]) -> tuple[Manifest, str, str]:
    uri = ref.get("uri", "")
    if not uri:
        raise InvalidArgument("train manifest is required (train.uri)", field="train")
    key = store.key_from_uri(uri)
    try:
        raw = store.get_bytes(key)
    except NotFound:
        raise NotFound(f"train manifest not found: {store.uri(key)}") from None
    sha = sha256_bytes(raw)
    if ref.get("sha256") and ref["sha256"] != sha:
        raise DataIntegrityError(f"manifest {store.uri(key)} has changed since it was referenced "
                                 "(sha256 mismatch)")
    return Manifest.from_json(raw), store.uri(key), sha


def select_training_items(manifest: Manifest, classes: list[str], uri: str = "") -> list[Item]:
    """The items a generator trains on; refuses the manifest if any item of the classes is not train."""
    chosen = [item for item in manifest.items if item.label in classes]
    leaking = [item for item in chosen if item.split != "train"]
    if leaking:
        by_split: dict[str, int] = {}
        for item in leaking:
            by_split[item.split or "(none)"] = by_split.get(item.split or "(none)", 0) + 1
        counts = ", ".join(f"{n} {s}" for s, n in sorted(by_split.items()))
        raise FailedPrecondition(
            f"the training manifest {uri} holds {counts} item(s) of {'+'.join(classes)} outside the train "
            "split; generators are trained on training-split items only",
            hint="pass a train-only manifest, e.g. preprocess with splits=['train']", split_counts=counts)
    if not chosen:
        raise FailedPrecondition(f"the training manifest {uri} has no train items of {'+'.join(classes)}")
    return chosen


def class_count(config: Any) -> int:
    """How many classes a config's network is conditioned on by class index (0: not class-conditional).

    StyleGAN2-ADA's ``num_classes``. DermGAN conditions on semantic maps (``backend.conditional``), not on a
    class index, and DDPM is unconditional: both have no ``num_classes`` and count 0 here.
    """
    return int(getattr(config, "num_classes", 0) or 0)


def check_class_count(generator: str, config: Any, classes: list[str]) -> None:
    """A class-conditional config must have exactly one class per requested class.

    The network's class i is ``classes[i]`` (sorted); with more outputs than classes some embeddings would never
    see an image, with fewer the labels would not fit. ``num_classes`` is not filled in from ``classes``: it is
    part of the config that defines the weights (and the model's address), so it says what the user wrote, and
    0 with several classes stays a legitimate choice (one unconditional model over their union).
    """
    wanted = class_count(config)
    if wanted and wanted != len(classes):
        raise InvalidArgument(
            f"{generator} config has num_classes={wanted}, but the request trains on {len(classes)} class(es) "
            f"({', '.join(classes)}); a class-conditional model needs exactly one class per requested class",
            field="config_json",
            hint=f'set "num_classes": {len(classes)} (class index i = the i-th of {", ".join(classes)}, '
                 'sorted) and/or list the classes in "classes"; or "num_classes": 0 for one unconditional '
                 "model over their union")


def plan_training(store: ObjectStore, request: dict[str, Any]) -> TrainingPlan:
    """Validate a TrainGeneratorRequest (as a dict) completely and work out where its model lives."""
    generator = request.get("generator") or ""
    if not generator:
        raise InvalidArgument("generator is required", field="generator",
                              hint=f"one of: {', '.join(GENERATORS.names())}")
    GENERATORS.get(generator)  # NotFound for an unknown name
    profile = request.get("profile") or "paper"
    overrides = parse_json_field(request.get("config_json", ""), "config_json")
    config = GENERATORS.config(generator, profile, overrides)
    (seed,) = check_seeds([int(request.get("seed", 0))])
    classes = normalise_classes(request.get("classes") or [])
    check_class_count(generator, config, classes)
    manifest, uri, sha = _read_manifest(store, request.get("train") or {})
    items = select_training_items(manifest, classes, uri)
    init = {k: v for k, v in (request.get("init_checkpoint") or {}).items() if k in ("uri", "sha256") and v}
    if init:
        _check_init(store, init, generator, profile, overrides, classes)
    name = str(request.get("name", ""))
    items_hash = sha256_bytes(canonical_json([item.to_dict() for item in items]).encode())
    identity = {"generator": generator, "config": dataclasses.asdict(config), "classes": classes,
                "name": name, "init": init}
    prefix = output_prefix(f"models/{generator}",
                           content_address(TRAIN_STAGE, TRAIN_VERSION, [items_hash], identity, seed))
    return TrainingPlan(generator, profile, overrides, config, classes, seed, name, uri, sha, items, init,
                        prefix)


# -- initialisation (transfer learning) -------------------------------------------------------------------
def _local_folder(store: ObjectStore, uri: str) -> Path | None:
    """A folder on this machine named by a path or a file:// URI outside the store, else None."""
    if "://" in uri:
        if uri.startswith(store.root_uri.rstrip("/") + "/") or urlparse(uri).scheme != "file":
            return None
        return Path(unquote(urlparse(uri).path))
    return Path(uri) if Path(uri).is_absolute() or Path(uri).is_dir() else None


def _check_init(store: ObjectStore, init: dict[str, str], generator: str, profile: str, overrides: dict[str, Any],
                classes: list[str]) -> None:
    """The initialisation exists and fits the new run (``generator``, ``profile``, ``overrides``, ``classes``): same
    generator, same class order for a class-conditional run, and network-shaping fields equal.

    A local folder carries weights and a config but no class names (``save_pretrained`` exports indices only), so
    it is checked only when the backend loads it (its shape-defining fields), in the job.
    """
    folder = _local_folder(store, init["uri"])
    if folder is not None:
        if not folder.is_dir():
            raise InvalidArgument(f"init_checkpoint {init['uri']} is not a folder on the generation server",
                                  field="init_checkpoint",
                                  hint="a diffusers UNet folder, or a trained model's URI")
        return
    record = models.read_record(store, init["uri"], init.get("sha256", ""))
    if not record.complete:
        raise FailedPrecondition(f"init_checkpoint {init['uri']} is a model that has not finished training")
    if record.generator != generator:
        raise InvalidArgument(f"init_checkpoint {init['uri']} is a {record.generator} model; this run trains "
                              f"{generator}", field="init_checkpoint", hint=f"start from a {generator} model")
    unbuilt = create_backend(generator, profile, overrides)  # no weights: cheap; the same config the job builds
    check_init_classes(init["uri"], record, unbuilt.config, classes)
    unbuilt.check_init_config(record.config)  # shapes: refused now rather than failing the job later


def check_init_classes(uri: str, record: models.ModelRecord, config: Any, classes: list[str]) -> None:
    """A class-conditional run may start only from a class-conditional model of the same classes.

    Class embeddings are indexed by position in the sorted classes (G's embedding, D's projection), so the weights
    of a model trained on other classes load without complaint when the count matches and then mean other classes:
    with MEL, NV as classes 0, 1, a run on BCC, MEL would start with BCC drawn by MEL's embedding. When either side
    is unconditional (``num_classes`` 0) there is no class order to confuse and this check has nothing to say
    (whether the weights fit is the backend's ``init_from`` check).

    INVALID_ARGUMENT, not FAILED_PRECONDITION: a trained model's classes never change (its record is
    content-addressed and complete), so no later state of the system makes this request valid; only changing
    ``classes`` or ``init_checkpoint`` does. It is the same kind of mismatch as ``check_class_count``'s
    ``num_classes`` against ``classes``, which is answered the same way. (FAILED_PRECONDITION above is for an
    init model still training: waiting does fix that.)
    """
    init_classes = list(record.classes)
    if not class_count(config) or not int(record.config.get("num_classes", 0) or 0) or init_classes == classes:
        return
    raise InvalidArgument(
        f"init_checkpoint {uri} is a class-conditional model of classes {', '.join(init_classes)}, but this run "
        f"trains the classes {', '.join(classes)}; its class embeddings are indexed by the sorted classes, so "
        "they would start out meaning other classes",
        field="init_checkpoint",
        hint=f"train on the init model's classes ({', '.join(init_classes)}), or leave init_checkpoint empty")


@contextlib.contextmanager
def init_folder(store: ObjectStore, init: dict[str, str]) -> Iterator[str | None]:
    """The local folder to initialise from: given, or a trained model from the store exported to one."""
    if not init:
        yield None
        return
    folder = _local_folder(store, init["uri"])
    if folder is not None:
        yield str(folder)
        return
    record = models.read_record(store, init["uri"], init.get("sha256", ""))
    backend = models.load_sampling_backend(store, record)
    export = getattr(backend, "save_pretrained", None)
    if export is None:
        raise FailedPrecondition(f"{backend.name} models cannot be exported to initialise another run")
    with tempfile.TemporaryDirectory(prefix="sgb-init-") as tmp:
        export(tmp)
        yield tmp


# -- the training job -------------------------------------------------------------------------------------
def load_training_images(store: ObjectStore, items: list[Item], resolution: int, classes: list[str],
                         check: Callable[[], None] = lambda: None) -> list[tuple[np.ndarray, int]]:
    """(image, class index) per item: uint8 [R, R, 3] (hash-checked; square images only, resized when needed)
    and the index of the item's label in ``classes`` (the plan's sorted classes, the model's class order).

    The index is what a class-conditional backend embeds, so it must name the item's class, not its position.
    """
    import cv2
    from skingenbench.services.core.imaging.decoding import decode_image

    index_of = {label: index for index, label in enumerate(classes)}
    dataset = []
    for item in items:
        check()
        if item.label not in index_of:  # select_training_items only picks items of ``classes``
            raise FailedPrecondition(f"training item {item.key} has label {item.label!r}, not one of the "
                                     f"model's classes {', '.join(classes)}")
        image = decode_image(read_item(store, item))
        height, width = image.shape[:2]
        if height != width:
            raise FailedPrecondition(f"training item {item.key} is {width}x{height}; generators train on "
                                     "square images",
                                     hint="train on a preprocessed manifest (its images are square)")
        if height != resolution:
            interpolation = cv2.INTER_AREA if height > resolution else cv2.INTER_CUBIC
            image = cv2.resize(image, (resolution, resolution), interpolation=interpolation)
        dataset.append((np.ascontiguousarray(image), index_of[item.label]))
    return dataset


def conditional_training_set(store: ObjectStore, backend: GeneratorBackend, items: list[Item],
                             dataset: list[tuple[np.ndarray, int]]) -> list[tuple[Any, ...]]:
    """A conditional backend (DermGAN) trains on (image, class, semantic map): the map comes from the
    item's lesion mask and skin tone, which the preprocessing service measured."""
    from skingenbench.services.core.imaging.decoding import decode_mask

    examples = []
    for (image, _), item in zip(dataset, items, strict=True):
        entry = item.objects.get("mask_lesion")
        if entry is None:
            raise FailedPrecondition(f"training item {item.key} has no lesion mask; {backend.name} needs one",
                                     hint="train on a manifest from the preprocessing service")
        mask = decode_mask(read_verified(store, entry.key, entry.sha256))
        examples.append((image, mask, item.meta.get("ita_degrees"), item.label))
    conditional, _skipped = backend.training_set(examples)
    return conditional


_prefix_locks: dict[str, threading.Lock] = {}
_prefix_locks_guard = threading.Lock()


def _prefix_lock(prefix: str) -> threading.Lock:
    """Two jobs whose requests differ only in spelling share a prefix: they must not train it at once."""
    with _prefix_locks_guard:
        return _prefix_locks.setdefault(prefix, threading.Lock())


def train_generator_job(request: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Train, checkpointing into the model's prefix; a re-run (restart, resubmission) resumes from there."""
    store = ctx.store
    plan = plan_training(store, request)
    with _prefix_lock(plan.prefix):
        key = f"{plan.prefix}/{models.RECORD_NAME}"
        record = models.read_record(store, key) if store.exists(key) else None
        if record is not None and record.complete:
            return _training_outputs(ctx, record, {"reused_model": True})
        backend = create_backend(plan.generator, plan.profile, plan.overrides)
        ctx.progress(0, 0, f"loading {len(plan.items)} training images")
        dataset = load_training_images(store, plan.items, backend.resolution, plan.classes, ctx.check_cancelled)
        if backend.conditional and hasattr(backend, "training_set"):
            dataset = conditional_training_set(store, backend, plan.items, dataset)
        total = backend.total_steps_for(len(dataset))
        # A checkpoint replaces whatever initial weights there were: skip the (possibly slow) export.
        resuming = record is not None and bool(record.checkpoint)
        with init_folder(store, {} if resuming else plan.init) as folder:
            backend.build(plan.seed, total_steps=total, init_from=folder)
        config_document = backend.config_json()
        if record is None:
            store.put_bytes(f"{plan.prefix}/config.json", config_document.encode(), "application/json")
            record = models.write_record(store, _new_record(plan, key, total, len(dataset)))

        def save(step: int, state: dict[str, Any]) -> None:
            record.checkpoint = models.save_checkpoint(store, plan.prefix, step, state, config_document)
            record.step = step
            models.write_record(store, record)
            models.prune_checkpoints(store, plan.prefix)

        def load() -> dict[str, Any] | None:
            if not record.checkpoint:
                return None
            record.training.setdefault("resumed_from", []).append(record.checkpoint["step"])
            return models.load_checkpoint(store, record.checkpoint)

        def report(step: int, total_steps: int, metrics: dict[str, float]) -> None:
            ctx.progress(step, total_steps, "training", **metrics)

        result = train(backend, dataset, seed=plan.seed, on_progress=report, save_checkpoint=save,
                       load_checkpoint=load, should_stop=lambda: ctx.should_stop,
                       progress_every=max(1, total // 500))
        if result.interrupted:
            ctx.check_cancelled()  # raises: the job stops here and resumes from the checkpoint just written
            raise JobInterrupted("training stopped early")
        record.complete, record.completed_at = True, models.utc_now()
        record.training.update(device=backend.device, metrics=result.metrics)
        models.write_record(store, record)
        return _training_outputs(ctx, record, {"resumed_from": result.resumed_from, "reused_model": False,
                                               "loss": result.metrics.get("loss")})


def _new_record(plan: TrainingPlan, key: str, total: int, dataset_size: int) -> models.ModelRecord:
    config = dataclasses.asdict(plan.config)
    settings = {"generator": plan.generator, "profile": plan.profile, "overrides": plan.overrides,
                "config": config, "classes": plan.classes, "name": plan.name, "init": plan.init}
    provenance = Provenance(stage=f"{TRAIN_STAGE}:{plan.generator}", stage_version=TRAIN_VERSION,
                            config=settings, seed=plan.seed,
                            parents=[ParentRef(plan.manifest_uri, plan.manifest_sha256)])
    return models.ModelRecord(
        key=key, generator=plan.generator, profile=plan.profile, config=json.loads(json.dumps(config)),
        overrides=plan.overrides, trained_on={"uri": plan.manifest_uri, "sha256": plan.manifest_sha256,
                                              "item_count": dataset_size},
        classes=plan.classes, seed=plan.seed, name=plan.name, total_steps=total,
        provenance=json.loads(json.dumps(dataclasses.asdict(provenance))),
        training={"dataset_size": dataset_size})


def _training_outputs(ctx: JobContext, record: models.ModelRecord, extra: dict[str, Any]) -> dict[str, Any]:
    store = ctx.store
    ctx.add_output("model", store.uri(record.key), record.sha256)
    ctx.add_output("checkpoint", store.uri(record.checkpoint["key"]), record.checkpoint["sha256"])
    return {"model_uri": store.uri(record.key), "step": record.step, "total_steps": record.total_steps,
            "dataset_size": record.trained_on["item_count"], "device": record.training.get("device", ""),
            **extra}
