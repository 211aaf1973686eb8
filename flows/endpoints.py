"""Service endpoints per stage, with slots, and calls retried with backoff on another endpoint.

A stage has a list of endpoints (``gpu1:50052*2,gpu2:50052``: a target and its slots, default one job
per GPU), given to a run by its ``Wiring`` (``wiring.py``; a deployment reads them from
``SKINGENBENCH_<STAGE>_ENDPOINTS``). In Kubernetes a headless service name
(``dns:///generation.sgb.svc.cluster.local:50052``) resolves to one endpoint per pod. A cell waits
for a free slot, runs its job there, and on UNAVAILABLE or DEADLINE_EXCEEDED is retried with
exponential backoff, on another endpoint when there is one. Jobs are content-addressed by their
request and their state lives in the shared store, so the retried job picks up where the lost one
stopped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import grpc
from skingenbench.services.platform.client import open_channel
from skingenbench.services.platform.settings import SERVICES

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


@dataclass
class Endpoint:
    target: str
    slots: int = 1
    failures: int = 0
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
            endpoints += [Endpoint(f"{address}:{port}", count) for address in addresses]
        else:
            endpoints.append(Endpoint(target, count))
    return endpoints


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
    ) -> None:
        if not endpoints:
            raise ValueError(f"no endpoints for stage {stage!r}")
        self.stage = stage
        self.endpoints = endpoints
        self.token = token  # the services' bearer token; None: open_channel's default (the environment)
        self.retries = retries
        self.backoff_s = backoff_s
        self._lock = threading.Lock()
        self._channels: dict[str, grpc.Channel] = {}

    def channel(self, endpoint: Endpoint) -> grpc.Channel:
        with self._lock:
            if endpoint.target not in self._channels:
                self._channels[endpoint.target] = open_channel(endpoint.target, self.token)
            return self._channels[endpoint.target]

    @contextlib.contextmanager
    def slot(self, avoid: set[str] = frozenset()) -> Iterator[Endpoint]:
        """Wait for a free slot, preferring endpoints not in ``avoid`` and with fewer failures."""
        while True:
            ranked = sorted(self.endpoints, key=lambda e: (e.target in avoid, e.failures))
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
