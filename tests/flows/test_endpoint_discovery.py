"""Endpoint discovery: a ``dns:///name:port`` pool re-resolves when a call fails and when a slot frees,
finds a replaced pod (a real server on ::1 taking over from one on 127.0.0.1 at the same port), says
clearly when no Ready pod exists, brackets IPv6 addresses, and spreads calls over every endpoint."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest
from skingenbench.flows.endpoints import (
    Endpoint,
    EndpointPool,
    NoServingEndpoint,
    format_target,
    host_port,
    parse_endpoints,
)
from skingenbench.services.platform.settings import ServiceSettings
from skingenbench.services.stages import start_service

from skingenbench.api.v1 import common_pb2, preprocessing_pb2_grpc


def _service_info(channel):
    return preprocessing_pb2_grpc.PreprocessingStub(channel).GetServiceInfo(
        common_pb2.GetServiceInfoRequest(), timeout=10
    )


def _port_free_on_both() -> int:
    for _ in range(50):
        with socket.socket(socket.AF_INET) as v4, socket.socket(socket.AF_INET6) as v6:
            v4.bind(("127.0.0.1", 0))
            port = v4.getsockname()[1]
            try:
                v6.bind(("::1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no port free on both 127.0.0.1 and ::1")


@contextlib.contextmanager
def _server(host: str, port: int, store):
    settings = ServiceSettings(stage="preprocessing", host=host, port=port, shutdown_grace_s=2.0)
    service = start_service("preprocessing", settings, store)
    try:
        yield service
    finally:
        service.stop(grace_s=2.0)


class Resolver:
    """What the DNS name resolves to now (a test's stand-in for a headless Service's records)."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = list(addresses)
        self.calls = 0

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls += 1
        if not self.addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return sorted(self.addresses)


def test_ipv6_addresses_are_bracketed():
    assert format_target("::1", 50051) == "[::1]:50051" and format_target("10.0.0.7", 1) == "10.0.0.7:1"
    assert host_port("[fd00::1]:50052") == ("fd00::1", 50052) and host_port("gpu1:7") == ("gpu1", 7)
    endpoints = parse_endpoints("dns:///sgb.svc:50051*2", resolver=Resolver("::1", "127.0.0.1"))
    assert [(e.target, e.slots, e.server_name) for e in endpoints] == [
        ("127.0.0.1:50051", 2, "sgb.svc"),
        ("[::1]:50051", 2, "sgb.svc"),
    ]
    with pytest.raises(ValueError, match="host:port"):
        parse_endpoints("gpu1")
    with pytest.raises(NoServingEndpoint, match="resolves to no address.*no Ready pod"):
        parse_endpoints("dns:///gone.svc:1", resolver=Resolver())


def test_a_replaced_pod_is_found_when_a_call_fails(folder_store):
    """The pod at 127.0.0.1 goes away and a new one answers at ::1 (same name, same port): the failed
    call re-resolves and goes on to the new pod; the old address is retired."""
    port = _port_free_on_both()
    resolver = Resolver("127.0.0.1")
    with _server("[::1]", port, folder_store):
        pool = EndpointPool.from_spec(
            "preprocessing",
            f"dns:///sgb.test:{port}",
            resolver=resolver,
            backoff_s=0.05,
            resolve_interval_s=0.2,
        )
        try:
            with _server("127.0.0.1", port, folder_store):
                assert pool.run(_service_info).service
                assert [e.target for e in pool.endpoints] == [f"127.0.0.1:{port}"]
            resolver.addresses = ["::1"]  # the old pod is gone; its replacement has another address
            assert pool.run(_service_info).service
            assert [e.target for e in pool.endpoints] == [f"[::1]:{port}"]
            assert all(e.server_name == "sgb.test" for e in pool.endpoints)
        finally:
            pool.close()


def test_a_new_pod_is_found_when_a_slot_frees(folder_store):
    port = _port_free_on_both()
    resolver = Resolver("127.0.0.1")
    with _server("127.0.0.1", port, folder_store), _server("[::1]", port, folder_store):
        pool = EndpointPool.from_spec(
            "preprocessing", f"dns:///sgb.test:{port}", resolver=resolver, resolve_interval_s=0.0
        )
        try:
            pool.run(_service_info)
            resolver.addresses = ["127.0.0.1", "::1"]  # scaled up: a second pod is Ready
            pool.run(_service_info)  # its slot frees: resolved again
            assert sorted(e.target for e in pool.endpoints) == [f"127.0.0.1:{port}", f"[::1]:{port}"]
            assert pool.capacity() == 2
        finally:
            pool.close()


def test_no_ready_pod_raises_clearly_and_a_pod_that_becomes_ready_is_used(folder_store):
    port = _port_free_on_both()
    resolver = Resolver()  # NXDOMAIN: a headless Service with no Ready pod
    pool = EndpointPool.from_spec(
        "preprocessing",
        f"dns:///sgb.test:{port}",
        resolver=resolver,
        serving_wait_s=0.6,
        resolve_interval_s=0.1,
    )
    try:
        assert pool.endpoints == []
        with pytest.raises(NoServingEndpoint, match=f"dns:///sgb.test:{port} resolves to no address"):
            pool.run(_service_info)
        assert resolver.calls >= 2  # it looked again while it waited
        with _server("127.0.0.1", port, folder_store):
            pool.serving_wait_s = 30.0
            threading.Timer(0.5, lambda: resolver.addresses.append("127.0.0.1")).start()
            assert pool.run(_service_info).service
    finally:
        pool.close()
    with pytest.raises(ValueError, match="no endpoints"):
        EndpointPool("preprocessing", [])


def test_calls_are_spread_over_every_endpoint():
    """16 one-slot endpoints and 16 concurrent holders: every endpoint gets one (the old choice took the
    first free in a stable order); one at a time, the choice goes round (least busy, then in turn)."""
    pool = EndpointPool("generation", [Endpoint(f"127.0.0.1:{9}{i:02d}") for i in range(16)], health_ttl_s=60)
    for endpoint in pool.endpoints:  # known health: no calls to these addresses
        endpoint.health, endpoint.health_checked = "SERVING", time.monotonic()
    held, lock, release = [], threading.Lock(), threading.Event()

    def hold():
        with pool.slot() as endpoint:
            with lock:
                held.append(endpoint.target)
            release.wait(10)

    threads = [threading.Thread(target=hold) for _ in range(16)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while len(held) < 16 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(held) == sorted(e.target for e in pool.endpoints)
    release.set()
    for t in threads:
        t.join()
    one_at_a_time = []
    for _ in range(32):
        with pool.slot() as endpoint:
            one_at_a_time.append(endpoint.target)
    assert all(one_at_a_time.count(e.target) == 2 for e in pool.endpoints)
