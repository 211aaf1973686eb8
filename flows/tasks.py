"""Prefect tasks of the benchmark grid. Each builds a request, runs one service job through the
stage's endpoint pool of the run's wiring (its first argument), shows its progress as a Prefect
progress artifact, and returns plain data.

Each task is one cell of the grid; the flow names its run after the cell (``train A2/resnet50/seed0``)
and tags it with its stage (``scheduling.py``).

Re-running a grid recomputes nothing that finished: services identify a job by its request and
return a finished job as it is, and their outputs are content-addressed in the shared store.

Over 400 lines because it is one task per service call of the grid (fourteen), each a few lines of
request building around the shared ``_run``; the flow reads them as one list.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NONE
from skingenbench.flows.jobs import JobOutcome, run_job
from skingenbench.flows.quality_gate import apply_quality_gate, gate_inputs, gate_summary
from skingenbench.flows.scheduling import current_cell
from skingenbench.flows.wiring import Wiring, pools_for

from skingenbench.api.v1 import (
    classification_pb2,
    classification_pb2_grpc,
    common_pb2,
    evaluation_pb2,
    evaluation_pb2_grpc,
    generation_pb2,
    generation_pb2_grpc,
    preprocessing_pb2,
    preprocessing_pb2_grpc,
)


def _logger() -> logging.Logger | logging.LoggerAdapter:
    try:
        return get_run_logger()
    except Exception:  # called outside a flow run (tests of the helpers)
        return logging.getLogger("skingenbench.flow")


def _show_state(name: str) -> None:
    """Name the running task's Prefect state (``Running(name="Queued")`` while its job waits in the
    service's queue), so the UI tells a queued job from a running one; a view only, errors ignored."""
    try:
        from prefect.client.orchestration import get_client
        from prefect.context import TaskRunContext
        from prefect.states import Running

        context = TaskRunContext.get()
        if context is None:
            return
        with get_client(sync_client=True) as client:
            client.set_task_run_state(context.task_run.id, Running(name=name), force=True)
    except Exception:
        _logger().debug("could not name the task run's state %s", name, exc_info=True)


class _JobView:
    """One job's progress, shown three ways: the grid's progress (``flows/progress.py``), the task run's
    own progress artifact (no key: it belongs to the task run, and the Artifacts page lists only the
    grid's), and the task run's state name ("Queued" while the job waits in its service's queue).

    Prefect is told only what a person would see: the artifact is made once the job has run for
    ``QUIET_S`` and updated at most that often; "Queued" is shown once a job has waited ``QUIET_S``.
    A grid of short jobs so makes no API calls beyond the task runs' own, which matters on a busy server.
    """

    QUIET_S = 2.0

    def __init__(self, label: str) -> None:
        self.label = label
        self.cell = current_cell()
        self.endpoint = ""
        self.shown_state = ""
        self.lock = threading.Lock()
        self.started_at = time.monotonic()
        self.last = 0.0
        self.artifact_id = None
        self.artifact_failed = False
        self.queued_timer: threading.Timer | None = None

    def started(self, job: common_pb2.Job, endpoint: str) -> None:
        self.endpoint, self.started_at = endpoint, time.monotonic()
        if self.cell and self.cell.progress:
            self.cell.progress.started(self.cell.stage, self.cell.cell, job.job_id, endpoint)
        if job.state == common_pb2.JOB_STATE_QUEUED:
            self._queued()

    def event(self, event: common_pb2.ProgressEvent) -> None:
        percent = 100.0 * event.step / event.total if event.total else 0.0
        running = event.state != common_pb2.JOB_STATE_QUEUED
        if self.cell and self.cell.progress:
            self.cell.progress.update(self.cell.cell, "running" if running else "queued", percent)
        if not running:
            self._queued()
            return
        with self.lock:
            if self.queued_timer is not None:
                self.queued_timer.cancel()
                self.queued_timer = None
            show = self.shown_state == "Queued"
            self.shown_state = "Running"
        if show:
            _show_state("Running")
        now = time.monotonic()
        if now - self.started_at >= self.QUIET_S and now - self.last >= self.QUIET_S:
            self.last = now
            self._artifact(min(100.0, percent), f"{self.label}: running on {self.endpoint}")

    def _queued(self) -> None:
        with self.lock:
            if self.queued_timer is None and not self.shown_state:
                self.queued_timer = threading.Timer(self.QUIET_S, self._show_queued)
                self.queued_timer.daemon = True
                self.queued_timer.start()

    def _show_queued(self) -> None:
        with self.lock:
            if self.queued_timer is None or self.shown_state:
                return
            self.queued_timer, self.shown_state = None, "Queued"
        _show_state("Queued")
        self._artifact(0.0, f"{self.label}: queued on {self.endpoint}")

    def done(self) -> None:
        with self.lock:
            if self.queued_timer is not None:
                self.queued_timer.cancel()
                self.queued_timer = None
        if self.artifact_id:
            self._artifact(100.0, f"{self.label}: done on {self.endpoint}")

    def _artifact(self, percent: float, description: str) -> None:
        if self.artifact_failed:
            return
        try:
            if self.artifact_id is None:
                self.artifact_id = create_progress_artifact(progress=percent, description=description)
            else:
                update_progress_artifact(self.artifact_id, progress=percent, description=description)
        except Exception:
            self.artifact_failed = True  # the view stops; the job does not


def _run(wiring: Wiring, stage: str, stub: type, method: str, request: Any, label: str) -> JobOutcome:
    """Run a job, showing its progress (``_JobView``)."""
    view = _JobView(label)
    try:
        outcome = run_job(
            pools_for(wiring)[stage], stub, method, request, on_event=view.event, on_start=view.started
        )
    finally:
        view.done()
    _logger().info(
        "%s: %s job %s on %s%s (%d events)",
        label,
        outcome.kind,
        outcome.job_id,
        outcome.endpoint,
        " (reused)" if outcome.reused else "",
        outcome.events,
    )
    return outcome


def _ref(outcome: JobOutcome, name: str = "manifest") -> dict[str, Any]:
    out = outcome.outputs[name]
    return {"uri": out.uri, "sha256": out.sha256, "item_count": int(outcome.result.get("item_count", 0))}


def _manifest(ref: dict[str, Any]) -> common_pb2.ManifestRef:
    return common_pb2.ManifestRef(
        uri=ref["uri"], sha256=ref.get("sha256", ""), item_count=ref.get("item_count", 0)
    )


def _outputs(outcome: JobOutcome) -> dict[str, str]:
    return {name: ref.uri for name, ref in outcome.outputs.items()}


Checkpoint = dict[str, str] | str  # {"uri", "sha256"} as ``train_classifier`` returns it, or a bare URI


def _checkpoint(checkpoint: Checkpoint) -> tuple[str, str]:
    """(uri, sha256) of a classifier checkpoint: the services check the file against the sha256 at Start
    (DATA_LOSS when it changed), so the grid passes the one the training job's output carries."""
    if isinstance(checkpoint, dict):
        return checkpoint.get("uri", ""), checkpoint.get("sha256", "")
    return checkpoint, ""


def _checkpoint_ref(checkpoint: Checkpoint) -> common_pb2.ObjectRef:
    uri, sha256 = _checkpoint(checkpoint)
    return common_pb2.ObjectRef(uri=uri, sha256=sha256)


# -- data -----------------------------------------------------------------------------------------
@task(name="import data", cache_policy=NONE)
def import_data(wiring: Wiring, source: str, path: str, options: dict[str, Any], seed: int) -> dict[str, Any]:
    request = preprocessing_pb2.ImportRequest(
        source=source, source_uri=path, options_json=json.dumps(options), seed=seed
    )
    outcome = _run(
        wiring,
        "preprocessing",
        preprocessing_pb2_grpc.PreprocessingStub,
        "StartImport",
        request,
        f"import {source}",
    )
    return {"manifest": _ref(outcome), "outputs": _outputs(outcome), "result": outcome.result}


@task(name="split by lesion", cache_policy=NONE)
def split(
    wiring: Wiring, manifests: list[dict[str, Any]], fractions: tuple[float, float, float], seed: int
) -> dict[str, Any]:
    request = preprocessing_pb2.SplitRequest(
        inputs=[_manifest(m) for m in manifests],
        train_fraction=fractions[0],
        val_fraction=fractions[1],
        test_fraction=fractions[2],
        seed=seed,
    )
    outcome = _run(
        wiring, "preprocessing", preprocessing_pb2_grpc.PreprocessingStub, "StartSplit", request, "split"
    )
    return {"manifest": _ref(outcome), "outputs": _outputs(outcome), "result": outcome.result}


@task(name="preprocess", cache_policy=NONE)
def preprocess(
    wiring: Wiring,
    manifest: dict[str, Any],
    pipeline: str,
    profile: str,
    config: dict[str, Any],
    seed: int,
    augment_copies: int = 0,
    splits: list[str] | None = None,
) -> dict[str, Any]:
    request = preprocessing_pb2.PreprocessRequest(
        input=_manifest(manifest),
        pipeline=pipeline,
        profile=profile,
        config_json=json.dumps(config),
        seed=seed,
        augment_copies=augment_copies,
        splits=splits or [],
    )
    label = f"preprocess {pipeline}" + (f" +{augment_copies} augmented" if augment_copies else "")
    outcome = _run(
        wiring, "preprocessing", preprocessing_pb2_grpc.PreprocessingStub, "StartPreprocess", request, label
    )
    return {"manifest": _ref(outcome), "result": outcome.result}


@task(name="artifact-removal quality", cache_policy=NONE)
def quality(
    wiring: Wiring, manifest: dict[str, Any], pipeline: str, profile: str, config: dict[str, Any]
) -> dict[str, Any]:
    request = preprocessing_pb2.QualityReportRequest(
        input=_manifest(manifest), pipeline=pipeline, profile=profile, config_json=json.dumps(config)
    )
    outcome = _run(
        wiring,
        "preprocessing",
        preprocessing_pb2_grpc.PreprocessingStub,
        "StartQualityReport",
        request,
        f"quality {pipeline}",
    )
    return {"outputs": _outputs(outcome), "result": outcome.result}


# -- generation -------------------------------------------------------------------------------------
@task(name="train generator", cache_policy=NONE)
def train_generator(
    wiring: Wiring,
    manifest: dict[str, Any],
    generator: str,
    profile: str,
    config: dict[str, Any],
    label: str,
    seed: int,
    name: str,
) -> dict[str, Any]:
    request = generation_pb2.TrainGeneratorRequest(
        generator=generator,
        profile=profile,
        config_json=json.dumps(config),
        train=_manifest(manifest),
        classes=[label],
        seed=seed,
        name=name,
    )
    outcome = _run(
        wiring, "generation", generation_pb2_grpc.GenerationStub, "StartTraining", request, f"train {name}"
    )
    model = outcome.outputs["model"]
    return {
        "outputs": _outputs(outcome),
        "result": outcome.result,
        "model": {"uri": model.uri, "sha256": model.sha256},  # the report's provenance lists the checksum
    }


@task(name="sample", cache_policy=NONE)
def sample(
    wiring: Wiring,
    model_uri: str,
    count: int,
    seed: int,
    name: str,
    conditioning: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``conditioning`` (e.g. DermGAN's ``{"balance_skin_tone": True}``) is set on the request only when
    given, so a request without it is the same job as before the option existed."""
    request = generation_pb2.SampleRequest(model_uri=model_uri, count=count, seed=seed)
    if conditioning:
        request.conditioning.CopyFrom(generation_pb2.Conditioning(**conditioning))
    outcome = _run(
        wiring, "generation", generation_pb2_grpc.GenerationStub, "StartSampling", request, f"sample {name}"
    )
    return {"manifest": _ref(outcome), "result": outcome.result}


@task(name="controllability", cache_policy=NONE)
def controllability(
    wiring: Wiring, model_uri: str, axes: dict[str, Any], seed: int, name: str
) -> dict[str, Any]:
    """DermGAN's requested-vs-measured report over the grid's controllability axes."""
    request = generation_pb2.ControllabilityRequest(
        model_uri=model_uri,
        labels=axes.get("labels", []),
        lesion_area_fractions=axes.get("lesion_area_fractions", []),
        ita_degrees=axes.get("ita_degrees", []),
        centres=[generation_pb2.LesionCentre(x=x, y=y) for x, y in axes.get("centres", [])],
        repeats=int(axes.get("repeats", 0)),
        seed=seed,
    )
    outcome = _run(
        wiring,
        "generation",
        generation_pb2_grpc.GenerationStub,
        "StartControllability",
        request,
        f"controllability {name}",
    )
    return {"manifest": _ref(outcome), "outputs": _outputs(outcome), "result": outcome.result}


# -- evaluation ---------------------------------------------------------------------------------------
@task(name="evaluate synthetic sets", cache_policy=NONE)
def evaluate(
    wiring: Wiring,
    real: dict[str, Any],
    synthetic: dict[str, dict[str, Any]],
    label: str,
    options: dict[str, Any],
    classifier_checkpoint: Checkpoint,
    seed: int,
    name: str,
) -> dict[str, Any]:
    request = evaluation_pb2.EvaluateRequest(
        real=_manifest(real),
        real_splits=["train"],
        real_labels=[label],
        synthetic=[
            evaluation_pb2.SyntheticSet(name=n, manifest=_manifest(m), intended_label=label)
            for n, m in synthetic.items()
        ],
        options_json=json.dumps(options),
        seed=seed,
        classifier_checkpoint=_checkpoint_ref(classifier_checkpoint) if classifier_checkpoint else None,
    )
    outcome = _run(
        wiring,
        "evaluation",
        evaluation_pb2_grpc.EvaluationStub,
        "StartEvaluation",
        request,
        f"evaluate {name}",
    )
    return {"outputs": _outputs(outcome), "result": outcome.result}


@task(name="class anchoring", cache_policy=NONE)
def class_anchoring(
    wiring: Wiring,
    real: dict[str, Any],
    synthetic: dict[str, Any],
    profile: str,
    classifier_checkpoint: Checkpoint,
    seed: int,
    name: str,
) -> dict[str, Any]:
    """Class anchoring alone, each image against the class it was asked to show (a conditional set)."""
    request = evaluation_pb2.EvaluateRequest(
        real=_manifest(real),
        real_splits=["train"],
        synthetic=[
            evaluation_pb2.SyntheticSet(name=name, manifest=_manifest(synthetic), per_item_labels=True)
        ],
        metrics=["class_anchoring"],
        options_json=json.dumps({"profile": profile, "grid_images": 0}),
        seed=seed,
        classifier_checkpoint=_checkpoint_ref(classifier_checkpoint),
    )
    outcome = _run(
        wiring,
        "evaluation",
        evaluation_pb2_grpc.EvaluationStub,
        "StartEvaluation",
        request,
        f"class anchoring {name}",
    )
    return {"outputs": _outputs(outcome), "result": outcome.result}


@task(name="quality gate", cache_policy=NONE)
def quality_gate(
    wiring: Wiring,
    real: dict[str, Any],
    synthetic: dict[str, Any],
    measured: dict[str, Any],
    label: str,
    options: dict[str, Any],
    config: dict[str, Any],
    classifier_checkpoint: Checkpoint,
    seed: int,
    name: str,
) -> dict[str, Any]:
    """The synthetic-set quality gate of one training mix (``flows/quality_gate.py``): the evaluation
    service's memorization check of the mix against the real training images of ``label``, then the gate
    over those pairs and the statistics preprocessing measured (``measured``, the mix through the arm's
    pipeline). Returns the rejected ids (sorted) and the gate's summary for the report.

    With the arm's real-only classifier (``classifier_checkpoint``), memorization is measured where the
    arm's evaluation measures it: in Inception's space when its weights are installed, else in the
    classifier's (the evaluation service falls back to it; domain FID comes along, being that space's)."""
    request = evaluation_pb2.EvaluateRequest(
        real=_manifest(real),
        real_splits=["train"],
        real_labels=[label],
        synthetic=[
            evaluation_pb2.SyntheticSet(name=name, manifest=_manifest(synthetic), intended_label=label)
        ],
        metrics=["memorization", "domain_fid"] if classifier_checkpoint else ["memorization"],
        options_json=json.dumps({**options, "grid_images": 0}),
        seed=seed,
        classifier_checkpoint=_checkpoint_ref(classifier_checkpoint) if classifier_checkpoint else None,
    )
    outcome = _run(
        wiring, "evaluation", evaluation_pb2_grpc.EvaluationStub, "StartEvaluation", request, f"gate {name}"
    )
    store = wiring.store()

    def read(uri: str) -> dict[str, Any]:
        return json.loads(store.get_bytes(store.key_from_uri(uri)))

    report = read(outcome.outputs["report_json"].uri)
    ids, synthetic_stats, real_stats = gate_inputs(
        read(synthetic["uri"]), read(measured["uri"]), read(real["uri"]), label
    )
    gate = apply_quality_gate(
        ids,
        memorization_pairs=report["memorization"][name]["pairs"],
        synthetic_stats=synthetic_stats,
        real_stats=real_stats,
        config=config,
    )
    return {
        "outputs": _outputs(outcome),
        "result": {"checked": gate["checked"], "rejected": gate["rejected_count"]},
        "rejected_ids": sorted(gate["rejected"]),
        "gate": gate_summary(gate, len(ids)),
    }


# -- classification -------------------------------------------------------------------------------------
def train_classifier_request(
    data: dict[str, Any],
    classifier: str,
    profile: str,
    config: dict[str, Any],
    regime: str,
    synthetic: list[dict[str, Any]],
    augmented: dict[str, Any] | None,
    synthetic_count: int,
    synthetic_label: str,
    seed: int,
    run_name: str,
    exclude_synthetic: list[str] | None = None,
) -> classification_pb2.TrainClassifierRequest:
    """The training request of a classifier cell (its content address: equal requests, one job).
    ``exclude_synthetic``: the quality gate's rejections (none unless the grid's gate is on)."""
    return classification_pb2.TrainClassifierRequest(
        classifier=classifier,
        profile=profile,
        config_json=json.dumps(config),
        data=_manifest(data),
        regime=regime,
        synthetic=[_manifest(s) for s in synthetic],
        synthetic_count=synthetic_count,
        synthetic_label=synthetic_label,
        seed=seed,
        run_name=run_name,
        augmented=_manifest(augmented) if augmented else None,
        exclude_synthetic=sorted(exclude_synthetic or []),
    )


@task(name="train classifier", cache_policy=NONE)
def train_classifier(
    wiring: Wiring,
    data: dict[str, Any],
    classifier: str,
    profile: str,
    config: dict[str, Any],
    regime: str,
    synthetic: list[dict[str, Any]],
    augmented: dict[str, Any] | None,
    synthetic_count: int,
    synthetic_label: str,
    seed: int,
    run_name: str,
    exclude_synthetic: list[str] | None = None,
) -> dict[str, Any]:
    request = train_classifier_request(
        data,
        classifier,
        profile,
        config,
        regime,
        synthetic,
        augmented,
        synthetic_count,
        synthetic_label,
        seed,
        run_name,
        exclude_synthetic,
    )
    outcome = _run(
        wiring,
        "classification",
        classification_pb2_grpc.ClassificationStub,
        "StartTraining",
        request,
        f"train {run_name}",
    )
    checkpoint = outcome.outputs["checkpoint"]
    return {
        "outputs": _outputs(outcome),
        "result": outcome.result,
        "checkpoint": {"uri": checkpoint.uri, "sha256": checkpoint.sha256},
    }


@task(name="test classifier", cache_policy=NONE)
def test_classifier(
    wiring: Wiring, checkpoint: Checkpoint, data: dict[str, Any], bootstrap: int, seed: int, run_name: str
) -> dict:
    uri, sha256 = _checkpoint(checkpoint)
    request = classification_pb2.TestClassifierRequest(
        checkpoint_uri=uri,
        checkpoint_sha256=sha256,
        data=_manifest(data),
        split="test",
        bootstrap_samples=bootstrap,
        seed=seed,
    )
    outcome = _run(
        wiring,
        "classification",
        classification_pb2_grpc.ClassificationStub,
        "StartTest",
        request,
        f"test {run_name}",
    )
    return {"outputs": _outputs(outcome), "result": outcome.result}


@task(name="compare with baseline", cache_policy=NONE)
def compare(
    wiring: Wiring, baseline_uri: str, candidate_uri: str, bootstrap: int, seed: int, name: str
) -> dict[str, Any]:
    request = classification_pb2.CompareRequest(
        baseline_result_uri=baseline_uri,
        candidate_result_uri=candidate_uri,
        bootstrap_samples=bootstrap,
        seed=seed,
    )
    outcome = _run(
        wiring,
        "classification",
        classification_pb2_grpc.ClassificationStub,
        "StartComparison",
        request,
        f"compare {name}",
    )
    return {"outputs": _outputs(outcome), "result": outcome.result}


@task(name="grad-cam", cache_policy=NONE)
def gradcam(
    wiring: Wiring, checkpoint: Checkpoint, data: dict[str, Any], count: int, run_name: str
) -> dict[str, Any]:
    uri, sha256 = _checkpoint(checkpoint)
    request = classification_pb2.GradCamRequest(
        checkpoint_uri=uri, checkpoint_sha256=sha256, data=_manifest(data), split="test", count=count
    )
    outcome = _run(
        wiring,
        "classification",
        classification_pb2_grpc.ClassificationStub,
        "StartGradCam",
        request,
        f"grad-cam {run_name}",
    )
    return {"manifest": _ref(outcome), "outputs": _outputs(outcome)}


def service_info(wiring: Wiring, stage: str) -> dict[str, Any]:
    """What a stage's service runs on and has registered (a stage with nothing registered is skipped)."""
    pool = pools_for(wiring)[stage]

    def call(channel):
        stub = {
            "generation": generation_pb2_grpc.GenerationStub,
            "evaluation": evaluation_pb2_grpc.EvaluationStub,
            "classification": classification_pb2_grpc.ClassificationStub,
            "preprocessing": preprocessing_pb2_grpc.PreprocessingStub,
        }[stage](channel)
        info = stub.GetServiceInfo(common_pb2.GetServiceInfoRequest(), timeout=30)
        return {
            "registry": list(info.registry),
            "device": info.device,
            "code_version": info.code_version,
            "store": info.store_uri,
            "job_slots": info.job_slots,
            "libraries": dict(sorted(info.libraries.items())),
            "dtype": info.dtype,
        }

    return pool.run(call, what=f"{stage} GetServiceInfo")


def registry_names(wiring: Wiring, stage: str) -> list[str]:
    return service_info(wiring, stage)["registry"]
