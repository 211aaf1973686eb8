"""A store outage mid-job, over a real server and moto's S3 server stopped and started on the same port.

The promise (docs/architecture.md, "The life of a job"): a job whose store goes away ends — watchers
get a final event and WatchJob returns instead of hanging — and once the store answers again its final
state is in the store within 30 s, with no restart; the same request then starts a new attempt, which
resumes from the job's last checkpoint.
"""

from __future__ import annotations

import json
import threading
import time
import uuid

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from skingenbench.services.platform.client import open_channel

from skingenbench.api.v1 import common_pb2, common_pb2_grpc, preprocessing_pb2, preprocessing_pb2_grpc
from tests.common.service_helpers import add_test_jobs, request, running
from tests.reliability.stoppable_s3 import StoppableS3

RECOVERY_S = 30.0  # the acceptance bound: final state stored within this long after the store is back
FINAL = {common_pb2.JOB_STATE_SUCCEEDED, common_pb2.JOB_STATE_FAILED, common_pb2.JOB_STATE_CANCELLED}


@pytest.fixture
def stoppable_s3():
    with StoppableS3() as s3:
        yield s3


def _stored_record(s3: StoppableS3, bucket: str, service: str, job_id: str) -> dict:
    """The job record as the store holds it, read by a client of its own (not the server's memory)."""
    return json.loads(s3.store(bucket).get_bytes(f"jobs/{service}/{job_id}.json"))


class _Watcher(threading.Thread):
    """Follows WatchJob over the channel; records every event and how the stream ended."""

    def __init__(self, channel: grpc.Channel, job_id: str) -> None:
        super().__init__(daemon=True)
        self.stub = common_pb2_grpc.JobsStub(channel)
        self.job_id = job_id
        self.events: list[common_pb2.ProgressEvent] = []
        self.error: grpc.RpcError | None = None
        self.ended_at: float | None = None

    def run(self) -> None:
        try:
            for event in self.stub.WatchJob(common_pb2.WatchJobRequest(job_id=self.job_id), timeout=300):
                self.events.append(event)
        except grpc.RpcError as exc:
            self.error = exc
        self.ended_at = time.monotonic()


def _wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.1)


def _outage_mid_job(s3: StoppableS3, service, channel, job_id: str, bucket: str, *, down_s: float):
    """Stop the S3 server once the job has made progress; start it again after ``down_s``; return when."""
    watcher = _Watcher(channel, job_id)
    watcher.start()
    _wait_for(lambda: any(e.step >= 3 for e in watcher.events), 60, "the job to make progress")
    s3.stop()
    time.sleep(down_s)
    s3.start()
    return watcher, time.monotonic()


def test_a_job_whose_store_goes_away_ends_and_its_final_state_is_stored_once_the_store_is_back(stoppable_s3):
    bucket = f"sgb-{uuid.uuid4().hex[:12]}"
    store = stoppable_s3.store(bucket)
    with (
        running("preprocessing", store, extra_setup=add_test_jobs) as service,
        open_channel(service.target) as channel,
    ):
        name = service.settings.service_name
        job = service.runner.submit("count", request(total=100_000, sleep_s=0.01))
        watcher, back_at = _outage_mid_job(stoppable_s3, service, channel, job.job_id, bucket, down_s=3.0)

        # Within 30 s of the store coming back: the stream has ended with a final event, GetJob answers a
        # final state, and that state is in the store itself.
        watcher.join(timeout=max(0.0, back_at + RECOVERY_S - time.monotonic()))
        assert not watcher.is_alive(), "WatchJob still streaming 30 s after the store came back"
        assert watcher.error is None, f"WatchJob ended with {watcher.error}"
        assert watcher.events and watcher.events[-1].state in FINAL
        final = common_pb2_grpc.JobsStub(channel).GetJob(
            common_pb2.GetJobRequest(job_id=job.job_id), timeout=10
        )
        assert final.state in FINAL
        if final.state == common_pb2.JOB_STATE_FAILED:
            assert final.error.code == "UNAVAILABLE" and "store" in final.error.message
        _wait_for(
            lambda: (
                _stored_record(stoppable_s3, bucket, name, job.job_id)["state"] in ("FAILED", "SUCCEEDED")
            ),
            max(0.1, back_at + RECOVERY_S - time.monotonic()),
            "the final state in the store",
        )
        stored = _stored_record(stoppable_s3, bucket, name, job.job_id)
        assert stored["state"] == common_pb2.JobState.Name(final.state).removeprefix("JOB_STATE_")

        # The same request again is a new attempt (not the dead one, "reused"), and it resumes from the
        # checkpoint the first attempt left.
        again = service.runner.submit("count", request(total=100_000, sleep_s=0.01))
        assert again.job_id == job.job_id
        if stored["state"] == "FAILED":
            assert not again.reused and again.attempts == stored["attempts"]
            service.runner.cancel(job.job_id)  # no need to count to the end
            cancelled = service.runner.wait(job.job_id, timeout_s=30)
            assert cancelled.state == "CANCELLED" and cancelled.attempts == stored["attempts"] + 1
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        stop_started = time.monotonic()
    # Shutdown did not wait the whole grace period for a job that could never finish.
    assert time.monotonic() - stop_started < 4.0


def test_a_real_import_survives_a_store_outage(stoppable_s3):
    """The same over the preprocessing service's own StartImport (phantom images written to S3)."""
    bucket = f"sgb-{uuid.uuid4().hex[:12]}"
    store = stoppable_s3.store(bucket)
    with (
        running("preprocessing", store) as service,
        open_channel(service.target) as channel,
    ):
        stub = preprocessing_pb2_grpc.PreprocessingStub(channel)
        import_request = preprocessing_pb2.ImportRequest(
            source="phantom", options_json='{"count": 400, "width": 64, "height": 48}', seed=5
        )
        job = stub.StartImport(import_request, timeout=30)
        watcher, back_at = _outage_mid_job(stoppable_s3, service, channel, job.job_id, bucket, down_s=2.0)
        watcher.join(timeout=max(0.0, back_at + RECOVERY_S - time.monotonic()))
        assert not watcher.is_alive() and watcher.error is None
        assert watcher.events[-1].state in FINAL
        name = service.settings.service_name
        _wait_for(
            lambda: (
                _stored_record(stoppable_s3, bucket, name, job.job_id)["state"] in ("FAILED", "SUCCEEDED")
            ),
            max(0.1, back_at + RECOVERY_S - time.monotonic()),
            "the import's final state in the store",
        )
        # Asked again, the import runs to the end and its manifest (written last) is complete.
        again = stub.StartImport(import_request, timeout=30)
        if _stored_record(stoppable_s3, bucket, name, job.job_id)["state"] == "FAILED":
            assert not again.reused
        from skingenbench.services.platform.client import watch_job

        done = watch_job(channel, job.job_id, timeout_s=120)
        assert done.state == common_pb2.JOB_STATE_SUCCEEDED
        assert json.loads(done.result_json)["item_count"] == 400
