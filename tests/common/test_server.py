"""The service runtime over real channels: health, reflection, auth, error mapping, jobs, restarts."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass

import grpc
import pytest
from google.protobuf.struct_pb2 import Struct
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from skingenbench.services.core.errors import Unavailable
from skingenbench.services.platform.client import error_detail, open_channel, watch_job
from skingenbench.services.platform.job_kind import JobKind, JobOutputs, JobPlan
from skingenbench.services.platform.settings import SERVICES
from skingenbench.services.platform.store import LocalFolderStore

from skingenbench.api.v1 import common_pb2, common_pb2_grpc, generation_pb2_grpc
from tests.common.service_helpers import add_test_jobs, request, running


@pytest.mark.parametrize("stage", list(SERVICES))
def test_every_service_is_healthy_and_reflects_its_contract(stage, folder_store):
    with running(stage, folder_store) as service, open_channel(service.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", SERVICES[stage][0], "skingenbench.v1.Jobs"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
        assert {SERVICES[stage][0], "skingenbench.v1.Jobs"} <= services


def test_auth_token_is_enforced_but_health_stays_open(folder_store):
    with running("generation", folder_store, auth_token="s3cret") as service:
        request = common_pb2.ListRegistryRequest()
        with open_channel(service.target, token="") as anonymous:
            with pytest.raises(grpc.RpcError) as missing:
                generation_pb2_grpc.GenerationStub(anonymous).ListModels(request, timeout=5)
            assert missing.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "missing" in missing.value.details()
            with pytest.raises(grpc.RpcError) as stream_denied:
                list(
                    common_pb2_grpc.JobsStub(anonymous).WatchJob(
                        common_pb2.WatchJobRequest(job_id="x"), timeout=5
                    )
                )
            assert stream_denied.value.code() == grpc.StatusCode.UNAUTHENTICATED
            health = health_pb2_grpc.HealthStub(anonymous).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
        with open_channel(service.target, token="wrong") as wrong:
            with pytest.raises(grpc.RpcError) as bad:
                generation_pb2_grpc.GenerationStub(wrong).ListModels(request, timeout=5)
            assert bad.value.code() == grpc.StatusCode.UNAUTHENTICATED and "wrong" in bad.value.details()
        with open_channel(service.target, token="s3cret") as good:
            generation_pb2_grpc.GenerationStub(good).ListModels(request, timeout=5)


def test_errors_map_to_statuses_with_details_and_the_server_keeps_serving(folder_store):
    with running("generation", folder_store) as service, open_channel(service.target) as channel:
        stub = generation_pb2_grpc.GenerationStub(channel)
        with pytest.raises(grpc.RpcError) as unknown:
            stub.DescribeModel(common_pb2.DescribeRequest(name="no-such-model"), timeout=5)
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        detail = error_detail(unknown.value)
        assert detail is not None and detail.code == "NOT_FOUND" and "no-such-model" in detail.message
        jobs = common_pb2_grpc.JobsStub(channel)
        with pytest.raises(grpc.RpcError) as missing_job:
            jobs.GetJob(common_pb2.GetJobRequest(job_id="deadbeef"), timeout=5)
        assert missing_job.value.code() == grpc.StatusCode.NOT_FOUND
        info = stub.GetServiceInfo(common_pb2.GetServiceInfoRequest(), timeout=5)
        assert info.service == "skingenbench.v1.Generation" and info.store_uri == folder_store.root_uri


def test_store_down_is_unavailable(moto_endpoint):
    from tests.conftest import make_s3_store

    store = make_s3_store(moto_endpoint)
    with running("classification", store) as service, open_channel(service.target) as channel:
        store.client._base_url._url = store.client._base_url._url._replace(
            netloc="127.0.0.1:9"
        )  # nothing listens
        with pytest.raises(grpc.RpcError) as down:
            common_pb2_grpc.JobsStub(channel).GetJob(common_pb2.GetJobRequest(job_id="abc"), timeout=30)
        assert down.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "unreachable" in down.value.details()


def test_job_progress_stream_result_and_idempotent_resubmission(folder_store):
    with (
        running("preprocessing", folder_store, extra_setup=add_test_jobs) as service,
        open_channel(service.target) as channel,
    ):
        record = service.runner.submit("count", request(total=5))
        events = []
        job = watch_job(channel, record.job_id, on_event=events.append, timeout_s=30)
        assert job.state == common_pb2.JOB_STATE_SUCCEEDED
        sequences = [e.sequence for e in events]
        assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)
        assert events[-1].state == common_pb2.JOB_STATE_SUCCEEDED
        assert max(e.step for e in events) == 5 and any(e.metrics.get("value") == 5.0 for e in events)
        assert json.loads(job.result_json)["count"] == 5
        assert [o.name for o in job.outputs] == ["count"]
        again = service.runner.submit("count", request(total=5))
        assert again.job_id == record.job_id and again.reused
        assert service.runner.submit("count", request(total=6)).job_id != record.job_id


def test_failed_job_is_an_answer_not_a_crash(folder_store):
    with (
        running("preprocessing", folder_store, extra_setup=add_test_jobs) as service,
        open_channel(service.target) as channel,
    ):
        record = service.runner.submit("fail", request())
        job = watch_job(channel, record.job_id, timeout_s=30)
        assert job.state == common_pb2.JOB_STATE_FAILED
        assert job.error.code == "INTERNAL" and "boom" in job.error.message
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_cancel_stops_a_running_job(folder_store):
    with (
        running("preprocessing", folder_store, extra_setup=add_test_jobs) as service,
        open_channel(service.target) as channel,
    ):
        record = service.runner.submit("count", request(total=10_000, sleep_s=0.01))
        jobs = common_pb2_grpc.JobsStub(channel)
        stream = jobs.WatchJob(common_pb2.WatchJobRequest(job_id=record.job_id), timeout=30)
        for event in stream:
            if event.step >= 3:
                break
        jobs.CancelJob(common_pb2.CancelJobRequest(job_id=record.job_id), timeout=5)
        final = watch_job(channel, record.job_id, timeout_s=30)
        assert final.state == common_pb2.JOB_STATE_CANCELLED
        listed = jobs.ListJobs(common_pb2.ListJobsRequest(state=common_pb2.JOB_STATE_CANCELLED), timeout=5)
        assert [j.job_id for j in listed.jobs] == [record.job_id]


def test_job_state_survives_a_restart_and_interrupted_jobs_resume(folder_store):
    with running("preprocessing", folder_store, extra_setup=add_test_jobs) as service:
        done = service.runner.submit("count", request(total=3))
        service.runner.wait(done.job_id, timeout_s=30)
        long = service.runner.submit("count", request(total=60, sleep_s=0.05))
        for event in service.runner.watch(long.job_id):
            if event["step"] >= 5:
                break
    # The server stopped gracefully mid-job: the job is recorded INTERRUPTED, its checkpoint is in the store.
    interrupted = json.loads(folder_store.get_bytes(f"jobs/skingenbench.v1.Preprocessing/{long.job_id}.json"))
    assert interrupted["state"] == "INTERRUPTED"
    # The record holds the plan the job runs from after the restart (never re-planned).
    assert interrupted["plan"] == {
        "output_prefix": interrupted["plan"]["output_prefix"],
        "total": 60,
        "sleep_s": 0.05,
    }
    checkpointed = json.loads(
        folder_store.get_bytes(f"{interrupted['plan']['output_prefix']}/checkpoint.json")
    )["step"]
    assert 5 <= checkpointed < 60

    with (
        running("preprocessing", folder_store, extra_setup=add_test_jobs) as service,
        open_channel(service.target) as channel,
    ):
        jobs = common_pb2_grpc.JobsStub(channel)
        finished = jobs.GetJob(common_pb2.GetJobRequest(job_id=done.job_id), timeout=5)
        assert (
            finished.state == common_pb2.JOB_STATE_SUCCEEDED
            and json.loads(finished.result_json)["count"] == 3
        )
        replay = list(jobs.WatchJob(common_pb2.WatchJobRequest(job_id=done.job_id), timeout=5))
        assert replay and replay[-1].state == common_pb2.JOB_STATE_SUCCEEDED
        resumed = watch_job(channel, long.job_id, timeout_s=60)
        assert resumed.state == common_pb2.JOB_STATE_SUCCEEDED
        result = json.loads(resumed.result_json)
        assert result["count"] == 60 and result["resumed_from"] >= checkpointed


class _RecordRefusingStore(LocalFolderStore):
    """A folder store that refuses job-record writes while ``refuse`` is set, as a store that is down
    refuses them; every other object is written as usual (so a job's outputs and marker are complete)."""

    def __init__(self, root) -> None:
        super().__init__(root)
        self.refuse = threading.Event()
        self.refused = 0

    def put_stream(self, key, stream, content_type="application/octet-stream"):
        if self.refuse.is_set() and key.startswith("jobs/"):
            self.refused += 1
            raise Unavailable("object store at test is unreachable: ConnectionRefusedError")
        return super().put_stream(key, stream, content_type)


def test_a_final_state_the_store_refuses_ends_the_job_and_is_recorded_once_the_store_answers(
    tmp_path, caplog
):
    store = _RecordRefusingStore(tmp_path / "store")
    with (
        running("preprocessing", store, extra_setup=add_test_jobs) as service,
        open_channel(service.target) as channel,
    ):
        jobs = common_pb2_grpc.JobsStub(channel)
        record = service.runner.submit("count", request(total=30, sleep_s=0.02))
        key = f"jobs/{service.settings.service_name}/{record.job_id}.json"
        events = []
        for event in jobs.WatchJob(common_pb2.WatchJobRequest(job_id=record.job_id), timeout=30):
            events.append(event)
            if event.step == 3:
                store.refuse.set()  # from here on, no state of this job reaches the store
        # The job did its work (outputs and marker are stored) but could not record SUCCEEDED: it ends,
        # as FAILED/UNAVAILABLE, and says so; the stream ended with that final event.
        assert events[-1].state == common_pb2.JOB_STATE_FAILED and events[-1].message.startswith(
            "UNAVAILABLE"
        )
        job = jobs.GetJob(common_pb2.GetJobRequest(job_id=record.job_id), timeout=5)  # from memory
        assert job.state == common_pb2.JOB_STATE_FAILED and job.error.code == "UNAVAILABLE"
        assert "could not be written" in job.error.message and job.error.context["ended_as"] == "SUCCEEDED"
        assert [o.name for o in job.outputs] == ["count"]
        assert json.loads(store.get_bytes(key))["state"] == "RUNNING"  # the store has not heard yet
        # While the store refuses, an identical request is refused too (its new attempt cannot be recorded).
        with pytest.raises(Unavailable):
            service.runner.submit("count", request(total=30, sleep_s=0.02))
        warnings = [r for r in caplog.records if "could not record" in r.getMessage()]
        assert len(warnings) == 1, "one warning per streak of refused writes"
        refused_before = store.refused
        time.sleep(1.5)
        assert store.refused > refused_before, "the refused record is retried"

        store.refuse.clear()
        deadline = time.monotonic() + 10
        while json.loads(store.get_bytes(key))["state"] != "FAILED":
            assert time.monotonic() < deadline, "the final state was not recorded after the store came back"
            time.sleep(0.1)
        stored = json.loads(store.get_bytes(key))
        assert (
            stored["error"]["code"] == "UNAVAILABLE" and stored["error"]["context"]["ended_as"] == "SUCCEEDED"
        )
        # The same request is now a new attempt, which finds the finished outputs and reattaches them.
        again = service.runner.submit("count", request(total=30, sleep_s=0.02))
        assert again.job_id == record.job_id and not again.reused
        done = service.runner.wait(record.job_id, timeout_s=30)
        assert done.state == "SUCCEEDED" and done.attempts == 2 and done.result["reused_output"] is True


@dataclass(frozen=True)
class _NumpyPlan(JobPlan):
    pass


class _NumpySummaryKind(JobKind[Struct, _NumpyPlan]):
    """A kind with a subtle bug: a numpy integer in its summary (the marker takes it, the record does not)."""

    name = "numpy-summary"
    stage = "test-numpy-summary"
    request_type = Struct
    plan_type = _NumpyPlan

    def plan(self, request, store):
        return _NumpyPlan(self.address([], {}))

    def run(self, plan, ctx):
        import numpy as np

        return JobOutputs(summary={"count": np.int64(3)})


def test_a_failure_of_the_runner_itself_is_logged_and_ends_the_job(folder_store, caplog):
    with (
        running(
            "preprocessing", folder_store, extra_setup=lambda ctx: ctx.runner.register(_NumpySummaryKind())
        ) as service,
        open_channel(service.target) as channel,
    ):
        record = service.runner.submit("numpy-summary", request())
        job = watch_job(channel, record.job_id, timeout_s=20)
        assert job.state == common_pb2.JOB_STATE_FAILED and job.error.code == "INTERNAL"
        assert "job runner failed" in job.error.message
        logged = [r for r in caplog.records if "job runner itself failed" in r.getMessage()]
        assert logged and logged[0].exc_info is not None  # with its traceback
        again = service.runner.submit("numpy-summary", request())
        assert not again.reused  # a failed job is tried again, not handed out


def test_shutdown_budget_settings_are_numbers_of_seconds():
    from skingenbench.services.platform.settings import ServiceSettings

    defaults = ServiceSettings.from_env("generation", env={})
    assert (defaults.shutdown_grace_s, defaults.shutdown_calls_s) == (30.0, 5.0)
    tuned = ServiceSettings.from_env(
        "generation",
        env={"SKINGENBENCH_GENERATION_SHUTDOWN_GRACE_S": "75", "SKINGENBENCH_SHUTDOWN_CALLS_S": "8"},
    )
    assert (tuned.shutdown_grace_s, tuned.shutdown_calls_s) == (75.0, 8.0)
    for bad in ("soon", "-1", "nan"):
        with pytest.raises(ValueError, match="SKINGENBENCH_SHUTDOWN_GRACE_S must be"):
            ServiceSettings.from_env("generation", env={"SKINGENBENCH_SHUTDOWN_GRACE_S": bad})


def test_a_bare_ipv6_host_binds_and_is_bracketed_in_targets(folder_store):
    """``SKINGENBENCH_HOST=::1`` (or ``::``) is a valid bind host: addresses and targets bracket it."""
    from skingenbench.services.platform.settings import ServiceSettings, host_port
    from skingenbench.services.stages import start_service

    assert host_port("::1", 50051) == "[::1]:50051" and host_port("[::1]", 7) == "[::1]:7"
    assert host_port("10.0.0.7", 1) == "10.0.0.7:1"
    service = start_service(
        "preprocessing", ServiceSettings(stage="preprocessing", host="::1", port=0), folder_store
    )
    try:
        assert service.target.startswith("[::1]:")
        with open_channel(service.target) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        service.stop(grace_s=2.0)
