"""The job sequence the deploy check runs through the containers: import a phantom set → split by lesion →
preprocess → train a tiny generator on the training melanomas → sample → train a classifier → evaluate
the samples → test the classifier; then the jobs that keep every service busy while the stack stops.

It calls the flow's own task functions (flows/tasks.py, their plain ``.fn``, without a Prefect server) on
a ``Wiring`` of the published ports, so requests are the ones the grid sends; each output is then read
back from the S3 stand-in from the host, which proves the containers wrote through the shared store.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import grpc

from bench.deploy.progress import say

# The demo grid's data and split (flows/grids/demo.yaml): tiny, yet enough training melanomas for KID's
# 16-image subsets; and the Prefect run of the demo grid afterwards reuses these jobs (same requests).
PHANTOM = {"count": 160, "width": 96, "height": 72}
FRACTIONS = (0.70, 0.15, 0.15)
SAMPLES = 16


def wiring(host: str, ports: dict[str, int], store_uri: str, token: str):
    from skingenbench.flows.wiring import Wiring

    return Wiring({stage: (f"{host}:{port}",) for stage, port in ports.items()}, store_uri, token)


def _timed(steps: list, name: str, call, *args) -> Any:
    say(f"job: {name}")
    started = time.monotonic()
    out = call(*args)
    seconds = round(time.monotonic() - started, 1)
    job = {"step": name, "seconds": seconds}
    if isinstance(out, dict):
        job["outputs"] = out.get("outputs", {})
        if "manifest" in out:
            job["manifest"] = out["manifest"]
    steps.append(job)
    say(f"job: {name} done in {seconds} s")
    return out


def _check_manifest(store, ref: dict[str, Any], what: str) -> int:
    """The manifest is in the store and lists items whose objects are there too."""
    manifest = json.loads(store.get_bytes(store.key_from_uri(ref["uri"])))
    items = manifest.get("items", [])
    if not items:
        raise RuntimeError(f"{what}: manifest {ref['uri']} has no items")
    first = items[0]["key"]
    if not store.exists(first):
        raise RuntimeError(f"{what}: the manifest's first object {first} is not in the store")
    return len(items)


def _without_prefect_api():
    """The flow's tasks, called outside a flow run: there is no Prefect API for their progress artifacts,
    and Prefect would start a temporary server for each call (~50 s here). A failing artifact call is the
    case ``tasks._run`` already handles (no artifact), so that is what it gets."""
    from skingenbench.flows import tasks

    def no_api(**_: Any) -> None:
        raise RuntimeError("no Prefect API in the deploy check")

    tasks.create_progress_artifact = no_api
    return tasks


def run_sequence(wire, store) -> dict[str, Any]:
    tasks = _without_prefect_api()
    steps: list[dict[str, Any]] = []
    imported = _timed(steps, "import phantom", tasks.import_data.fn, wire, "phantom", "", PHANTOM, 0)
    split = _timed(steps, "split by lesion", tasks.split.fn, wire, [imported["manifest"]], FRACTIONS, 0)
    prep = _timed(
        steps, "preprocess basic", tasks.preprocess.fn, wire, split["manifest"], "basic", "tiny", {}, 0
    )
    train = _timed(
        steps,
        "preprocess basic (train split)",
        tasks.preprocess.fn,
        wire,
        split["manifest"],
        "basic",
        "tiny",
        {},
        0,
        0,
        ["train"],
    )
    model = _timed(
        steps,
        "train ddpm (tiny)",
        tasks.train_generator.fn,
        wire,
        train["manifest"],
        "ddpm",
        "tiny",
        {"train_steps": 4},
        "MEL",
        0,
        "deploy-check-ddpm",
    )
    synthetic = _timed(
        steps,
        "sample ddpm",
        tasks.sample.fn,
        wire,
        model["outputs"]["model"],
        SAMPLES,
        0,
        "deploy-check-ddpm",
    )
    classifier = _timed(
        steps,
        "train resnet18 (tiny)",
        tasks.train_classifier.fn,
        wire,
        prep["manifest"],
        "resnet18",
        "tiny",
        {"epochs": 1},
        "real",
        [],
        None,
        0,
        "MEL",
        0,
        "deploy-check/resnet18",
    )
    _timed(
        steps,
        "evaluate ddpm samples",
        tasks.evaluate.fn,
        wire,
        train["manifest"],
        {"ddpm": synthetic["manifest"]},
        "MEL",
        {"profile": "tiny"},
        classifier["checkpoint"],
        0,
        "deploy-check",
    )
    tested = _timed(
        steps,
        "test resnet18",
        tasks.test_classifier.fn,
        wire,
        classifier["checkpoint"],
        prep["manifest"],
        50,
        0,
        "deploy-check/resnet18",
    )
    checked = {
        "import": _check_manifest(store, imported["manifest"], "import"),
        "split": _check_manifest(store, split["manifest"], "split"),
        "preprocess": _check_manifest(store, prep["manifest"], "preprocess"),
        "sample": _check_manifest(store, synthetic["manifest"], "sample"),
    }
    result_uri = tested["outputs"].get("result_json", "")
    if not result_uri or not store.exists(store.key_from_uri(result_uri)):
        raise RuntimeError(f"the test result {result_uri!r} is not in the store")
    say(f"outputs read back from the store: {checked}")
    return {
        "steps": steps,
        "items_in_store": checked,
        "test_result": result_uri,
        "refs": {"split": split["manifest"], "prep": prep["manifest"], "train": train["manifest"]},
    }


class BusyJobs:
    """One long job per service, each followed by a watcher thread, for the stop check: what each job's
    state was before the stop, and the last state a watching client saw when its server went away."""

    def __init__(self, wire, refs: dict[str, Any]) -> None:
        self.wire = wire
        self.refs = refs
        self.jobs: dict[str, dict[str, Any]] = {}
        self._threads: list[threading.Thread] = []

    def start(self) -> dict[str, Any]:
        from skingenbench.api.v1 import (
            classification_pb2,
            classification_pb2_grpc,
            common_pb2,
            generation_pb2,
            generation_pb2_grpc,
            preprocessing_pb2,
            preprocessing_pb2_grpc,
        )

        def manifest(ref):
            return common_pb2.ManifestRef(uri=ref["uri"], sha256=ref.get("sha256", ""))

        # Different seeds and sizes than the sequence, so these are new jobs, not finished ones reused.
        requests = {
            "preprocessing": (
                preprocessing_pb2_grpc.PreprocessingStub,
                "StartImport",
                preprocessing_pb2.ImportRequest(
                    source="phantom",
                    options_json=json.dumps({"count": 4000, "width": 600, "height": 450}),
                    seed=7,
                ),
            ),
            "generation": (
                generation_pb2_grpc.GenerationStub,
                "StartTraining",
                generation_pb2.TrainGeneratorRequest(
                    generator="ddpm",
                    profile="tiny",
                    config_json=json.dumps({"train_steps": 100000}),
                    train=manifest(self.refs["train"]),
                    classes=["MEL"],
                    seed=7,
                    name="deploy-check-stop",
                ),
            ),
            "classification": (
                classification_pb2_grpc.ClassificationStub,
                "StartTraining",
                classification_pb2.TrainClassifierRequest(
                    classifier="resnet18",
                    profile="tiny",
                    config_json=json.dumps({"epochs": 500}),
                    data=manifest(self.refs["prep"]),
                    regime="real",
                    seed=7,
                    run_name="deploy-check/stop",
                ),
            ),
        }
        for stage, (stub, method, request) in requests.items():
            job = self._start(stage, stub, method, request)
            self.jobs[stage] = {"job_id": job.job_id, "state_at_start": common_pb2.JobState.Name(job.state)}
        return self.jobs

    def _start(self, stage, stub, method, request):
        from skingenbench.services.platform.client import open_channel

        target = self.wire.endpoints[stage][0]
        channel = open_channel(target, token=self.wire.auth_token.get_secret_value(), tls=self.wire.tls)
        job = getattr(stub(channel), method)(request, timeout=60)
        thread = threading.Thread(target=self._watch, args=(stage, channel, job.job_id), daemon=True)
        thread.start()
        self._threads.append(thread)
        return job

    def _watch(self, stage: str, channel, job_id: str) -> None:
        from skingenbench.services.platform.client import iter_events

        from skingenbench.api.v1 import common_pb2, common_pb2_grpc

        seen: dict[str, Any] = {"events": 0}
        try:
            for event in iter_events(channel, job_id):
                seen["events"] += 1
                seen["last_message"] = event.message[:200]
                if event.state:
                    seen["last_event_state"] = common_pb2.JobState.Name(event.state)
            seen["stream_end"] = "closed by the server"
            job = common_pb2_grpc.JobsStub(channel).GetJob(common_pb2.GetJobRequest(job_id=job_id), timeout=5)
            seen["final_state"] = common_pb2.JobState.Name(job.state)
        except Exception as exc:  # the server went away mid-stream: what the watcher was told
            seen["stream_end"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        self.jobs[stage].update(seen)

    def states_now(self) -> dict[str, str]:
        from skingenbench.services.platform.client import open_channel

        from skingenbench.api.v1 import common_pb2, common_pb2_grpc

        states = {}
        for stage, job in self.jobs.items():
            channel = open_channel(
                self.wire.endpoints[stage][0], token=self.wire.auth_token.get_secret_value()
            )
            reply = common_pb2_grpc.JobsStub(channel).GetJob(
                common_pb2.GetJobRequest(job_id=job["job_id"]), timeout=10
            )
            states[stage] = common_pb2.JobState.Name(reply.state)
            job["state_before_stop"] = states[stage]
            job["progress_before_stop"] = f"{reply.last_progress.step}/{reply.last_progress.total}"
            channel.close()
        return states

    def resume_and_cancel(self) -> dict[str, str]:
        """After the stack started again: each interrupted job as its restarted server reports it (the
        platform resumes queued and running jobs on start), then cancelled, so it leaves the CPUs free."""
        from skingenbench.services.platform.client import open_channel

        from skingenbench.api.v1 import common_pb2, common_pb2_grpc

        resumed = {}
        for stage, job in self.jobs.items():
            channel = open_channel(
                self.wire.endpoints[stage][0], token=self.wire.auth_token.get_secret_value()
            )
            jobs = common_pb2_grpc.JobsStub(channel)
            try:
                reply = jobs.GetJob(common_pb2.GetJobRequest(job_id=job["job_id"]), timeout=10)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    raise
                # The S3 stand-in (moto's server) keeps its objects in memory, so `compose stop` empties
                # the store with it and no job record survives the restart; real MinIO keeps its volume.
                resumed[stage] = "NOT_FOUND: the store did not survive the restart (an in-memory S3 stand-in)"
                job["state_after_restart"] = resumed[stage]
                channel.close()
                continue
            resumed[stage] = common_pb2.JobState.Name(reply.state)
            job["state_after_restart"] = resumed[stage]
            jobs.CancelJob(common_pb2.CancelJobRequest(job_id=job["job_id"]), timeout=30)
            channel.close()
        return resumed

    def join(self, timeout_s: float = 30.0) -> dict[str, Any]:
        for thread in self._threads:
            thread.join(timeout_s)
        return self.jobs
