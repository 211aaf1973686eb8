"""Endpoint pools and the run's wiring: parsing, slots, a lost endpoint retried on another (real servers,
one store), and pools shared by every task of a run and closed after it."""

from __future__ import annotations

import shutil
import threading
import time

import grpc
import pytest
from skingenbench.flows.endpoints import (
    Endpoint,
    EndpointPool,
    NoServingEndpoint,
    endpoint_specs_from_env,
    endpoints_from_env,
    parse_endpoints,
)
from skingenbench.flows.jobs import JobFailed, run_job
from skingenbench.flows.wiring import Wiring, open_pools, pools_for
from skingenbench.services.platform.settings import SERVICES

from skingenbench.api.v1 import common_pb2, preprocessing_pb2, preprocessing_pb2_grpc
from tests.common.service_helpers import add_test_jobs, running


def test_parse_endpoints_and_env_defaults():
    endpoints = parse_endpoints("gpu1:50052*2, gpu2:50052")
    assert [(e.target, e.slots) for e in endpoints] == [("gpu1:50052", 2), ("gpu2:50052", 1)]
    resolved = parse_endpoints("dns:///localhost:50052")
    assert resolved and all(e.target.endswith(":50052") for e in resolved)
    assert [e.target for e in endpoints_from_env("generation", {})] == ["127.0.0.1:50052"]
    assert [e.target for e in endpoints_from_env("generation", {"SKINGENBENCH_GENERATION_PORT": "6000"})] == [
        "127.0.0.1:6000"
    ]
    with pytest.raises(ValueError):
        parse_endpoints("host:1*0")
    env = {"SKINGENBENCH_EVALUATION_ENDPOINTS": "gpu1:50053*2,gpu2:50053"}
    assert endpoint_specs_from_env(env) == {"evaluation": "gpu1:50053*2,gpu2:50053"}
    assert endpoint_specs_from_env({}) == {}


def test_wiring_from_settings_and_options():
    env = {
        "SKINGENBENCH_EVALUATION_ENDPOINTS": "gpu1:50053*2, gpu2:50053",
        "SKINGENBENCH_STORE": "s3://bucket/p",
        "SKINGENBENCH_GENERATION_PORT": "6000",
        "SKINGENBENCH_AUTH_TOKEN": "secret",
    }
    wiring = Wiring.from_settings(env)
    assert wiring.endpoints == {
        "preprocessing": ("127.0.0.1:50051",),
        "generation": ("127.0.0.1:6000",),
        "evaluation": ("gpu1:50053*2", "gpu2:50053"),
        "classification": ("127.0.0.1:50054",),
    }
    assert wiring.store_uri == "s3://bucket/p" and wiring.auth_token.get_secret_value() == "secret"
    assert "secret" not in repr(wiring)
    chosen = Wiring.from_settings(env, endpoints={"evaluation": "other:1"}, store_uri="file:///tmp/store")
    assert chosen.endpoints["evaluation"] == ("other:1",) and chosen.store_uri == "file:///tmp/store"
    # A value: equal wirings are equal and hash equal, whatever sequence type their targets came in.
    same = Wiring(
        {stage: list(targets) for stage, targets in wiring.endpoints.items()}, wiring.store_uri, "secret"
    )
    assert same == wiring and hash(same) == hash(wiring)
    with pytest.raises(ValueError, match="no endpoints for stage"):
        Wiring({"generation": ("a:1",)}, "file:///tmp/store")
    with pytest.raises(ValueError, match="unknown stage"):
        Wiring({**wiring.endpoints, "training": ("a:1",)}, "file:///tmp/store")


def test_prefect_stores_the_wiring_with_the_token_masked():
    from skingenbench.flows.benchmark import benchmark

    wiring = Wiring.from_settings({"SKINGENBENCH_AUTH_TOKEN": "secret"}, store_uri="file:///tmp/store")
    validated = benchmark.validate_parameters({"grid_spec": "smoke", "wiring": wiring})
    assert validated["wiring"] == wiring
    stored = benchmark.serialize_parameters(validated)["wiring"]
    assert stored["store_uri"] == "file:///tmp/store" and stored["auth_token"] != "secret"
    assert stored["endpoints"]["evaluation"] == ["127.0.0.1:50053"]
    # A deployment's parameters arrive as JSON and become the same value.
    assert benchmark.validate_parameters({"wiring": {**stored, "auth_token": "secret"}})["wiring"] == wiring


def test_every_task_of_a_run_shares_the_wirings_pools_until_the_run_ends():
    wiring = Wiring(
        {stage: (f"127.0.0.1:{port}*2",) for stage, (_, port) in SERVICES.items()}, "file:///tmp/s", "token"
    )
    with open_pools(wiring) as pools:
        assert (
            pools_for(wiring) is pools
            and pools_for(Wiring(dict(wiring.endpoints), "file:///tmp/s", "token")) is pools
        )
        assert pools["generation"].endpoints[0].slots == 2 and pools["generation"].token == "token"
        with open_pools(wiring) as nested:  # a second run with the same wiring in this process
            assert nested is pools
        assert pools_for(wiring) is pools  # still open: the first run has not ended
    assert pools_for(wiring) is not pools  # closed with the last run; a new run builds new ones


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
        pool = EndpointPool(
            "preprocessing", [Endpoint(dead), Endpoint(alive.target)], retries=3, backoff_s=0.05
        )
        pool.endpoints[1].failures = 1  # make the dead endpoint the first choice
        request = preprocessing_pb2.ImportRequest(
            source="phantom", options_json='{"count": 12, "width": 64, "height": 48}', seed=1
        )
        outcome = run_job(pool, preprocessing_pb2_grpc.PreprocessingStub, "StartImport", request)
        assert outcome.kind == "import" and "manifest" in outcome.outputs
        assert pool.endpoints[0].failures == 1  # it was tried, failed, and the job moved on
        pool.close()


def test_refusals_and_failed_jobs_raise_with_the_error(folder_store):
    from skingenbench.services.platform.manifest_io import read_manifest

    with running("preprocessing", folder_store) as service:
        pool = EndpointPool("preprocessing", [Endpoint(service.target)])
        # Refused at Start: the status itself, not retried (not a transient error).
        with pytest.raises(grpc.RpcError) as refused:
            run_job(
                pool,
                preprocessing_pb2_grpc.PreprocessingStub,
                "StartImport",
                preprocessing_pb2.ImportRequest(source="ham10000", source_uri="/no/such/folder"),
            )
        assert (
            refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            and "read roots" in refused.value.details()
        )
        with pytest.raises(grpc.RpcError) as invalid:
            run_job(
                pool,
                preprocessing_pb2_grpc.PreprocessingStub,
                "StartPreprocess",
                preprocessing_pb2.PreprocessRequest(
                    input=common_pb2.ManifestRef(uri="x/manifest.json"), pipeline="basic"
                ),
            )
        assert invalid.value.code() == grpc.StatusCode.NOT_FOUND
        # Failed while running (an image no longer matches its manifest): JobFailed with the job's error.
        imported = run_job(
            pool,
            preprocessing_pb2_grpc.PreprocessingStub,
            "StartImport",
            preprocessing_pb2.ImportRequest(
                source="phantom", seed=2, options_json='{"count": 4, "width": 64, "height": 48}'
            ),
        )
        item = read_manifest(folder_store, imported.uri("manifest")).items[0]
        folder_store.put_bytes(item.key, b"not the image the manifest names")
        with pytest.raises(JobFailed, match="DATA_LOSS"):
            run_job(
                pool,
                preprocessing_pb2_grpc.PreprocessingStub,
                "StartQualityReport",
                preprocessing_pb2.QualityReportRequest(
                    input=common_pb2.ManifestRef(uri=imported.uri("manifest")), pipeline="basic"
                ),
            )
        pool.close()


def _import_request(seed: int) -> preprocessing_pb2.ImportRequest:
    return preprocessing_pb2.ImportRequest(
        source="phantom", options_json='{"count": 4, "width": 64, "height": 48}', seed=seed
    )


def _wait_not_serving(pool: EndpointPool, endpoint: Endpoint, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while pool.health(endpoint) != "NOT_SERVING":
        assert time.monotonic() < deadline, f"{endpoint.target} is still {endpoint.health}"
        time.sleep(0.1)


def test_a_not_serving_endpoint_is_skipped(tmp_path):
    """A server whose store is gone answers NOT_SERVING (gRPC health protocol); the pool sends the job to
    the other endpoint without trying the refusing one."""
    from skingenbench.services.platform.store import LocalFolderStore

    lost, kept = LocalFolderStore(tmp_path / "lost"), LocalFolderStore(tmp_path / "kept")
    with (
        running("preprocessing", lost, store_probe_interval_s=0.1) as refusing,
        running("preprocessing", kept, store_probe_interval_s=0.1) as serving,
    ):
        pool = EndpointPool(
            "preprocessing", [Endpoint(refusing.target), Endpoint(serving.target)], health_ttl_s=0.1
        )
        pool.endpoints[1].failures = 1  # without health, the refusing endpoint would be the first choice
        shutil.rmtree(lost.root)
        _wait_not_serving(pool, pool.endpoints[0])
        outcome = run_job(pool, preprocessing_pb2_grpc.PreprocessingStub, "StartImport", _import_request(3))
        assert outcome.kind == "import" and kept.exists(kept.key_from_uri(outcome.uri("manifest")))
        assert pool.endpoints[0].failures == 0 and pool.endpoints[0].health == "NOT_SERVING"
        assert pool.endpoints[1].health == "SERVING"
        pool.close()


def test_with_no_endpoint_serving_the_pool_waits_then_says_so(tmp_path):
    from skingenbench.services.platform.store import LocalFolderStore

    store = LocalFolderStore(tmp_path / "store")
    with running("preprocessing", store, store_probe_interval_s=0.1) as service:
        pool = EndpointPool("preprocessing", [Endpoint(service.target)], health_ttl_s=0.1, serving_wait_s=1.0)
        shutil.rmtree(store.root)
        _wait_not_serving(pool, pool.endpoints[0])
        started = time.monotonic()
        with pytest.raises(
            NoServingEndpoint, match=f"no preprocessing endpoint is serving.*{service.target}"
        ):
            run_job(pool, preprocessing_pb2_grpc.PreprocessingStub, "StartImport", _import_request(4))
        assert 1.0 <= time.monotonic() - started < 5.0
        # The store comes back while a call waits: the call goes through.
        pool.serving_wait_s = 30.0
        threading.Timer(1.0, lambda: (store.root / ".tmp").mkdir(parents=True)).start()
        outcome = run_job(pool, preprocessing_pb2_grpc.PreprocessingStub, "StartImport", _import_request(4))
        assert outcome.kind == "import" and pool.endpoints[0].health == "SERVING"
        pool.close()
