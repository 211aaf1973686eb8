"""The classification service's ``test_classifier`` and ``compare_classifiers`` jobs: a checkpoint scored on
one split with bootstrap confidence intervals, and two such scores compared with paired tests.

They share one document: the test job's ``result_json`` (run record, metrics, tables and per-image
predictions) is what the comparison reads, so its writer and its reader live here together. The
comparison pairs the two results by image id and refuses results scored on different images or labels:
a paired test over unpaired predictions would be a wrong number, not an error anyone sees.
"""

from __future__ import annotations

import json
from typing import Any

from skingenbench.services.classification.core import data as data_core
from skingenbench.services.classification.core.bootstrap import DEFAULT_RESAMPLES, evaluate_predictions
from skingenbench.services.classification.core.paired_tests import compare_pipelines
from skingenbench.services.classification.core.predictions_csv import write_predictions_csv
from skingenbench.services.classification.core.report_tables import (
    global_rows,
    global_table,
    melanoma_rows,
    melanoma_table,
)
from skingenbench.services.classification.job_store import (
    POSITIVE,
    finish_job,
    job_prefix,
    load_checkpoint,
    predicting_progress,
    put_bytes,
    put_json,
    reuse_outputs,
)
from skingenbench.services.classification.manifest_images import predict_items
from skingenbench.services.classification.request_checks import (
    count_field,
    manifest_from_ref,
    require_object,
    split_name,
)
from skingenbench.services.core.classes import CLASS_INDEX, CLASSES
from skingenbench.services.core.device import select_device
from skingenbench.services.core.errors import FailedPrecondition
from skingenbench.services.core.hashing import sha256_bytes
from skingenbench.services.platform.jobs import JobContext
from skingenbench.services.platform.store import ObjectStore

MAX_BOOTSTRAP = 100_000


def _run_label(meta: dict[str, Any]) -> str:
    return meta.get("run_name") or f"{meta['classifier']} {meta.get('regime')} seed {meta.get('seed')}"


def test_classifier_job(request: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    data = manifest_from_ref(ctx.store, request.get("data"), "data manifest")
    split, seed = split_name(request.get("split", "")), count_field(request, "seed")
    resamples = count_field(request, "bootstrap_samples", MAX_BOOTSTRAP) or DEFAULT_RESAMPLES
    model, config, meta, checkpoint_sha = load_checkpoint(ctx, request.get("checkpoint_uri", ""))
    prefix = job_prefix("classifier-test", [checkpoint_sha, data.content_hash()],
                        {"split": split, "bootstrap": resamples}, seed)
    reused = reuse_outputs(ctx, prefix)
    if reused is not None:
        return reused
    items = data_core.split_items(data, split)
    if not items:
        raise FailedPrecondition(f"the data manifest has no {split} items")
    data_core.check_labels(items, f"the {split} split")
    ids, labels, probs = predict_items(model, config, ctx.store, items, select_device(),
                                       on_batch=predicting_progress(ctx))
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
    outputs = {"result_json": put_json(ctx.store, f"{prefix}/result.json", result),
               "predictions_csv": put_bytes(ctx.store, f"{prefix}/predictions.csv", csv, "text/csv")}
    summary = {"n": len(ids), "split": split,
               **{f"global_{k}": v["value"] for k, v in metrics["global"].items()},
               **{f"melanoma_{k}": v["value"] for k, v in metrics["melanoma"].items() if isinstance(v, dict)}}
    return finish_job(ctx, prefix, outputs, summary)


def read_test_result(store: ObjectStore, uri: str, what: str) -> dict[str, Any]:
    """A test job's ``result_json``; FAILED_PRECONDITION if the object is something else."""
    raw = store.get_bytes(require_object(store, uri, what))
    try:
        result = json.loads(raw)
        if not isinstance(result.get("predictions"), list) or "classes" not in result:
            raise ValueError("it has no predictions")
    except (ValueError, AttributeError) as error:
        raise FailedPrecondition(f"{what} is not a StartTest result_json ({error})") from None
    return result


def compare_classifiers_job(request: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    baseline = read_test_result(ctx.store, request.get("baseline_result_uri", ""), "baseline_result_uri")
    candidate = read_test_result(ctx.store, request.get("candidate_result_uri", ""), "candidate_result_uri")
    seed = count_field(request, "seed")
    resamples = count_field(request, "bootstrap_samples", MAX_BOOTSTRAP) or DEFAULT_RESAMPLES
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
    prefix = job_prefix("classifier-compare", digests, {"bootstrap": resamples}, seed)
    reused = reuse_outputs(ctx, prefix)
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
    outputs = {"comparison_json": put_json(ctx.store, f"{prefix}/comparison.json", document)}
    delong = comparison["delong_roc_auc"] or {}
    summary = {"n": comparison["n"], "delong_p_value": delong.get("p_value"),
               **{f"{name}_difference": entry["difference"]
                  for name, entry in comparison["paired_bootstrap"].items()}}
    return finish_job(ctx, prefix, outputs, summary)
