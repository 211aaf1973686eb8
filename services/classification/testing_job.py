"""The classification service's ``test_classifier`` and ``compare_classifiers`` jobs: a checkpoint scored on
one split with bootstrap confidence intervals, and two such scores compared with paired tests.

They share one document: the test job's ``result_json`` (run record, metrics, tables and per-image
predictions) is what the comparison reads, so its writer and its reader live here together. The
comparison pairs the two results by image id and refuses results scored on different images or labels:
a paired test over unpaired predictions would be a wrong number, not an error anyone sees.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
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
from skingenbench.services.classification.job_io import (
    POSITIVE,
    STAGE_VERSION,
    load_pinned_checkpoint,
    predicting_progress,
    put_bytes,
    put_json,
)
from skingenbench.services.classification.manifest_images import predict_items
from skingenbench.services.classification.request_checks import (
    RequestedManifest,
    checkpoint_ref,
    count_field,
    requested_manifest,
    require_object,
    split_name,
)
from skingenbench.services.core.classes import CLASS_INDEX, CLASSES
from skingenbench.services.core.device import select_device
from skingenbench.services.core.errors import FailedPrecondition
from skingenbench.services.core.hashing import sha256_bytes
from skingenbench.services.core.manifest import Manifest
from skingenbench.services.platform.job_kind import JobKind, JobOutputs, JobPlan, ObjectRef
from skingenbench.services.platform.jobs import JobContext
from skingenbench.services.platform.manifest_io import read_verified
from skingenbench.services.platform.store import ObjectStore

from skingenbench.api.v1 import classification_pb2

MAX_BOOTSTRAP = 100_000


def _run_label(meta: dict[str, Any]) -> str:
    return meta.get("run_name") or f"{meta['classifier']} {meta.get('regime')} seed {meta.get('seed')}"


@dataclass(frozen=True)
class TestPlan(JobPlan):
    checkpoint: ObjectRef  # the file's sha256, as read at Start
    data: RequestedManifest
    split: str
    bootstrap_samples: int
    seed: int


def _split_items(manifest: Manifest, split: str) -> list:
    """The items a test scores: every item of the split, each with one of the study's classes."""
    items = data_core.split_items(manifest, split)
    if not items:
        raise FailedPrecondition(f"the data manifest has no {split} items")
    data_core.check_labels(items, f"the {split} split")
    return items


class TestKind(JobKind[classification_pb2.TestClassifierRequest, TestPlan]):
    name = "test_classifier"
    stage = "classifier-test"
    version = STAGE_VERSION
    request_type = classification_pb2.TestClassifierRequest
    plan_type = TestPlan

    def plan(self, request: classification_pb2.TestClassifierRequest, store: ObjectStore) -> TestPlan:
        checkpoint, _ = checkpoint_ref(store, request.checkpoint_uri, request.checkpoint_sha256)
        manifest, data = requested_manifest(store, request.data, "data manifest")
        split = split_name(request.split)
        resamples = (
            count_field(request.bootstrap_samples, "bootstrap_samples", MAX_BOOTSTRAP) or DEFAULT_RESAMPLES
        )
        seed = count_field(request.seed, "seed")
        _split_items(manifest, split)
        prefix = self.address(
            [checkpoint.sha256, manifest.content_hash()], {"split": split, "bootstrap": resamples}, seed
        )
        return TestPlan(prefix, checkpoint, data, split, resamples, seed)

    def run(self, plan: TestPlan, ctx: JobContext) -> JobOutputs:
        items = _split_items(plan.data.read(ctx.store), plan.split)
        model, config, meta = load_pinned_checkpoint(ctx, plan.checkpoint)
        ids, labels, probs = predict_items(
            model, config, ctx.store, items, select_device(), on_batch=predicting_progress(ctx)
        )
        ctx.progress(len(items), len(items), f"bootstrap ({plan.bootstrap_samples} resamples)")
        metrics = evaluate_predictions(
            [CLASS_INDEX[label] for label in labels],
            probs,
            list(CLASSES),
            POSITIVE,
            plan.bootstrap_samples,
            plan.seed,
        )
        rows = {_run_label(meta): metrics}
        tables = {
            "global": global_rows(rows),
            "melanoma": melanoma_rows(rows),
            "markdown": global_table(rows) + "\n" + melanoma_table(rows),
        }
        run = {
            k: meta.get(k)
            for k in (
                "classifier",
                "profile",
                "regime",
                "seed",
                "pretrained",
                "pretrained_record",  # how the weights started: file (sha256), hub, or random init
                "run_name",
                "best_epoch",
                "selection_metric",
                "val_metric",
                "train_counts",
            )
        }
        checkpoint = {"uri": plan.checkpoint.uri, "sha256": plan.checkpoint.sha256}
        result = {
            "run": run,
            "split": plan.split,
            "checkpoint": checkpoint,
            "data": plan.data.as_request(),
            **metrics,
            "tables": tables,
            "predictions": [
                {"image_id": i, "label": label, "probs": [float(v) for v in row]}
                for i, label, row in zip(ids, labels, probs, strict=True)
            ],
        }
        csv = write_predictions_csv(ids, probs, CLASSES).encode()
        outputs = JobOutputs(
            summary={
                "n": len(ids),
                "split": plan.split,
                **{f"global_{k}": v["value"] for k, v in metrics["global"].items()},
                **{
                    f"melanoma_{k}": v["value"] for k, v in metrics["melanoma"].items() if isinstance(v, dict)
                },
            }
        )
        outputs.add("result_json", *put_json(ctx.store, f"{plan.output_prefix}/result.json", result))
        outputs.add(
            "predictions_csv", *put_bytes(ctx.store, f"{plan.output_prefix}/predictions.csv", csv, "text/csv")
        )
        return outputs


def parse_test_result(raw: bytes, what: str) -> dict[str, Any]:
    """A test job's ``result_json`` from its bytes; FAILED_PRECONDITION if the object is something else."""
    try:
        result = json.loads(raw)
        if not isinstance(result.get("predictions"), list) or "classes" not in result:
            raise ValueError("it has no predictions")
    except (ValueError, AttributeError) as error:
        raise FailedPrecondition(f"{what} is not a StartTest result_json ({error})") from None
    return result


def _pinned_result(store: ObjectStore, uri: str, what: str) -> tuple[dict[str, Any], ObjectRef]:
    """A test job's ``result_json`` and the reference that pins its bytes."""
    raw = store.get_bytes(require_object(store, uri, what))
    return parse_test_result(raw, what), ObjectRef(uri, sha256_bytes(raw))


def _paired(baseline: dict[str, Any], candidate: dict[str, Any]) -> list[dict[str, Any]]:
    """The candidate's predictions in the baseline's image order; refuses results that do not pair."""
    if baseline["classes"] != candidate["classes"]:
        raise FailedPrecondition(
            f"the results have different classes: {baseline['classes']} vs {candidate['classes']}"
        )
    ids = [p["image_id"] for p in baseline["predictions"]]
    by_id = {p["image_id"]: p for p in candidate["predictions"]}
    if sorted(by_id) != sorted(ids):
        raise FailedPrecondition(
            "the two results were scored on different images",
            hint="test both checkpoints on the same data manifest and split",
        )
    paired = [by_id[i] for i in ids]  # the same images, maybe in another order: paired by id
    if any(p["label"] != q["label"] for p, q in zip(baseline["predictions"], paired, strict=True)):
        raise FailedPrecondition("the two results disagree on image labels")
    return paired


@dataclass(frozen=True)
class ComparePlan(JobPlan):
    baseline: ObjectRef  # the result_json's sha256, as read at Start
    candidate: ObjectRef
    bootstrap_samples: int
    seed: int


class CompareKind(JobKind[classification_pb2.CompareRequest, ComparePlan]):
    name = "compare_classifiers"
    stage = "classifier-compare"
    version = STAGE_VERSION
    request_type = classification_pb2.CompareRequest
    plan_type = ComparePlan

    def plan(self, request: classification_pb2.CompareRequest, store: ObjectStore) -> ComparePlan:
        require_object(store, request.baseline_result_uri, "baseline_result_uri")
        require_object(store, request.candidate_result_uri, "candidate_result_uri")
        resamples = (
            count_field(request.bootstrap_samples, "bootstrap_samples", MAX_BOOTSTRAP) or DEFAULT_RESAMPLES
        )
        seed = count_field(request.seed, "seed")
        baseline, baseline_ref = _pinned_result(store, request.baseline_result_uri, "baseline_result_uri")
        candidate, candidate_ref = _pinned_result(store, request.candidate_result_uri, "candidate_result_uri")
        _paired(baseline, candidate)
        # The address hashes the parsed results (as it always has), not the files' bytes.
        digests = [sha256_bytes(json.dumps(r, sort_keys=True).encode()) for r in (baseline, candidate)]
        prefix = self.address(digests, {"bootstrap": resamples}, seed)
        return ComparePlan(prefix, baseline_ref, candidate_ref, resamples, seed)

    def run(self, plan: ComparePlan, ctx: JobContext) -> JobOutputs:
        baseline, candidate = (
            parse_test_result(read_verified(ctx.store, ctx.store.key_from_uri(ref.uri), ref.sha256), what)
            for ref, what in (
                (plan.baseline, "baseline_result_uri"),
                (plan.candidate, "candidate_result_uri"),
            )
        )
        paired = _paired(baseline, candidate)
        ids = [p["image_id"] for p in baseline["predictions"]]
        classes = baseline["classes"]
        labels = [classes.index(p["label"]) for p in baseline["predictions"]]
        ctx.progress(0, 1, "paired tests")
        # A is the candidate and B the baseline, so a positive difference is an improvement.
        comparison = compare_pipelines(
            labels,
            [p["probs"] for p in paired],
            [p["probs"] for p in baseline["predictions"]],
            ids,
            ids,
            classes,
            POSITIVE,
            plan.bootstrap_samples,
            plan.seed,
        )
        document = {
            "a": "candidate",
            "b": "baseline",
            "differences": "candidate - baseline",
            "baseline": {"uri": plan.baseline.uri, "run": baseline.get("run")},
            "candidate": {"uri": plan.candidate.uri, "run": candidate.get("run")},
            **comparison,
        }
        delong = comparison["delong_roc_auc"] or {}
        outputs = JobOutputs(
            summary={
                "n": comparison["n"],
                "delong_p_value": delong.get("p_value"),
                **{
                    f"{name}_difference": entry["difference"]
                    for name, entry in comparison["paired_bootstrap"].items()
                },
            }
        )
        outputs.add(
            "comparison_json", *put_json(ctx.store, f"{plan.output_prefix}/comparison.json", document)
        )
        return outputs
