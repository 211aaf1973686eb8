"""Endpoint pools: parsing, slots, and a lost endpoint retried on another (real servers, one store)."""

from __future__ import annotations

import threading
import time

import grpc
import pytest
from skingenbench.flows.endpoints import Endpoint, EndpointPool, endpoints_from_env, parse_endpoints
from skingenbench.flows.jobs import JobFailed, run_job

from skingenbench.api.v1 import common_pb2, preprocessing_pb2, preprocessing_pb2_grpc
from tests.common.service_helpers import add_test_jobs, running


def test_parse_endpoints_and_env_defaults():
    endpoints = parse_endpoints("gpu1:50052*2, gpu2:50052")
    assert [(e.target, e.slots) for e in endpoints] == [("gpu1:50052", 2), ("gpu2:50052", 1)]
    resolved = parse_endpoints("dns:///localhost:50052")
    assert resolved and all(e.target.endswith(":50052") for e in resolved)
    assert [e.target for e in endpoints_from_env("generation", {})] == ["127.0.0.1:50052"]
    assert [e.target for e in endpoints_from_env("generation", {"SKINGENBENCH_GENERATION_PORT": "6000"})] == [
        "127.0.0.1:6000"]
    with pytest.raises(ValueError):
        parse_endpoints("host:1*0")


def test_slots_bound_concurrency():
    pool = EndpointPool("generation", [Endpoint("a:1", 2)])
    active, peak, lock = [0], [0], threading.Lock()

    def work():
        with pool.slot():
            with lock:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            time.sleep(0.05)
            with lock:
                active[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 2


def test_a_lost_endpoint_is_retried_on_another(folder_store):
    with running("preprocessing", folder_store, extra_setup=add_test_jobs) as alive:
        dead = "127.0.0.1:9"  # nothing listens there: UNAVAILABLE
        pool = EndpointPool("preprocessing", [Endpoint(dead), Endpoint(alive.target)], retries=3, backoff_s=0.05)
        pool.endpoints[1].failures = 1  # make the dead endpoint the first choice
        request = preprocessing_pb2.ImportRequest(source="phantom", options_json='{"count": 12, "width": 64, '
                                                  '"height": 48}', seed=1)
        outcome = run_job(pool, preprocessing_pb2_grpc.PreprocessingStub, "StartImport", request)
        assert outcome.kind == "import" and "manifest" in outcome.outputs
        assert pool.endpoints[0].failures == 1  # it was tried, failed, and the job moved on
        pool.close()


def test_a_failed_job_raises_with_the_error(folder_store):
    with running("preprocessing", folder_store) as service:
        pool = EndpointPool("preprocessing", [Endpoint(service.target)])
        with pytest.raises(JobFailed, match="NOT_FOUND|INVALID_ARGUMENT"):
            run_job(pool, preprocessing_pb2_grpc.PreprocessingStub, "StartImport",
                    preprocessing_pb2.ImportRequest(source="ham10000", source_uri="/no/such/folder"))
        with pytest.raises(grpc.RpcError) as invalid:
            run_job(pool, preprocessing_pb2_grpc.PreprocessingStub, "StartPreprocess",
                    preprocessing_pb2.PreprocessRequest(input=common_pb2.ManifestRef(uri="x/manifest.json"),
                                                        pipeline="basic"))
        assert invalid.value.code() == grpc.StatusCode.NOT_FOUND  # not retried: not a transient error
        pool.close()
