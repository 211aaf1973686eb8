"""Service endpoints per stage, with slots, and calls retried with backoff on another endpoint.

A stage has a list of endpoints (``gpu1:50052*2,gpu2:50052``: a target and its slots, default one job
per GPU), given to a run by its ``Wiring`` (``wiring.py``; a deployment reads them from
``SKINGENBENCH_<STAGE>_ENDPOINTS``). In Kubernetes a headless service name
(``dns:///generation.sgb.svc.cluster.local:50052``) resolves to one endpoint per pod. A cell waits
for a free slot, runs its job there, and on UNAVAILABLE or DEADLINE_EXCEEDED is retried with
exponential backoff, on another endpoint when there is one. Jobs are content-addressed by their
request and their state lives in the shared store, so the retried job picks up where the lost one
stopped.

An endpoint whose health (gRPC health checking protocol,
https://github.com/grpc/grpc/blob/master/doc/health-checking.md) is NOT_SERVING — its object store
does not answer, or it is draining — is skipped when a slot is chosen; its status is asked at most
every ``health_ttl_s`` seconds. When no endpoint is serving the pool waits for one, up to
``serving_wait_s``, then raises :class:`NoServingEndpoint` naming each endpoint and its status.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from skingenbench.services.platform.client import open_channel
from skingenbench.services.platform.settings import SERVICES
from skingenbench.services.platform.tls import ClientTls

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
NOT_SERVING = "NOT_SERVING"


class NoServingEndpoint(RuntimeError):
    """No endpoint of a stage answered anything but NOT_SERVING within the pool's wait."""


@dataclass
class Endpoint:
    target: str
    slots: int = 1
    failures: int = 0
    # The DNS name a ``dns:///`` spec resolved to this address: what a TLS certificate names (a pod IP
    # is in no certificate), so it is the name the server's certificate is checked against.
    server_name: str = ""
    # Last health answer: SERVING, NOT_SERVING, SERVICE_UNKNOWN, UNKNOWN (no such service) or
    # UNREACHABLE (the call failed), and when it was asked (time.monotonic; 0: never).
    health: str = "UNKNOWN"
    health_checked: float = field(default=0.0, repr=False)
    _free: threading.Semaphore = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._free = threading.Semaphore(self.slots)


def parse_endpoints(spec: str) -> list[Endpoint]:
    """``host:port[*slots],...``; ``dns:///name:port`` expands to every address the name resolves to."""
    endpoints = []
    for raw in filter(None, (part.strip() for part in spec.split(","))):
        target, _, slots = raw.partition("*")
        count = int(slots) if slots else 1
        if count < 1:
            raise ValueError(f"endpoint {raw!r}: slots must be >= 1")
        if target.startswith("dns:///"):
            host, _, port = target.removeprefix("dns:///").rpartition(":")
            addresses = sorted(
                {info[4][0] for info in socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)}
            )
            endpoints += [Endpoint(f"{address}:{port}", count, server_name=host) for address in addresses]
        else:
            endpoints.append(Endpoint(target, count))
    return endpoints


def _tls_for(tls: ClientTls | None, endpoint: Endpoint) -> ClientTls:
    """The pool's TLS settings, checking a resolved endpoint's certificate against its DNS name unless a
    server name is set explicitly."""
    tls = ClientTls.resolve(tls)
    if tls.enabled and endpoint.server_name and not tls.server_name:
        return dataclasses.replace(tls, server_name=endpoint.server_name)
    return tls


def endpoint_specs_from_env(env: Mapping[str, str] | None = None, defaults: bool = False) -> dict[str, str]:
    """Stage -> endpoint spec, for the stages ``SKINGENBENCH_<STAGE>_ENDPOINTS`` configures; with
    ``defaults``, every other stage on 127.0.0.1 at ``SKINGENBENCH_<STAGE>_PORT`` or its default port."""
    env = dict(os.environ if env is None else env)
    specs = {}
    for stage, (_, default_port) in SERVICES.items():
        spec = env.get(f"SKINGENBENCH_{stage.upper()}_ENDPOINTS", "")
        if not spec and defaults:
            spec = f"127.0.0.1:{env.get(f'SKINGENBENCH_{stage.upper()}_PORT') or default_port}"
        if spec:
            specs[stage] = spec
    return specs


def endpoints_from_env(stage: str, env: Mapping[str, str] | None = None) -> list[Endpoint]:
    return parse_endpoints(endpoint_specs_from_env(env, defaults=True)[stage])


class EndpointPool:
    """The endpoints of one stage; ``run`` executes a call on a free slot with retries."""

    def __init__(
        self,
        stage: str,
        endpoints: list[Endpoint],
        retries: int = 4,
        backoff_s: float = 1.0,
        token: str | None = None,
        health_ttl_s: float = 2.0,
        serving_wait_s: float = 120.0,
        health_timeout_s: float = 2.0,
        tls: ClientTls | None = None,
    ) -> None:
        if not endpoints:
            raise ValueError(f"no endpoints for stage {stage!r}")
        self.stage = stage
        self.endpoints = endpoints
        self.token = token  # the services' bearer token; None: open_channel's default (the environment)
        self.tls = tls  # the client's TLS settings (a CA bundle ...); None: the environment's, as the token
        self.retries = retries
        self.backoff_s = backoff_s
        self.health_ttl_s = health_ttl_s
        self.serving_wait_s = serving_wait_s
        self.health_timeout_s = health_timeout_s
        # The stage's own service name: its status is the one that matters (the server sets "" too).
        self.service_name = SERVICES[stage][0] if stage in SERVICES else ""
        self._lock = threading.Lock()
        self._channels: dict[str, grpc.Channel] = {}

    def channel(self, endpoint: Endpoint) -> grpc.Channel:
        with self._lock:
            if endpoint.target not in self._channels:
                self._channels[endpoint.target] = open_channel(
                    endpoint.target, self.token, tls=_tls_for(self.tls, endpoint)
                )
            return self._channels[endpoint.target]

    def health(self, endpoint: Endpoint) -> str:
        """The endpoint's health status, asked at most every ``health_ttl_s`` seconds."""
        now = time.monotonic()
        if endpoint.health_checked and now - endpoint.health_checked < self.health_ttl_s:
            return endpoint.health
        stub = health_pb2_grpc.HealthStub(self.channel(endpoint))
        try:
            reply = stub.Check(
                health_pb2.HealthCheckRequest(service=self.service_name), timeout=self.health_timeout_s
            )
            status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        except grpc.RpcError as exc:
            status = "UNKNOWN" if exc.code() == grpc.StatusCode.NOT_FOUND else "UNREACHABLE"
        if endpoint.health_checked and status != endpoint.health:
            log.info("%s endpoint %s is %s (was %s)", self.stage, endpoint.target, status, endpoint.health)
        endpoint.health, endpoint.health_checked = status, time.monotonic()
        return status

    def _not_refusing(self) -> list[Endpoint]:
        """The endpoints not known to be NOT_SERVING; waits (up to ``serving_wait_s``) while all are."""
        waited_from = None
        while True:
            candidates = [e for e in self.endpoints if self.health(e) != NOT_SERVING]
            if candidates:
                if waited_from is not None:
                    log.info("%s: serving again after %.1f s", self.stage, time.monotonic() - waited_from)
                return candidates
            now = time.monotonic()
            statuses = ", ".join(f"{e.target} {e.health}" for e in self.endpoints)
            if waited_from is None:
                waited_from = now
                log.warning(
                    "no %s endpoint is serving (%s); waiting up to %.0f s for one",
                    self.stage,
                    statuses,
                    self.serving_wait_s,
                )
            if now - waited_from >= self.serving_wait_s:
                raise NoServingEndpoint(
                    f"no {self.stage} endpoint is serving after {self.serving_wait_s:.0f} s ({statuses}); "
                    "a server answers NOT_SERVING while its object store does not answer or while it "
                    "drains: check the store (SKINGENBENCH_STORE) and the servers' logs"
                )
            time.sleep(max(0.05, min(self.health_ttl_s, self.serving_wait_s - (now - waited_from))))

    @contextlib.contextmanager
    def slot(self, avoid: set[str] = frozenset()) -> Iterator[Endpoint]:
        """Wait for a free slot on an endpoint that is not NOT_SERVING, preferring endpoints not in
        ``avoid`` and with fewer failures."""
        while True:
            ranked = sorted(self._not_refusing(), key=lambda e: (e.target in avoid, e.failures))
            for endpoint in ranked:
                if endpoint._free.acquire(blocking=False):
                    try:
                        yield endpoint
                    finally:
                        endpoint._free.release()
                    return
            time.sleep(0.05)

    def run(self, call: Callable[[grpc.Channel], T], what: str = "call") -> T:
        avoid: set[str] = set()
        for attempt in range(self.retries + 1):
            with self.slot(avoid) as endpoint:
                try:
                    return call(self.channel(endpoint))
                except grpc.RpcError as exc:
                    if exc.code() not in RETRYABLE or attempt == self.retries:
                        raise
                    endpoint.failures += 1
                    avoid.add(endpoint.target)
                    delay = self.backoff_s * 2**attempt
                    log.warning(
                        "%s on %s failed with %s; retrying in %.1f s%s",
                        what,
                        endpoint.target,
                        exc.code().name,
                        delay,
                        " on another endpoint" if len(self.endpoints) > 1 else "",
                    )
            time.sleep(delay)
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()
