"""Health reflects readiness (gRPC health checking protocol,
https://github.com/grpc/grpc/blob/master/doc/health-checking.md): a server whose object store does not
answer is NOT_SERVING under every name it serves, and SERVING again once the store answers; the store is
probed in the background at a bounded interval, never once per health call.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from skingenbench.services.platform.client import open_channel

from skingenbench.api.v1 import common_pb2, common_pb2_grpc
from tests.common.service_helpers import running
from tests.reliability.stoppable_s3 import StoppableS3

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
PROBE_S = 0.2


@pytest.fixture
def stoppable_s3():
    with StoppableS3() as s3:
        yield s3


def _statuses(channel: grpc.Channel, names: list[str]) -> set[int]:
    stub = health_pb2_grpc.HealthStub(channel)
    return {stub.Check(health_pb2.HealthCheckRequest(service=n), timeout=5).status for n in names}


def _wait_for_status(channel, names, status, timeout_s: float = 10.0) -> float:
    start = time.monotonic()
    while _statuses(channel, names) != {status}:
        if time.monotonic() - start > timeout_s:
            raise AssertionError(
                f"health is {_statuses(channel, names)} after {timeout_s} s, expected {status}"
            )
        time.sleep(0.05)
    return time.monotonic() - start


def test_an_s3_outage_turns_health_not_serving_and_back(stoppable_s3):
    store = stoppable_s3.store(f"sgb-{uuid.uuid4().hex[:12]}")
    with (
        running("classification", store, store_probe_interval_s=PROBE_S) as service,
        open_channel(service.target) as channel,
    ):
        names = ["", service.settings.service_name, "skingenbench.v1.Jobs"]
        assert _statuses(channel, names) == {SERVING}
        # A Watch stream (the protocol's push side) sees each change.
        watched: list[int] = []
        stream = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=service.settings.service_name), timeout=60
        )

        def read() -> None:
            try:
                watched.extend(reply.status for reply in stream)
            except grpc.RpcError as exc:  # cancelled below, once the test has seen enough
                assert exc.code() == grpc.StatusCode.CANCELLED

        reader = threading.Thread(target=read, daemon=True)
        reader.start()

        stoppable_s3.stop()
        assert _wait_for_status(channel, names, NOT_SERVING) < 5.0
        # NOT_SERVING is an answer: the server itself keeps answering, and says why work would fail.
        with pytest.raises(grpc.RpcError) as refused:
            common_pb2_grpc.JobsStub(channel).GetJob(common_pb2.GetJobRequest(job_id="abc"), timeout=30)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert service.readiness is not None and "unreachable" in service.readiness.reason

        stoppable_s3.start()
        assert _wait_for_status(channel, names, SERVING) < 5.0
        time.sleep(0.2)
        stream.cancel()
        reader.join(timeout=5)
        assert watched[:1] == [SERVING] and NOT_SERVING in watched and watched[-1] == SERVING


def test_a_folder_store_that_vanishes_is_not_serving_until_it_is_back(folder_store):
    with (
        running("preprocessing", folder_store, store_probe_interval_s=PROBE_S) as service,
        open_channel(service.target) as channel,
    ):
        names = ["", service.settings.service_name]
        assert _statuses(channel, names) == {SERVING}
        shutil.rmtree(folder_store.root)  # the volume went away
        _wait_for_status(channel, names, NOT_SERVING)
        (folder_store.root / ".tmp").mkdir(parents=True)  # and came back
        _wait_for_status(channel, names, SERVING)


def test_health_calls_do_not_touch_the_store(folder_store):
    """The store is probed on the interval, however many health calls arrive."""
    pings = []
    real_ping = folder_store.ping
    folder_store.ping = lambda: (pings.append(time.monotonic()), real_ping())[1]
    interval = 0.5
    with (
        running("evaluation", folder_store, store_probe_interval_s=interval) as service,
        open_channel(service.target) as channel,
    ):
        stub = health_pb2_grpc.HealthStub(channel)
        start, before = time.monotonic(), len(pings)
        for _ in range(300):
            assert stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status == SERVING
        elapsed = time.monotonic() - start
        assert len(pings) - before <= elapsed / interval + 2
        assert pings, "the store was never probed"


def test_a_drain_stays_not_serving_even_when_the_store_answers(folder_store):
    with (
        running("generation", folder_store, store_probe_interval_s=PROBE_S) as service,
        open_channel(service.target) as channel,
    ):
        service.health.enter_graceful_shutdown()
        time.sleep(3 * PROBE_S)  # probes that find the store fine do not undo the drain
        assert _statuses(channel, ["", service.settings.service_name]) == {NOT_SERVING}
