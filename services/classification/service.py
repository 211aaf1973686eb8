"""The classification servicer: train, test, compare, explain and predict, as jobs on the shared store.

A thin layer over the cores (models, data, training, inference, gradcam, bootstrap, paired_tests). Each
``Start*`` call checks its request before a job starts (a bad request is an error, not a failed job),
and each job writes its outputs under a content address of its inputs, so the same request finds the
finished outputs instead of recomputing them. A training job checkpoints to the store every epoch and
when asked to stop; the same request after a restart continues from that checkpoint.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.classification import data as data_core
from services.classification.bootstrap import DEFAULT_RESAMPLES, evaluate_predictions
from services.classification.inference import (
    classifier_from_bytes,
    classifier_to_bytes,
    item_names,
    predict_items,
    read_metadata,
)
from services.classification.models import CLASSIFIERS, ClassifierConfig, build_classifier, config_dict
from services.classification.paired_tests import compare_pipelines
from services.classification.predictions_csv import write_predictions_csv
from services.classification.report_tables import global_rows, global_table, melanoma_rows, melanoma_table
from services.common.checkpoint import state_from_bytes, state_to_bytes
from services.common.classes import CLASS_INDEX, CLASSES, SPLITS
from services.common.device import select_device
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.common.hashing import content_address, output_prefix, sha256_bytes
from services.common.jobs_service import job_reply
from services.common.manifest import (
    Item,
    Manifest,
    ParentRef,
    Provenance,
    read_item,
    read_manifest,
    write_manifest,
)
from services.common.server import ServiceContext
from services.common.servicer import (
    entry_from_description,
    list_response,
    parse_json_field,
    request_to_dict,
    service_info,
)
from services.common.store import ObjectStore
from skingenbench.v1 import classification_pb2_grpc

STAGE_VERSION = "1"
POSITIVE = "MEL"
DEFAULT_GRADCAM_COUNT = 8
MAX_GRADCAM_COUNT = 256
MAX_BOOTSTRAP = 100_000
MAX_BATCH = 4096


# -- request checks, shared by the RPCs (before a job) and the job handlers (after a restart) -----------
def _key(store: ObjectStore, uri: str, what: str) -> str:
    if not uri:
        raise InvalidArgument(f"{what} is required")
    key = store.key_from_uri(uri)
    if not store.exists(key):
        raise NotFound(f"{what} not found: {uri}")
    return key


def _manifest(store: ObjectStore, ref: dict[str, Any] | None, what: str) -> Manifest:
    ref = ref or {}
    _key(store, ref.get("uri", ""), what)
    return read_manifest(store, ref["uri"], ref.get("sha256", ""))


def _split(value: str) -> str:
    split = value or "test"
    if split not in SPLITS:
        raise InvalidArgument(f"unknown split {split!r}", hint=f"one of: {', '.join(SPLITS)}")
    return split


def _count(request: dict[str, Any], name: str, maximum: int | None = None) -> int:
    """A non-negative integer field (int64 fields arrive as JSON strings)."""
    value = int(request.get(name, 0) or 0)
    if value < 0 or (maximum is not None and value > maximum):
        top = "" if maximum is None else maximum
        raise InvalidArgument(f"{name} must be in 0..{top}, got {value}")
    return value


def _checkpoint_metadata(store: ObjectStore, uri: str) -> dict[str, Any]:
    with store.open(_key(store, uri, "checkpoint")) as stream:
        return read_metadata(stream)


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
    seed = _count(request, "seed")
    weights = request.get("pretrained_weights") or {}
    if weights:
        _key(store, weights.get("uri", ""), "pretrained_weights")
    data = _manifest(store, request.get("data"), "data manifest")
    synthetic = [_manifest(store, ref, "synthetic manifest") for ref in synthetic_refs]
    augmented = _manifest(store, augmented_ref, "augmented manifest") if augmented_ref else None
    mix = {"synthetic_count": _count(request, "synthetic_count"),
           "synthetic_ratio": float(request.get("synthetic_ratio", 0.0)),
           "synthetic_label": request.get("synthetic_label") or POSITIVE}
    selection = data_core.select_training_items(data, regime, synthetic=synthetic, augmented=augmented,
                                                seed=seed, **mix)
    inputs = [data.content_hash(), *(m.content_hash() for m in synthetic),
              augmented.content_hash() if augmented else "", weights.get("uri", ""),
              weights.get("sha256", "")]
    settings = {"classifier": name, "profile": profile, "config": config_dict(config), "regime": regime,
                **mix, "run_name": request.get("run_name", "")}
    address = content_address("classifier-train", STAGE_VERSION, inputs, settings, seed)
    return TrainingPlan(name, profile, config, regime, seed, selection, weights,
                        output_prefix("classifier-train", address))


class ClassificationServicer(classification_pb2_grpc.ClassificationServicer):
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def GetServiceInfo(self, request, context):
        return service_info(self.ctx, CLASSIFIERS.names())

    def ListClassifiers(self, request, context):
        return list_response(CLASSIFIERS.describe, CLASSIFIERS.names())

    def DescribeClassifier(self, request, context):
        return entry_from_description(CLASSIFIERS.describe(request.name))

    def _start(self, kind: str, fields: dict[str, Any]):
        return job_reply(self.ctx.runner, kind, fields)

    def StartTraining(self, request, context):
        fields = request_to_dict(request)
        plan_training(self.ctx.store, fields)
        return self._start("train_classifier", fields)

    def StartTest(self, request, context):
        fields = request_to_dict(request)
        self._model_and_data(request)
        _split(request.split)
        _count(fields, "bootstrap_samples", MAX_BOOTSTRAP)
        _count(fields, "seed")
        return self._start("test_classifier", fields)

    def StartComparison(self, request, context):
        fields = request_to_dict(request)
        _key(self.ctx.store, request.baseline_result_uri, "baseline_result_uri")
        _key(self.ctx.store, request.candidate_result_uri, "candidate_result_uri")
        _count(fields, "bootstrap_samples", MAX_BOOTSTRAP)
        _count(fields, "seed")
        return self._start("compare_classifiers", fields)

    def StartGradCam(self, request, context):
        fields = request_to_dict(request)
        self._model_and_data(request)
        _split(request.split)
        _count(fields, "count", MAX_GRADCAM_COUNT)
        unknown = sorted(set(request.labels) - set(CLASSES))
        if unknown:
            raise InvalidArgument(f"unknown labels {unknown}", hint=f"classes: {', '.join(CLASSES)}")
        return self._start("gradcam", fields)

    def StartPredict(self, request, context):
        fields = request_to_dict(request)
        self._model_and_data(request)
        _count(fields, "batch_size", MAX_BATCH)
        return self._start("predict", fields)

    def _model_and_data(self, request) -> None:
        _checkpoint_metadata(self.ctx.store, request.checkpoint_uri)
        _key(self.ctx.store, request.data.uri, "data manifest")


# -- job handlers: plain dict requests (as persisted), a JobContext for progress and outputs -------------
def _put_json(store: ObjectStore, key: str, value: Any) -> tuple[str, str]:
    info = store.put_bytes(key, json.dumps(value, indent=1, sort_keys=True).encode(), "application/json")
    return store.uri(key), info.sha256


def _put(store: ObjectStore, key: str, data: bytes, content_type: str) -> tuple[str, str]:
    return store.uri(key), store.put_bytes(key, data, content_type).sha256


def _reuse(ctx, prefix: str) -> dict[str, Any] | None:
    """The summary of an identical earlier job, its outputs re-attached; None if there is none."""
    if not ctx.store.exists(f"{prefix}/summary.json"):
        return None
    done = json.loads(ctx.store.get_bytes(f"{prefix}/summary.json"))
    for name, (uri, sha) in done["outputs"].items():
        ctx.add_output(name, uri, sha)
    return {**done["summary"], "reused_output": True}


def _finish(ctx, prefix: str, outputs: dict[str, tuple[str, str]], summary: dict[str, Any]) -> dict[str, Any]:
    for name, (uri, sha) in outputs.items():
        ctx.add_output(name, uri, sha)
    _put_json(ctx.store, f"{prefix}/summary.json", {"outputs": outputs, "summary": summary})  # last: complete
    return summary


class _ResumeState:
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


def _build_model(ctx, plan: TrainingPlan):
    with tempfile.TemporaryDirectory(prefix="sgb-weights-") as folder:
        path = None
        if plan.weights:
            key = ctx.store.key_from_uri(plan.weights["uri"])
            path = Path(folder) / Path(key).name  # keeps .safetensors / .pth: timm reads by suffix
            ctx.store.get_file(key, path)
        return build_classifier(plan.name, plan.config, path, plan.weights.get("sha256", ""))


def _train_job(request: dict[str, Any], ctx) -> dict[str, Any]:
    from services.classification.training import train_classifier

    plan = plan_training(ctx.store, request)
    reused = _reuse(ctx, plan.prefix)
    if reused is not None:
        return reused
    config, selection, device = plan.config, plan.selection, select_device()
    model, pretrained = _build_model(ctx, plan)

    def progress(event: dict[str, float]) -> None:
        done = (event["epoch"] - 1) * event["steps"] + event["step"]
        metrics = {k: v for k, v in event.items() if k not in ("step", "steps")}
        ctx.progress(int(done), int(event["steps"] * config.epochs),
                     f"epoch {int(event['epoch'])}/{config.epochs}", **metrics)

    state = _ResumeState(ctx.store, plan.prefix)
    outcome = train_classifier(
        model, config, data_core.ManifestImages(ctx.store, selection.train),
        data_core.ManifestImages(ctx.store, selection.val), seed=plan.seed, device=device,
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
    outputs = {"checkpoint": _put(ctx.store, model_key, model_bytes, "application/octet-stream"),
               "history_json": _put_json(ctx.store, f"{plan.prefix}/history.json", history)}
    speeds = [h["images_per_s"] for h in outcome.history if h["images_per_s"]]
    summary = {"classifier": plan.name, **{k: v for k, v in record.items() if k not in ("classes", "data")},
               "epochs": len(outcome.history), "resumed_from": outcome.resumed_from, "notes": selection.notes,
               "images_per_s": float(np.mean(speeds)) if speeds else 0.0}
    result = _finish(ctx, plan.prefix, outputs, summary)
    state.delete()
    return result


def _load_model(ctx, uri: str):
    data = ctx.store.get_bytes(_key(ctx.store, uri, "checkpoint"))
    model, config, metadata = classifier_from_bytes(data, select_device())
    return model, config, metadata, sha256_bytes(data)


def _job_prefix(stage: str, inputs: list[str], settings: dict[str, Any], seed: int | None = None) -> str:
    return output_prefix(stage, content_address(stage, STAGE_VERSION, inputs, settings, seed))


def _predicting(ctx):
    return lambda done, total: (ctx.check_cancelled(), ctx.progress(done, total, "predicting"))


def _run_label(meta: dict[str, Any]) -> str:
    return meta.get("run_name") or f"{meta['classifier']} {meta.get('regime')} seed {meta.get('seed')}"


def _test_job(request: dict[str, Any], ctx) -> dict[str, Any]:
    data = _manifest(ctx.store, request.get("data"), "data manifest")
    split, seed = _split(request.get("split", "")), _count(request, "seed")
    resamples = _count(request, "bootstrap_samples", MAX_BOOTSTRAP) or DEFAULT_RESAMPLES
    model, config, meta, checkpoint_sha = _load_model(ctx, request.get("checkpoint_uri", ""))
    prefix = _job_prefix("classifier-test", [checkpoint_sha, data.content_hash()],
                         {"split": split, "bootstrap": resamples}, seed)
    reused = _reuse(ctx, prefix)
    if reused is not None:
        return reused
    items = data_core.split_items(data, split)
    if not items:
        raise FailedPrecondition(f"the data manifest has no {split} items")
    data_core.check_labels(items, f"the {split} split")
    ids, labels, probs = predict_items(model, config, ctx.store, items, select_device(),
                                       on_batch=_predicting(ctx))
    ctx.progress(len(items), len(items), f"bootstrap ({resamples} resamples)")
    metrics = evaluate_predictions([CLASS_INDEX[label] for label in labels], probs, list(CLASSES), POSITIVE,
                                   resamples, seed)
    rows = {_run_label(meta): metrics}
    tables = {"global": global_rows(rows), "melanoma": melanoma_rows(rows),
              "markdown": global_table(rows) + "\n" + melanoma_table(rows)}
    run = {k: meta.get(k) for k in ("classifier", "profile", "regime", "seed", "pretrained", "run_name",
                                    "best_epoch", "selection_metric", "val_metric", "train_counts")}
    checkpoint = {"uri": request["checkpoint_uri"], "sha256": checkpoint_sha}
    result = {"run": run, "split": split, "checkpoint": checkpoint, "data": request["data"], **metrics,
              "tables": tables,
              "predictions": [{"image_id": i, "label": label, "probs": [float(v) for v in row]}
                              for i, label, row in zip(ids, labels, probs, strict=True)]}
    csv = write_predictions_csv(ids, probs, CLASSES).encode()
    outputs = {"result_json": _put_json(ctx.store, f"{prefix}/result.json", result),
               "predictions_csv": _put(ctx.store, f"{prefix}/predictions.csv", csv, "text/csv")}
    summary = {"n": len(ids), "split": split,
               **{f"global_{k}": v["value"] for k, v in metrics["global"].items()},
               **{f"melanoma_{k}": v["value"] for k, v in metrics["melanoma"].items() if isinstance(v, dict)}}
    return _finish(ctx, prefix, outputs, summary)


def _test_result(store: ObjectStore, uri: str, what: str) -> dict[str, Any]:
    raw = store.get_bytes(_key(store, uri, what))
    try:
        result = json.loads(raw)
        if not isinstance(result.get("predictions"), list) or "classes" not in result:
            raise ValueError("it has no predictions")
    except (ValueError, AttributeError) as error:
        raise FailedPrecondition(f"{what} is not a StartTest result_json ({error})") from None
    return result


def _compare_job(request: dict[str, Any], ctx) -> dict[str, Any]:
    baseline = _test_result(ctx.store, request.get("baseline_result_uri", ""), "baseline_result_uri")
    candidate = _test_result(ctx.store, request.get("candidate_result_uri", ""), "candidate_result_uri")
    seed = _count(request, "seed")
    resamples = _count(request, "bootstrap_samples", MAX_BOOTSTRAP) or DEFAULT_RESAMPLES
    if baseline["classes"] != candidate["classes"]:
        raise FailedPrecondition(f"the results have different classes: {baseline['classes']} vs "
                                 f"{candidate['classes']}")
    ids = [p["image_id"] for p in baseline["predictions"]]
    by_id = {p["image_id"]: p for p in candidate["predictions"]}
    if sorted(by_id) != sorted(ids):
        raise FailedPrecondition("the two results were scored on different images",
                                 hint="test both checkpoints on the same data manifest and split")
    paired = [by_id[i] for i in ids]  # the same images, maybe in another order: paired by id
    if any(p["label"] != q["label"] for p, q in zip(baseline["predictions"], paired, strict=True)):
        raise FailedPrecondition("the two results disagree on image labels")
    digests = [sha256_bytes(json.dumps(r, sort_keys=True).encode()) for r in (baseline, candidate)]
    prefix = _job_prefix("classifier-compare", digests, {"bootstrap": resamples}, seed)
    reused = _reuse(ctx, prefix)
    if reused is not None:
        return reused
    classes = baseline["classes"]
    labels = [classes.index(p["label"]) for p in baseline["predictions"]]
    ctx.progress(0, 1, "paired tests")
    # A is the candidate and B the baseline, so a positive difference is an improvement.
    comparison = compare_pipelines(labels, [p["probs"] for p in paired],
                                   [p["probs"] for p in baseline["predictions"]], ids, ids, classes, POSITIVE,
                                   resamples, seed)
    document = {"a": "candidate", "b": "baseline", "differences": "candidate - baseline",
                "baseline": {"uri": request["baseline_result_uri"], "run": baseline.get("run")},
                "candidate": {"uri": request["candidate_result_uri"], "run": candidate.get("run")},
                **comparison}
    outputs = {"comparison_json": _put_json(ctx.store, f"{prefix}/comparison.json", document)}
    delong = comparison["delong_roc_auc"] or {}
    summary = {"n": comparison["n"], "delong_p_value": delong.get("p_value"),
               **{f"{name}_difference": entry["difference"]
                  for name, entry in comparison["paired_bootstrap"].items()}}
    return _finish(ctx, prefix, outputs, summary)


def _gradcam_job(request: dict[str, Any], ctx) -> dict[str, Any]:
    from services.classification.gradcam import gradcam_overlays, target_layer
    from services.preprocessing.decoding import decode_image

    data = _manifest(ctx.store, request.get("data"), "data manifest")
    split = _split(request.get("split", ""))
    count = _count(request, "count", MAX_GRADCAM_COUNT) or DEFAULT_GRADCAM_COUNT
    labels = sorted(set(request.get("labels", [])) or set(CLASSES))
    model, config, meta, checkpoint_sha = _load_model(ctx, request.get("checkpoint_uri", ""))
    layer, _ = target_layer(model, meta["classifier"], request.get("target_layer", ""))
    items = [item for item in data_core.split_items(data, split) if item.label in labels][:count]
    if not items:
        raise FailedPrecondition(f"no {split} items with labels {labels} in the data manifest")
    prefix = _job_prefix("classifier-gradcam", [checkpoint_sha, data.content_hash()],
                         {"split": split, "count": count, "labels": labels, "layer": layer})
    reused = _reuse(ctx, prefix)
    if reused is not None:
        return reused
    ctx.progress(0, len(items), "grad-cam")
    images = [decode_image(read_item(ctx.store, item)) for item in items]
    overlays = gradcam_overlays(model, meta["classifier"], config, images, layer, select_device())
    out_items = []
    for name, item, overlay in zip(item_names(items), items, overlays, strict=True):
        stem = name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        info = ctx.store.put_bytes(f"{prefix}/overlays/{stem}.png", overlay.png, "image/png")
        out_items.append(Item(
            key=info.key, sha256=info.sha256, label=item.label, lesion_id=item.lesion_id, split=item.split,
            source=item.source, image_id=f"{stem}_gradcam",
            meta={"method": "gradcam", "target_layer": layer, "parent_key": item.key,
                  "explained_class": CLASSES[overlay.target_class],
                  "probability": float(overlay.probs[overlay.target_class])}))
    parents = [ParentRef(request["data"]["uri"], request["data"].get("sha256", "")),
               ParentRef(request["checkpoint_uri"], checkpoint_sha)]
    provenance = Provenance(stage="classifier-gradcam", stage_version=STAGE_VERSION, parents=parents,
                            config={"classifier": meta["classifier"], "layer": layer, "split": split})
    ref = write_manifest(ctx.store, f"{prefix}/manifest.json",
                         Manifest(out_items, provenance, name=f"gradcam-{meta['classifier']}"))
    return _finish(ctx, prefix, {"manifest": (ref.uri, ref.sha256)},
                   {"overlays": len(out_items), "layer": layer})


def _predict_job(request: dict[str, Any], ctx) -> dict[str, Any]:
    data = _manifest(ctx.store, request.get("data"), "data manifest")
    splits = sorted(set(request.get("splits", [])))
    batch_size = _count(request, "batch_size", MAX_BATCH)
    model, config, meta, checkpoint_sha = _load_model(ctx, request.get("checkpoint_uri", ""))
    items = [item for item in data.items if not splits or item.split in splits]
    if not items:
        raise FailedPrecondition(f"no items in splits {splits} of the data manifest")
    prefix = _job_prefix("classifier-predict", [checkpoint_sha, data.content_hash()], {"splits": splits})
    reused = _reuse(ctx, prefix)
    if reused is not None:
        return reused
    ids, labels, probs = predict_items(model, config, ctx.store, items, select_device(), batch_size,
                                       on_batch=_predicting(ctx))
    rows = [{"image_id": i, "key": item.key, "label": label, "split": item.split, "source": item.source,
             "predicted": CLASSES[int(np.argmax(row))], "probs": [float(v) for v in row]}
            for i, item, label, row in zip(ids, items, labels, probs, strict=True)]
    document = {"classes": list(CLASSES), "classifier": meta["classifier"],
                "run_name": meta.get("run_name", ""),
                "checkpoint": {"uri": request["checkpoint_uri"], "sha256": checkpoint_sha},
                "data": request["data"], "items": rows}
    csv = write_predictions_csv(ids, probs, CLASSES).encode()
    outputs = {"predictions_json": _put_json(ctx.store, f"{prefix}/predictions.json", document),
               "predictions_csv": _put(ctx.store, f"{prefix}/predictions.csv", csv, "text/csv")}
    return _finish(ctx, prefix, outputs, {"n": len(ids), "splits": splits})


def setup(ctx: ServiceContext) -> None:
    classification_pb2_grpc.add_ClassificationServicer_to_server(ClassificationServicer(ctx), ctx.server)
    ctx.runner.register("train_classifier", _train_job)
    ctx.runner.register("test_classifier", _test_job)
    ctx.runner.register("compare_classifiers", _compare_job)
    ctx.runner.register("gradcam", _gradcam_job)
    ctx.runner.register("predict", _predict_job)
