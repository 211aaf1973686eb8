"""Shutdown keeps one budget (services/platform/server.py, docs/shutdown.md): jobs and calls share
``SKINGENBENCH_SHUTDOWN_GRACE_S``, every watcher gets a final INTERRUPTED event before the server closes,
a job that does not stop in time is abandoned without holding the process, and the next start resumes
every interrupted job from what it stored.

The process test runs a real ``serve`` in a child process and sends it SIGTERM, as Kubernetes and
``docker compose stop`` do; the others stop an in-process server over real channels.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from google.protobuf.struct_pb2 import Struct
from skingenbench.services.core.errors import FailedPrecondition
from skingenbench.services.platform.client import describe_end, is_interrupted, open_channel, watch_job
from skingenbench.services.platform.job_kind import JobKind, JobOutputs, JobPlan
from skingenbench.services.platform.server import ServiceContext
from skingenbench.services.platform.store import LocalFolderStore

from skingenbench.api.v1 import common_pb2
from tests.common.service_helpers import add_test_jobs, request, running
from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
SERVICE = "skingenbench.v1.Preprocessing"


@dataclass(frozen=True)
class StubbornPlan(JobPlan):
    total: int
    sleep_s: float


class StubbornKind(JobKind[Struct, StubbornPlan]):
    """A job that checkpoints each step but never looks at ``should_stop``: the kind of job that held
    the process past its grace (issue 15). It resumes from its checkpoint like the training jobs."""

    name = "stubborn"
    stage = "test-stubborn"
    request_type = Struct
    plan_type = StubbornPlan

    def plan(self, request: Struct, store) -> StubbornPlan:
        total, sleep_s = int(request["total"]), float(request["sleep_s"])
        return StubbornPlan(self.address([], {"total": total, "sleep_s": sleep_s}), total, sleep_s)

    def run(self, plan: StubbornPlan, ctx) -> JobOutputs:
        key = f"{plan.output_prefix}/checkpoint.json"
        step = json.loads(ctx.store.get_bytes(key))["step"] if ctx.store.exists(key) else 0
        resumed_from = step
        while step < plan.total:  # no check_cancelled(): shutdown cannot stop it
            time.sleep(plan.sleep_s)
            step += 1
            ctx.store.put_bytes(key, json.dumps({"step": step}).encode())
            ctx.progress(step, plan.total, "working")
        info = ctx.store.put_bytes(f"{plan.output_prefix}/done.txt", str(step).encode())
        outputs = JobOutputs(summary={"count": step, "resumed_from": resumed_from})
        outputs.add("done", ctx.store.uri(info.key), info.sha256)
        return outputs


def add_shutdown_jobs(ctx: ServiceContext) -> None:
    add_test_jobs(ctx)
    ctx.runner.register(StubbornKind())


# What the child process runs: the real serve() (signal handlers, one budget, exit) of the preprocessing
# stage, with the test job kinds added to its setup.
_CHILD = """
import logging, sys, types

logging.basicConfig(level=logging.INFO)  # as ``skingenbench serve`` does

# This repository's tests/ (a folder without __init__.py, as pytest imports it); an installed
# distribution's top-level "tests" package must not shadow it.
tests = types.ModuleType("tests")
tests.__path__ = [sys.argv[1]]
sys.modules["tests"] = tests

from skingenbench.services.platform.server import serve
from skingenbench.services.stages import stage_setup
from tests.reliability.test_shutdown_grace import add_shutdown_jobs

def setup(ctx):
    stage_setup("preprocessing")(ctx)
    add_shutdown_jobs(ctx)

serve("preprocessing", setup)
"""


def _wait_serving(target: str, child: subprocess.Popen, timeout_s: float = 60.0) -> None:
    from skingenbench.services.platform.client import health_status

    deadline = time.monotonic() + timeout_s
    while health_status(target, timeout_s=1.0) != "SERVING":
        assert child.poll() is None, f"the server exited at start-up: {child.stdout.read()}"
        assert time.monotonic() < deadline, "the server did not become SERVING"
        time.sleep(0.2)


def _start_child(
    folder: Path, store_dir: Path, grace_s: float, calls_s: float
) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {
        **os.environ,
        "SKINGENBENCH_STORE": store_dir.as_uri(),
        "SKINGENBENCH_HOST": "127.0.0.1",
        "SKINGENBENCH_PREPROCESSING_PORT": str(port),
        "SKINGENBENCH_SHUTDOWN_GRACE_S": str(grace_s),
        "SKINGENBENCH_SHUTDOWN_CALLS_S": str(calls_s),
    }
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(REPO / "tests")],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    target = f"127.0.0.1:{port}"
    try:
        _wait_serving(target, child)
    except BaseException:
        child.kill()
        child.wait()
        raise
    return child, target


def test_sigterm_with_a_job_that_ignores_it_exits_0_inside_the_grace_and_the_job_resumes(tmp_path):
    grace_s = 2.0
    store_dir = tmp_path / "store"
    # Test kinds have no Start* RPC: the job is queued in the store before the start, as a job left by an
    # earlier process is, and the child's start resumes it (JobRunner.resume_interrupted).
    job_request = request(total=100, sleep_s=0.05)  # 5 s of work, far past the grace
    job_id = _queue_in_store(LocalFolderStore(store_dir), job_request)
    child, target = _start_child(tmp_path, store_dir, grace_s, calls_s=0.5)
    try:
        channel = open_channel(target, token="")
        watched: dict[str, common_pb2.Job] = {}
        events: list[common_pb2.ProgressEvent] = []
        watcher = threading.Thread(
            target=lambda: watched.update(
                job=watch_job(channel, job_id, on_event=events.append, timeout_s=60)
            )
        )
        watcher.start()
        while not any(e.step >= 5 for e in events):
            assert watcher.is_alive() and child.poll() is None
            time.sleep(0.02)

        signalled = time.monotonic()
        child.send_signal(signal.SIGTERM)
        returncode = child.wait(timeout=30)
        exit_s = time.monotonic() - signalled
        log = child.stdout.read()
        watcher.join(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()

    assert returncode == 0, log
    # One budget: the whole process is gone inside the grace (plus the interpreter's own exit), though
    # the job would have run for seconds more; before, it waited the grace for jobs, then again for calls.
    assert exit_s < grace_s + 1.0, f"exited {exit_s:.2f} s after SIGTERM with a {grace_s} s grace\n{log}"
    assert "did not stop within the shutdown grace" in log and "1 job(s) abandoned" in log, log
    # The watcher saw an end: INTERRUPTED, with what happens next.
    assert not watcher.is_alive(), "the watch stream never ended"
    job = watched["job"]
    assert is_interrupted(job) and events[-1].state == common_pb2.JOB_STATE_INTERRUPTED
    assert "resumes" in describe_end(job)
    store = LocalFolderStore(store_dir)
    stored = json.loads(store.get_bytes(f"jobs/{SERVICE}/{job_id}.json"))
    assert stored["state"] == "INTERRUPTED"
    checkpoint = json.loads(store.get_bytes(f"{stored['plan']['output_prefix']}/checkpoint.json"))["step"]
    assert 5 <= checkpoint < 100

    # The next start resumes it from its checkpoint; an identical request finds the same job.
    with (
        running("preprocessing", store, extra_setup=add_shutdown_jobs) as service,
        open_channel(service.target) as channel2,
    ):
        again = service.runner.submit("stubborn", job_request)
        assert again.job_id == job_id and again.reused
        done = watch_job(channel2, job_id, timeout_s=60)
    assert done.state == common_pb2.JOB_STATE_SUCCEEDED, describe_end(done)
    result = json.loads(done.result_json)
    assert result["count"] == 100 and result["resumed_from"] >= checkpoint


def _queue_in_store(store: LocalFolderStore, job_request: Struct) -> str:
    from google.protobuf import json_format
    from skingenbench.services.platform.jobs import JobRecord, JobRunner

    request_dict = json_format.MessageToDict(job_request, preserving_proto_field_name=True)
    job_id = JobRunner.job_id_for(SERVICE, StubbornKind.name, request_dict)
    plan = StubbornKind().plan(job_request, store).to_json()
    record = JobRecord(job_id, StubbornKind.name, SERVICE, request_dict, plan=plan)
    store.put_bytes(f"jobs/{SERVICE}/{job_id}.json", record.to_json(), "application/json")
    return job_id


def test_watchers_of_running_and_queued_jobs_get_interrupted_and_both_resume(folder_store):
    # One job slot: the second job waits in the queue when the server stops.
    with (
        running("preprocessing", folder_store, extra_setup=add_shutdown_jobs, job_slots=1) as service,
        open_channel(service.target) as channel,
    ):
        first = service.runner.submit("count", request(total=100, sleep_s=0.02))
        second = service.runner.submit("count", request(total=3, sleep_s=0.0))
        cancelled = service.runner.submit("count", request(total=4, sleep_s=0.0))
        service.runner.cancel(cancelled.job_id)  # asked to stop while it waits for the slot
        ended: dict[str, common_pb2.Job] = {}
        watchers = [
            threading.Thread(target=lambda j=job_id: ended.update({j: watch_job(channel, j, timeout_s=30)}))
            for job_id in (first.job_id, second.job_id)
        ]
        for watcher in watchers:
            watcher.start()
        for event in service.runner.watch(first.job_id):
            if event["step"] >= 3:
                break
        assert service.runner.get(second.job_id).state == "QUEUED"
        abandoned = service.stop(grace_s=10.0)  # the `running` context's stop after it does nothing
        for watcher in watchers:
            watcher.join(timeout=10)
            assert not watcher.is_alive(), "a watch stream did not end with the shutdown"
    assert abandoned == []  # the counting job checks for the stop between steps
    assert {job_id: job.state for job_id, job in ended.items()} == {
        first.job_id: common_pb2.JOB_STATE_INTERRUPTED,
        second.job_id: common_pb2.JOB_STATE_INTERRUPTED,
    }
    assert "queued when the service stopped" in ended[second.job_id].last_progress.message
    assert "interrupted by shutdown" in ended[first.job_id].last_progress.message
    for job_id in (first.job_id, second.job_id):
        assert json.loads(folder_store.get_bytes(f"jobs/{SERVICE}/{job_id}.json"))["state"] == "INTERRUPTED"
    cancelled_key = f"jobs/{SERVICE}/{cancelled.job_id}.json"
    assert json.loads(folder_store.get_bytes(cancelled_key))["state"] == "CANCELLED"  # never resumed

    with (
        running("preprocessing", folder_store, extra_setup=add_shutdown_jobs, job_slots=1) as service,
        open_channel(service.target) as channel,
    ):
        results = {
            job_id: watch_job(channel, job_id, timeout_s=60) for job_id in (first.job_id, second.job_id)
        }
    assert all(job.state == common_pb2.JOB_STATE_SUCCEEDED for job in results.values())
    resumed = json.loads(results[first.job_id].result_json)
    assert resumed["count"] == 100 and resumed["resumed_from"] >= 3
    assert json.loads(results[second.job_id].result_json)["count"] == 3
    assert json.loads(folder_store.get_bytes(cancelled_key))["state"] == "CANCELLED"


def test_a_stopping_server_refuses_new_jobs_and_its_stop_is_bounded_by_the_budget(folder_store):
    release = threading.Event()

    class Blocking(StubbornKind):
        """Ignores shutdown until the test releases it (so no thread outlives the test)."""

        name = "blocking"

        def run(self, plan, ctx):
            release.wait(30)
            return JobOutputs(summary={"released": True})

    with running(
        "preprocessing", folder_store, extra_setup=lambda ctx: ctx.runner.register(Blocking())
    ) as service:
        job = service.runner.submit("blocking", request(total=1, sleep_s=0.0))
        while service.runner.get(job.job_id).state != "RUNNING":
            time.sleep(0.02)
        began = time.monotonic()
        abandoned = service.stop(grace_s=1.0)
        stop_s = time.monotonic() - began
        try:
            assert abandoned == [job.job_id] and service.runner.busy == 1
            assert stop_s < 2.0, f"stop took {stop_s:.2f} s with a 1 s budget"
            assert service.runner.get(job.job_id).state == "INTERRUPTED"
            with pytest.raises(FailedPrecondition, match="shutting down"):
                service.runner.submit("blocking", request(total=2, sleep_s=0.0))
        finally:
            release.set()
        # Released, the abandoned job finishes after all: what it leaves is its true end, SUCCEEDED.
        deadline = time.monotonic() + 10
        while service.runner.busy:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert service.runner.get(job.job_id).state == "SUCCEEDED"


def test_a_second_ctrl_c_exits_at_once_and_leaves_the_job_to_resume(tmp_path):
    store_dir = tmp_path / "store"
    job_id = _queue_in_store(LocalFolderStore(store_dir), request(total=1000, sleep_s=0.05))
    child, _ = _start_child(tmp_path, store_dir, grace_s=60.0, calls_s=5.0)
    try:
        key = f"jobs/{SERVICE}/{job_id}.json"
        store = LocalFolderStore(store_dir)
        while json.loads(store.get_bytes(key))["state"] != "RUNNING":
            time.sleep(0.05)
        child.send_signal(signal.SIGINT)  # the drain begins: this job would hold it for 53 s
        time.sleep(0.5)
        signalled = time.monotonic()
        child.send_signal(signal.SIGINT)
        returncode = child.wait(timeout=30)
        exit_s = time.monotonic() - signalled
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    log = child.stdout.read()
    assert returncode == 128 + signal.SIGINT and "exiting without the drain" in log, log
    assert exit_s < 5.0, f"a second Ctrl-C took {exit_s:.2f} s"
    # Nothing is recorded as finished: the next start resumes the job.
    assert json.loads(store.get_bytes(key))["state"] in ("RUNNING", "INTERRUPTED")


def test_a_flow_task_watching_a_job_through_a_restart_gets_its_result(folder_store):
    """The flow's side (flows/jobs.py run_job over an EndpointPool): the watch ends with INTERRUPTED when
    the service stops, the pool waits for the endpoint to serve again and submits the same request,
    which finds the job the restarted service resumed; the task gets the job's real result."""
    from skingenbench.flows.endpoints import EndpointPool, parse_endpoints
    from skingenbench.flows.jobs import run_job
    from skingenbench.services.platform.settings import ServiceSettings
    from skingenbench.services.stages import start_service

    from skingenbench.api.v1 import preprocessing_pb2, preprocessing_pb2_grpc

    port = free_port()
    settings = ServiceSettings(stage="preprocessing", port=port, shutdown_grace_s=5.0)
    first = start_service("preprocessing", settings, folder_store)
    pool = EndpointPool("preprocessing", parse_endpoints(f"127.0.0.1:{port}"), backoff_s=0.2, token="")
    import_request = preprocessing_pb2.ImportRequest(
        source="phantom", options_json='{"count": 40, "width": 48, "height": 32}', seed=3
    )
    events: list[common_pb2.ProgressEvent] = []
    outcome: dict = {}

    def task() -> None:
        try:
            outcome["job"] = run_job(
                pool, preprocessing_pb2_grpc.PreprocessingStub, "StartImport", import_request, events.append
            )
        except BaseException as exc:  # reported by the assertions below
            outcome["error"] = exc

    thread = threading.Thread(target=task)
    thread.start()
    second = None
    try:
        deadline = time.monotonic() + 60
        while not any(e.state == common_pb2.JOB_STATE_RUNNING and e.step >= 1 for e in events):
            assert time.monotonic() < deadline and thread.is_alive(), outcome
            time.sleep(0.02)
        first.stop()
        deadline = time.monotonic() + 10  # the last event is on its way to the client
        while not any(e.state == common_pb2.JOB_STATE_INTERRUPTED for e in events):
            assert time.monotonic() < deadline, "the watcher never saw INTERRUPTED"
            time.sleep(0.02)
        second = start_service("preprocessing", settings, folder_store)  # the same port: the pod came back
        thread.join(timeout=120)
        assert not thread.is_alive(), "the task did not finish after the restart"
    finally:
        if second is not None:
            second.stop()
        pool.close()
    assert "error" not in outcome, outcome.get("error")
    job = outcome["job"]
    assert job.result["item_count"] == 40 and "manifest" in job.outputs
    assert {e.job_id for e in events} == {job.job_id}  # one job, followed across the restart
