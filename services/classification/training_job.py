"""The classification service's ``train_classifier`` job: a classifier trained under one of the grid's
regimes (real, real+synthetic, real+augment) and its best weights written as a checkpoint.

``plan`` checks the whole request at Start (classifier, config, regime and its manifests, the training
selection and its leakage checks, pretrained weights) and pins every manifest and weights file by sha256.
``run`` reads exactly those bytes, draws the same selection from them and trains. It checkpoints to the
store every epoch and when asked to stop (``ResumeState``, under the plan's output prefix): the job
resumed after a restart runs from the persisted plan and continues from that checkpoint, and the loop
(``core/training.py``) makes the resumed run end with the same weights.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from skingenbench.services.classification.core import data as data_core
from skingenbench.services.classification.job_io import POSITIVE, STAGE_VERSION, put_bytes, put_json
from skingenbench.services.classification.manifest_images import ManifestImages
from skingenbench.services.classification.request_checks import (
    RequestedManifest,
    count_field,
    object_sha256,
    requested_manifest,
)
from skingenbench.services.core.checkpoint import state_from_bytes, state_to_bytes
from skingenbench.services.core.classes import CLASSES
from skingenbench.services.core.classifiers.checkpoint import classifier_to_bytes
from skingenbench.services.core.classifiers.models import (
    ARCHITECTURES,
    CLASSIFIERS,
    SHA256SUMS,
    ClassifierConfig,
    build_classifier,
    config_dict,
    config_from_dict,
    local_weights_file,
    missing_weights_error,
    verify_weights_file,
)
from skingenbench.services.core.device import select_device
from skingenbench.services.core.errors import DataIntegrityError, FailedPrecondition, InvalidArgument
from skingenbench.services.core.hashing import sha256_bytes
from skingenbench.services.core.manifest import Manifest
from skingenbench.services.platform.job_kind import JobKind, JobOutputs, JobPlan, JSONValue
from skingenbench.services.platform.jobs import JobContext
from skingenbench.services.platform.servicer import parse_json_field
from skingenbench.services.platform.store import ObjectStore

from skingenbench.api.v1 import classification_pb2


@dataclass(frozen=True)
class SyntheticMix:
    """How many synthetic images of which class a real+synthetic run adds (``select_training_items``)."""

    synthetic_count: int
    synthetic_ratio: float
    synthetic_label: str
    exclude: tuple[str, ...] = ()  # synthetic image ids / keys left out of the pool (sorted, unique)


@dataclass(frozen=True)
class PretrainedWeights:
    uri: str
    sha256: str  # as sent (in the content address); "" means the client asked for no check
    pinned_sha256: str  # the file's bytes at Start: what the run loads


@dataclass(frozen=True)
class TrainPlan(JobPlan):
    classifier: str
    profile: str
    config: dict[str, JSONValue]  # config_dict of the resolved config: in the address and the checkpoint
    regime: str
    seed: int
    mix: SyntheticMix
    data: RequestedManifest
    synthetic: tuple[RequestedManifest, ...]
    augmented: RequestedManifest | None
    weights: PretrainedWeights | None
    run_name: str


def _given(message) -> bool:
    """A sub-message the client set to something (one set to all defaults reads as absent in JSON)."""
    return message.ByteSize() > 0


def _check_regime_inputs(regime: str, synthetic: bool, augmented: bool) -> None:
    if regime not in data_core.REGIMES:
        raise InvalidArgument(f"unknown regime {regime!r}", hint=f"one of: {', '.join(data_core.REGIMES)}")
    if synthetic and regime != "real+synthetic":
        raise InvalidArgument(f"synthetic manifests are only used by regime 'real+synthetic', not {regime!r}")
    if augmented and regime != "real+augment":
        raise InvalidArgument(f"an augmented manifest is only used by regime 'real+augment', not {regime!r}")
    if regime == "real+synthetic" and not synthetic:
        raise InvalidArgument("regime 'real+synthetic' needs at least one synthetic manifest")
    if regime == "real+augment" and not augmented:
        raise InvalidArgument("regime 'real+augment' needs the augmented manifest")


def _check_pretrained_source(name: str, profile: str, config: ClassifierConfig, weights_given: bool) -> None:
    """The refusals of ``build_classifier`` that depend only on the request and this service's setup,
    answered at Start (``build_classifier`` keeps them too, for its other callers).

    The paper profile trains from the reference's ImageNet weights or not at all: without a weights file it
    refuses (naming the file it looked for) unless the request asked for random init (``pretrained: "none"``),
    and a local file must be vouched for by a checksum (``SHA256SUMS`` beside it, or torchvision's file name
    prefix), so a run cannot silently start from other weights or none."""
    if weights_given and config.pretrained in ("hub", "none"):
        raise InvalidArgument(
            f"a weights file was given but the config says pretrained={config.pretrained!r}",
            hint="drop pretrained_weights, or use pretrained 'auto' or 'file'",
        )
    local = None if weights_given else local_weights_file(name)
    needs_file = config.pretrained == "file" or (profile == "paper" and config.pretrained == "auto")
    if not weights_given and needs_file and local is None:
        raise missing_weights_error(name, profile if profile == "paper" else "")
    if profile == "paper" and local is not None and config.pretrained in ("auto", "file"):
        checked = verify_weights_file(name, local)  # DATA_LOSS when SHA256SUMS disagrees
        if not checked["verified_by"]:
            reference = ARCHITECTURES[name].reference
            raise FailedPrecondition(
                f"the paper profile needs {reference.torchvision} for {name}; nothing vouches that {local} is "
                f"that file (sha256 {checked['sha256'][:12]}…)",
                hint=f"list its sha256 in {local.parent / SHA256SUMS} (sha256sum format), or use torchvision's "
                f"{reference.file} (its name carries the start of its sha256)",
            )
    if config.pretrained == "hub" and os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        raise FailedPrecondition(
            f"pretrained='hub' asks to download {name} weights, but HF_HUB_OFFLINE is set",
            hint="unset HF_HUB_OFFLINE on a machine that is online, or give a local file",
        )


def _exclusions(names, regime: str) -> tuple[str, ...]:
    """``exclude_synthetic`` as a sorted, unique tuple (its order is not part of the job's identity)."""
    if any(not name for name in names):
        raise InvalidArgument("exclude_synthetic: an empty name", field="exclude_synthetic")
    if names and regime != "real+synthetic":
        raise InvalidArgument(
            f"exclude_synthetic applies to regime 'real+synthetic', not {regime!r}", field="exclude_synthetic"
        )
    return tuple(sorted(set(names)))


def _pinned_weights(store: ObjectStore, ref) -> PretrainedWeights:
    pinned = object_sha256(store, ref.uri, "pretrained_weights")
    if ref.sha256 and ref.sha256 != pinned:
        raise DataIntegrityError(
            f"weights file {ref.uri} has sha256 {pinned[:12]}…, expected {ref.sha256[:12]}…"
        )
    return PretrainedWeights(ref.uri, ref.sha256, pinned)


def _selection(
    data: Manifest,
    synthetic: list[Manifest],
    augmented: Manifest | None,
    regime: str,
    seed: int,
    mix: SyntheticMix,
) -> data_core.TrainingSelection:
    """The run's train and val items: a pure function of the pinned manifests, so Start and run agree."""
    return data_core.select_training_items(
        data,
        regime,
        synthetic=synthetic,
        augmented=augmented,
        seed=seed,
        synthetic_count=mix.synthetic_count,
        synthetic_ratio=mix.synthetic_ratio,
        synthetic_label=mix.synthetic_label,
        exclude_synthetic=mix.exclude,
    )


# How much training a hard crash (no stop request, so no checkpoint on the way out) may cost at most, in
# wall seconds; a stop request, a cancel or a graceful shutdown checkpoints at once whatever this is.
CHECKPOINT_EVERY_S = 300.0


class ResumeState:
    """A training job's checkpoint in the store: the tensors, then a skeleton that names their sha256."""

    def __init__(self, store: ObjectStore, prefix: str) -> None:
        self.store = store
        self.tensors, self.skeleton = f"{prefix}/resume/state.safetensors", f"{prefix}/resume/state.json"

    def save(self, state: dict[str, Any]) -> None:
        tensors, skeleton = state_to_bytes(state)
        # The store hashes what it writes: that digest is the record's, not a second pass over ~1 GB.
        stored = self.store.put_bytes(self.tensors, tensors)
        record = {"sha256": stored.sha256, "skeleton": json.loads(skeleton)}
        self.store.put_bytes(self.skeleton, json.dumps(record).encode(), "application/json")

    def load(self) -> dict[str, Any] | None:
        if not (self.store.exists(self.skeleton) and self.store.exists(self.tensors)):
            return None
        record, tensors = json.loads(self.store.get_bytes(self.skeleton)), self.store.get_bytes(self.tensors)
        if sha256_bytes(tensors) != record["sha256"]:  # died between the two writes: start over, same result
            return None
        return state_from_bytes(tensors, json.dumps(record["skeleton"]).encode())

    def delete(self) -> None:
        self.store.delete(self.tensors)
        self.store.delete(self.skeleton)


def _build_model(ctx: JobContext, plan: TrainPlan, config: ClassifierConfig):
    with tempfile.TemporaryDirectory(prefix="sgb-weights-") as folder:
        path = None
        if plan.weights is not None:
            key = ctx.store.key_from_uri(plan.weights.uri)
            path = Path(folder) / Path(key).name  # keeps .safetensors / .pth: timm reads by suffix
            ctx.store.get_file(key, path)
        # The pinned sha256: a weights file changed since Start is DATA_LOSS, not another model.
        return build_classifier(
            plan.classifier, config, path, plan.weights.pinned_sha256 if plan.weights else ""
        )


class TrainKind(JobKind[classification_pb2.TrainClassifierRequest, TrainPlan]):
    name = "train_classifier"
    stage = "classifier-train"
    version = STAGE_VERSION
    request_type = classification_pb2.TrainClassifierRequest
    plan_type = TrainPlan

    def plan(self, request: classification_pb2.TrainClassifierRequest, store: ObjectStore) -> TrainPlan:
        name = request.classifier
        if name not in CLASSIFIERS:
            raise InvalidArgument(
                f"unknown classifier {name!r}", hint=f"one of: {', '.join(CLASSIFIERS.names())}"
            )
        profile = request.profile or "paper"
        config = CLASSIFIERS.config(name, profile, parse_json_field(request.config_json, "config_json"))
        regime = request.regime or "real"
        _check_regime_inputs(regime, bool(request.synthetic), _given(request.augmented))
        seed = count_field(request.seed, "seed")
        weights_given = _given(request.pretrained_weights)
        _check_pretrained_source(name, profile, config, weights_given)
        weights = _pinned_weights(store, request.pretrained_weights) if weights_given else None
        if profile == "paper" and weights is not None and not weights.sha256:
            reference = ARCHITECTURES[name].reference
            if not weights.pinned_sha256.startswith(reference.sha256_prefix):
                raise FailedPrecondition(
                    f"the paper profile needs {reference.torchvision} for {name}; pretrained_weights "
                    f"{weights.uri} came without a sha256 and is not torchvision's {reference.file}",
                    hint="send pretrained_weights.sha256 (the file's checksum) with the request",
                )
        data, data_ref = requested_manifest(store, request.data, "data manifest")
        pinned = [requested_manifest(store, ref, "synthetic manifest") for ref in request.synthetic]
        synthetic, synthetic_refs = [m for m, _ in pinned], tuple(ref for _, ref in pinned)
        augmented, augmented_ref = (
            requested_manifest(store, request.augmented, "augmented manifest")
            if _given(request.augmented)
            else (None, None)
        )
        mix = SyntheticMix(
            count_field(request.synthetic_count, "synthetic_count"),
            float(request.synthetic_ratio),
            request.synthetic_label or POSITIVE,
            _exclusions(request.exclude_synthetic, regime),
        )
        _selection(
            data, synthetic, augmented, regime, seed, mix
        )  # its refusals (leakage, counts) answer Start
        inputs = [
            data.content_hash(),
            *(m.content_hash() for m in synthetic),
            augmented.content_hash() if augmented else "",
            request.pretrained_weights.uri,
            request.pretrained_weights.sha256,
        ]
        settings = {
            "classifier": name,
            "profile": profile,
            "config": config_dict(config),
            "regime": regime,
            "synthetic_count": mix.synthetic_count,
            "synthetic_ratio": mix.synthetic_ratio,
            "synthetic_label": mix.synthetic_label,
            "run_name": request.run_name,
        }
        if mix.exclude:  # only when given: requests without exclusions keep the addresses they always had
            settings["exclude_synthetic"] = list(mix.exclude)
        return TrainPlan(
            self.address(inputs, settings, seed),
            name,
            profile,
            config_dict(config),
            regime,
            seed,
            mix,
            data_ref,
            synthetic_refs,
            augmented_ref,
            weights,
            request.run_name,
        )

    def run(self, plan: TrainPlan, ctx: JobContext) -> JobOutputs:
        from skingenbench.services.classification.core.training import train_classifier

        config, device = config_from_dict(plan.config), select_device()
        selection = _selection(
            plan.data.read(ctx.store),
            [ref.read(ctx.store) for ref in plan.synthetic],
            plan.augmented.read(ctx.store) if plan.augmented else None,
            plan.regime,
            plan.seed,
            plan.mix,
        )
        model, pretrained = _build_model(ctx, plan, config)

        def progress(event: dict[str, float]) -> None:
            done = (event["epoch"] - 1) * event["steps"] + event["step"]
            metrics = {k: v for k, v in event.items() if k not in ("step", "steps")}
            ctx.progress(
                int(done),
                int(event["steps"] * config.epochs),
                f"epoch {int(event['epoch'])}/{config.epochs}",
                **metrics,
            )

        state = ResumeState(ctx.store, plan.output_prefix)
        outcome = train_classifier(
            model,
            config,
            ManifestImages(ctx.store, selection.train),
            ManifestImages(ctx.store, selection.val),
            seed=plan.seed,
            device=device,
            save_checkpoint=state.save,
            load_checkpoint=state.load,
            should_stop=lambda: ctx.should_stop,
            on_progress=progress,
            progress_every=max(1, len(selection.train) // config.batch_size // 10),
            checkpoint_every_s=CHECKPOINT_EVERY_S,
        )
        if outcome.interrupted:
            ctx.check_cancelled()  # raises: cancelled, or resumed from the checkpoint after a restart
            raise FailedPrecondition("training stopped without a cancellation or shutdown")
        record = {
            "classes": list(CLASSES),
            "profile": plan.profile,
            "regime": plan.regime,
            "seed": plan.seed,
            "pretrained": pretrained["pretrained"],
            "pretrained_record": pretrained,
            "run_name": plan.run_name,
            "best_epoch": outcome.best_epoch,
            "selection_metric": outcome.selection_metric,
            "val_metric": outcome.best_metric,
            "train_counts": selection.counts,
            "data": plan.data.as_request(),
            "device": device,
        }
        model_bytes = classifier_to_bytes(outcome.best_state, plan.classifier, config, record)
        history = {
            "selection_metric": outcome.selection_metric,
            "best_epoch": outcome.best_epoch,
            "epochs": outcome.history,
            "resumed_from": outcome.resumed_from,
            "notes": selection.notes,
        }
        outputs = JobOutputs()
        outputs.add(
            "checkpoint",
            *put_bytes(
                ctx.store, f"{plan.output_prefix}/model.safetensors", model_bytes, "application/octet-stream"
            ),
        )
        outputs.add("history_json", *put_json(ctx.store, f"{plan.output_prefix}/history.json", history))
        speeds = [h["images_per_s"] for h in outcome.history if h["images_per_s"]]
        outputs.summary = {
            "classifier": plan.classifier,
            **{k: v for k, v in record.items() if k not in ("classes", "data")},
            "epochs": len(outcome.history),
            "resumed_from": outcome.resumed_from,
            "notes": selection.notes,
            "images_per_s": float(np.mean(speeds)) if speeds else 0.0,
        }
        # Every output is stored: the resume point is no longer needed. Should the service die before the
        # framework writes the completion marker, the job trains again from the start to the same weights.
        state.delete()
        return outputs
