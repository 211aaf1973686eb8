"""Trained generators in the store: model records, checkpoints, listing, and "which model is meant".

A training run owns one content-addressed prefix ``models/<generator>/<address>/`` (the address hashes
the training items, the full config, the classes, the seed, the label and the initialisation, so the
same request always lands in the same place and a restarted job finds its own checkpoints)::

    config.json                           the backend's config document (backend_from_config_json)
    checkpoints/step-00000040.safetensors tensors of the whole training state (weights, EMA, optimiser, RNG)
    checkpoints/step-00000040.json        descriptor: step, the safetensors key and sha256, the JSON skeleton
    model.json                            the model record, rewritten after every checkpoint
    summary.json                          the job framework's completion marker, written after the last record

The record is written after the checkpoint it names and older checkpoints are deleted only after that,
so whatever moment a process dies at, the record points at a complete checkpoint. ``complete`` turns
true once the run has taken all its steps; only complete models are sampled. The record is what
ListTrainedModels reads; whether the training *job* is done is the marker's to say (job_kind.py).
"""

from __future__ import annotations

import datetime as _dt
import json
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any

from skingenbench.services.core.checkpoint import state_from_bytes, state_to_bytes
from skingenbench.services.core.errors import (
    DataIntegrityError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from skingenbench.services.core.hashing import sha256_bytes
from skingenbench.services.generation.core.backend import GeneratorBackend
from skingenbench.services.generation.core.registry import GENERATORS, backend_from_config_json
from skingenbench.services.platform.manifest_io import read_verified
from skingenbench.services.platform.servicer import request_key
from skingenbench.services.platform.store import ObjectStore

RECORD_FORMAT = "skingenbench.generation.model/1"
CHECKPOINT_FORMAT = "skingenbench.generation.checkpoint/1"
RECORD_NAME = "model.json"
KEEP_CHECKPOINTS = 2  # the newest and one before it: a paper-size training state is ~2 GB


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class ModelRecord:
    """What was trained, on what, how far. ``key`` and ``sha256`` describe where it was read from."""

    key: str
    generator: str
    profile: str
    config: dict[str, Any]
    overrides: dict[str, Any]
    trained_on: dict[str, Any]  # {"uri", "sha256", "item_count"}: the manifest and how many items were used
    # Sorted (training_job.normalise_classes). For a class-conditional generator this is also the class order:
    # the network's class i is classes[i], in training (training_data.load_training_images) and sampling
    # (sampling_job.class_conditioning), so the record is what maps a label to the index the weights know.
    classes: list[str]
    seed: int
    name: str = ""
    total_steps: int = 0
    step: int = 0
    checkpoint: dict[str, Any] = field(default_factory=dict)  # {"key", "sha256", "step"} of the descriptor
    complete: bool = False
    provenance: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)  # dataset size, device, last metrics, resumes
    created_at: str = field(default_factory=utc_now)
    updated_at: str = ""
    completed_at: str = ""
    sha256: str = ""

    @property
    def prefix(self) -> str:
        return self.key.rsplit("/", 1)[0]

    @property
    def model_id(self) -> str:
        """The address part of the prefix: short, unique per training run."""
        return self.prefix.rsplit("/", 1)[-1]

    @property
    def label(self) -> str:
        """The class an unconditional model draws (classes joined with '+' for a multi-class model).

        A class-conditional model draws the class a request names; its items take that label instead
        (sampling_job.draw_samples), never this joined one."""
        return "+".join(self.classes)

    def to_json(self) -> bytes:
        data = asdict(self)
        data.pop("sha256")
        return json.dumps({"format": RECORD_FORMAT, **data}, indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes, key: str) -> ModelRecord:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidArgument(f"model record {key} is not valid JSON: {exc}") from None
        if not isinstance(data, dict) or data.pop("format", None) != RECORD_FORMAT:
            raise InvalidArgument(f"{key} is not a SkinGenBench model record (format {RECORD_FORMAT!r})")
        data.update(key=key, sha256=sha256_bytes(raw))
        try:
            return cls(**data)
        except TypeError as exc:
            raise InvalidArgument(f"model record {key} is malformed: {exc}") from None


def write_record(store: ObjectStore, record: ModelRecord) -> ModelRecord:
    record.updated_at = utc_now()
    info = store.put_bytes(record.key, record.to_json(), "application/json")
    record.sha256 = info.sha256
    return record


def record_key(reference: str, store: ObjectStore) -> str:
    """A record URI, key or model prefix -> the record's key in this store."""
    key = store.key_from_uri(reference.rstrip("/"))
    return key if key.endswith(f"/{RECORD_NAME}") or key == RECORD_NAME else f"{key}/{RECORD_NAME}"


def read_record(store: ObjectStore, reference: str, expected_sha256: str = "") -> ModelRecord:
    key = record_key(reference, store)
    try:
        raw = store.get_bytes(key)
    except NotFound:
        raise NotFound(
            f"no trained model at {store.uri(key)}", hint="ListTrainedModels shows what exists"
        ) from None
    if expected_sha256 and sha256_bytes(raw) != expected_sha256:
        raise DataIntegrityError(f"model record {store.uri(key)} has changed since it was referenced")
    return ModelRecord.from_json(raw, key)


def list_records(store: ObjectStore, generator: str = "") -> list[ModelRecord]:
    """Every model record under ``models/`` (of one generator when given), most recently updated first."""
    records = []
    for key in store.list(f"models/{generator}/" if generator else "models/"):
        if key.endswith(f"/{RECORD_NAME}"):
            try:
                records.append(ModelRecord.from_json(store.get_bytes(key), key))
            except (InvalidArgument, NotFound):
                continue  # a foreign or vanished object is not a model; listing goes on
    records.sort(key=lambda r: r.updated_at, reverse=True)
    return records


def resolve_model(store: ObjectStore, reference: str) -> ModelRecord:
    """A complete model from a record URI/key/prefix, a generator name, or a training run's ``name``.

    A generator name ("ddpm") means its most recently completed model; a run label means the most
    recently completed model trained under that label. Incomplete models are refused: they are still
    training, or were interrupted.
    """
    if not reference:
        raise InvalidArgument("model is required: a trained model's URI or a generator name", field="model")
    if "/" in reference:
        request_key(store, reference, "model")  # a malformed key names the field
        record = read_record(store, reference)
        if not record.complete:
            raise FailedPrecondition(
                f"model {store.uri(record.key)} is not complete (step {record.step} of {record.total_steps})",
                hint="wait for its training job to finish",
            )
        return record
    complete = [r for r in list_records(store) if r.complete]
    by_generator = [r for r in complete if r.generator == reference]
    for matches in (by_generator, [r for r in complete if r.name == reference]):
        if matches:
            return max(matches, key=lambda r: r.completed_at)
    if reference in GENERATORS:
        raise NotFound(
            f"no complete trained {reference} model in the store", hint="train one with StartTraining"
        )
    raise NotFound(
        f"no generator or trained model named {reference!r}",
        hint=f"generators: {', '.join(GENERATORS.names())}; or a model URI from ListTrainedModels",
    )


# -- checkpoints ---------------------------------------------------------------------------------------
def save_checkpoint(
    store: ObjectStore, prefix: str, step: int, state: dict[str, Any], config_document: str
) -> dict[str, Any]:
    """Write the tensors, then the descriptor that names them; returns {"key", "sha256", "step"}."""
    tensors, skeleton = state_to_bytes(state)
    stem = f"{prefix}/checkpoints/step-{step:08d}"
    tensor_info = store.put_bytes(f"{stem}.safetensors", tensors)
    descriptor = {
        "format": CHECKPOINT_FORMAT,
        "step": step,
        "config": json.loads(config_document),
        "tensors": {"key": tensor_info.key, "sha256": tensor_info.sha256},
        "skeleton": json.loads(skeleton),
    }
    info = store.put_bytes(
        f"{stem}.json", json.dumps(descriptor, sort_keys=True).encode(), "application/json"
    )
    return {"key": info.key, "sha256": info.sha256, "step": step}


def load_checkpoint(store: ObjectStore, checkpoint: dict[str, Any], device: str = "cpu") -> dict[str, Any]:
    """The nested training state of a checkpoint descriptor; every byte is checked against its hash."""
    descriptor = json.loads(read_verified(store, checkpoint["key"], checkpoint.get("sha256", "")))
    if descriptor.get("format") != CHECKPOINT_FORMAT:
        raise FailedPrecondition(f"{checkpoint['key']} is not a generator checkpoint descriptor")
    tensors = read_verified(store, descriptor["tensors"]["key"], descriptor["tensors"]["sha256"])
    return state_from_bytes(tensors, json.dumps(descriptor["skeleton"]).encode(), device=device)


def prune_checkpoints(store: ObjectStore, prefix: str, keep: int = KEEP_CHECKPOINTS) -> None:
    """Delete all but the ``keep`` newest checkpoints (names sort by step)."""
    stems = sorted({key.rsplit(".", 1)[0] for key in store.list(f"{prefix}/checkpoints/")})
    for stem in stems[:-keep] if keep else stems:
        for suffix in (".json", ".safetensors"):  # descriptor first: never a descriptor without tensors
            store.delete(stem + suffix)


# -- sampling backends ----------------------------------------------------------------------------------
def load_sampling_backend(store: ObjectStore, record: ModelRecord, device: str = "") -> GeneratorBackend:
    """The record's final weights in a backend built for sampling only (no optimiser memory)."""
    if not record.checkpoint:
        raise FailedPrecondition(f"model {store.uri(record.key)} has no checkpoint yet")
    backend = backend_from_config_json(store.get_bytes(f"{record.prefix}/config.json"), device=device)
    backend.build(record.seed, total_steps=0)
    state = load_checkpoint(store, record.checkpoint)
    backend.load_state(state["backend"])
    return backend


class BackendCache:
    """The last few sampling backends by checkpoint, so repeated Generate calls skip the load."""

    def __init__(self, store: ObjectStore, size: int = 2, device: str = "") -> None:
        self.store = store
        self.size = max(1, size)
        self.device = device
        self._backends: OrderedDict[str, GeneratorBackend] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, record: ModelRecord) -> GeneratorBackend:
        key = f"{record.checkpoint.get('key')}@{record.checkpoint.get('sha256')}"
        with self._lock:  # one load at a time: two concurrent loads of a large model would double memory
            if key in self._backends:
                self._backends.move_to_end(key)
                return self._backends[key]
            backend = load_sampling_backend(self.store, record, self.device)
            self._backends[key] = backend
            while len(self._backends) > self.size:
                self._backends.popitem(last=False)
            return backend
