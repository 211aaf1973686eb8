"""The classification service's ``train_classifier`` job: the request checked and planned, the model built,
the training loop run against a checkpoint in the store, the best weights written.

``plan_training`` is also what StartTraining runs before it accepts a job, so a request that would fail is
refused at once with its status instead of becoming a failed job. A training job checkpoints to the store
every epoch and when asked to stop (``ResumeState``); the same request after a restart continues from
that checkpoint, and the loop (``training.py``) makes the resumed run end with the same weights.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from skingenbench.services.classification.core import data as data_core
from skingenbench.services.classification.job_store import (
    POSITIVE,
    finish_job,
    job_prefix,
    put_bytes,
    put_json,
    reuse_outputs,
)
from skingenbench.services.classification.manifest_images import ManifestImages
from skingenbench.services.classification.request_checks import count_field, manifest_from_ref, require_object
from skingenbench.services.core.checkpoint import state_from_bytes, state_to_bytes
from skingenbench.services.core.classes import CLASSES
from skingenbench.services.core.classifiers.checkpoint import classifier_to_bytes
from skingenbench.services.core.classifiers.models import (
    CLASSIFIERS,
    ClassifierConfig,
    build_classifier,
    config_dict,
)
from skingenbench.services.core.device import select_device
from skingenbench.services.core.errors import FailedPrecondition, InvalidArgument
from skingenbench.services.core.hashing import sha256_bytes
from skingenbench.services.platform.jobs import JobContext
from skingenbench.services.platform.servicer import parse_json_field
from skingenbench.services.platform.store import ObjectStore


@dataclass
class TrainingPlan:
    name: str
    profile: str
    config: ClassifierConfig
    regime: str
    seed: int
    selection: data_core.TrainingSelection
    weights: dict[str, str]
    prefix: str


def _check_regime_inputs(regime: str, synthetic: list, augmented: dict | None) -> None:
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


def plan_training(store: ObjectStore, request: dict[str, Any]) -> TrainingPlan:
    """Config, checked training selection and output location of a StartTraining request."""
    name = request.get("classifier", "")
    if name not in CLASSIFIERS:
        raise InvalidArgument(f"unknown classifier {name!r}",
                              hint=f"one of: {', '.join(CLASSIFIERS.names())}")
    profile = request.get("profile") or "paper"
    overrides = parse_json_field(request.get("config_json", ""), "config_json")
    config = CLASSIFIERS.config(name, profile, overrides)
    regime = request.get("regime") or "real"
    synthetic_refs, augmented_ref = request.get("synthetic", []), request.get("augmented")
    _check_regime_inputs(regime, synthetic_refs, augmented_ref)
    seed = count_field(request, "seed")
    weights = request.get("pretrained_weights") or {}
    if weights:
        require_object(store, weights.get("uri", ""), "pretrained_weights")
    data = manifest_from_ref(store, request.get("data"), "data manifest")
    synthetic = [manifest_from_ref(store, ref, "synthetic manifest") for ref in synthetic_refs]
    augmented = manifest_from_ref(store, augmented_ref, "augmented manifest") if augmented_ref else None
    mix = {"synthetic_count": count_field(request, "synthetic_count"),
           "synthetic_ratio": float(request.get("synthetic_ratio", 0.0)),
           "synthetic_label": request.get("synthetic_label") or POSITIVE}
    selection = data_core.select_training_items(data, regime, synthetic=synthetic, augmented=augmented,
                                                seed=seed, **mix)
    inputs = [data.content_hash(), *(m.content_hash() for m in synthetic),
              augmented.content_hash() if augmented else "", weights.get("uri", ""),
              weights.get("sha256", "")]
    settings = {"classifier": name, "profile": profile, "config": config_dict(config), "regime": regime,
                **mix, "run_name": request.get("run_name", "")}
    return TrainingPlan(name, profile, config, regime, seed, selection, weights,
                        job_prefix("classifier-train", inputs, settings, seed))


class ResumeState:
    """A training job's checkpoint in the store: the tensors, then a skeleton that names their sha256."""

    def __init__(self, store: ObjectStore, prefix: str) -> None:
        self.store = store
        self.tensors, self.skeleton = f"{prefix}/resume/state.safetensors", f"{prefix}/resume/state.json"

    def save(self, state: dict[str, Any]) -> None:
        tensors, skeleton = state_to_bytes(state)
        self.store.put_bytes(self.tensors, tensors)
        record = {"sha256": sha256_bytes(tensors), "skeleton": json.loads(skeleton)}
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


def _build_model(ctx: JobContext, plan: TrainingPlan):
    with tempfile.TemporaryDirectory(prefix="sgb-weights-") as folder:
        path = None
        if plan.weights:
            key = ctx.store.key_from_uri(plan.weights["uri"])
            path = Path(folder) / Path(key).name  # keeps .safetensors / .pth: timm reads by suffix
            ctx.store.get_file(key, path)
        return build_classifier(plan.name, plan.config, path, plan.weights.get("sha256", ""))


def train_classifier_job(request: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    from skingenbench.services.classification.core.training import train_classifier

    plan = plan_training(ctx.store, request)
    reused = reuse_outputs(ctx, plan.prefix)
    if reused is not None:
        return reused
    config, selection, device = plan.config, plan.selection, select_device()
    model, pretrained = _build_model(ctx, plan)

    def progress(event: dict[str, float]) -> None:
        done = (event["epoch"] - 1) * event["steps"] + event["step"]
        metrics = {k: v for k, v in event.items() if k not in ("step", "steps")}
        ctx.progress(int(done), int(event["steps"] * config.epochs),
                     f"epoch {int(event['epoch'])}/{config.epochs}", **metrics)

    state = ResumeState(ctx.store, plan.prefix)
    outcome = train_classifier(
        model, config, ManifestImages(ctx.store, selection.train),
        ManifestImages(ctx.store, selection.val), seed=plan.seed, device=device,
        save_checkpoint=state.save, load_checkpoint=state.load, should_stop=lambda: ctx.should_stop,
        on_progress=progress, progress_every=max(1, len(selection.train) // config.batch_size // 10))
    if outcome.interrupted:
        ctx.check_cancelled()  # raises: cancelled, or resumed from the checkpoint after a restart
        raise FailedPrecondition("training stopped without a cancellation or shutdown")
    record = {"classes": list(CLASSES), "profile": plan.profile, "regime": plan.regime, "seed": plan.seed,
              "pretrained": pretrained["pretrained"], "pretrained_record": pretrained,
              "run_name": request.get("run_name", ""), "best_epoch": outcome.best_epoch,
              "selection_metric": outcome.selection_metric, "val_metric": outcome.best_metric,
              "train_counts": selection.counts, "data": request["data"], "device": device}
    model_bytes = classifier_to_bytes(outcome.best_state, plan.name, config, record)
    history = {"selection_metric": outcome.selection_metric, "best_epoch": outcome.best_epoch,
               "epochs": outcome.history, "resumed_from": outcome.resumed_from, "notes": selection.notes}
    model_key = f"{plan.prefix}/model.safetensors"
    outputs = {"checkpoint": put_bytes(ctx.store, model_key, model_bytes, "application/octet-stream"),
               "history_json": put_json(ctx.store, f"{plan.prefix}/history.json", history)}
    speeds = [h["images_per_s"] for h in outcome.history if h["images_per_s"]]
    summary = {"classifier": plan.name, **{k: v for k, v in record.items() if k not in ("classes", "data")},
               "epochs": len(outcome.history), "resumed_from": outcome.resumed_from, "notes": selection.notes,
               "images_per_s": float(np.mean(speeds)) if speeds else 0.0}
    result = finish_job(ctx, plan.prefix, outputs, summary)
    state.delete()
    return result
