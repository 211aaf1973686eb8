"""Service endpoints per stage, with slots, and calls retried with backoff on another endpoint.

A stage has a list of endpoints (``gpu1:50052*2,gpu2:50052``: a target and its slots, default one job
per GPU), given to a run by its ``Wiring`` (``wiring.py``; a deployment reads them from
``SKINGENBENCH_<STAGE>_ENDPOINTS``). In Kubernetes a headless service name
(``dns:///generation.sgb.svc.cluster.local:50052``) resolves to one endpoint per Ready pod; the pool
resolves it again (at most every ``resolve_interval_s``) when a call fails and when a slot frees, so a
replaced pod is found and a deleted one retired (its running calls finish; it gets no new ones). An IPv6
address becomes a bracketed target (``[fd00::1]:50052``), as gRPC's target syntax wants.

A cell takes the least busy endpoint with a free slot (ties taken in turn, so 16 one-slot endpoints all
get work, not the first 8), runs its job there, and on UNAVAILABLE or DEADLINE_EXCEEDED is retried with
exponential backoff, on another endpoint when there is one. Jobs are content-addressed by their request
and their state lives in the shared store, so the retried job picks up where the lost one stopped.

An endpoint whose health (gRPC health checking protocol,
https://github.com/grpc/grpc/blob/master/doc/health-checking.md) is NOT_SERVING — its object store
does not answer, or it is draining — is skipped when a slot is chosen; its status is asked at most
every ``health_ttl_s`` seconds. When no endpoint is serving, or a DNS name has no address (no Ready
pod), the pool waits for one, up to ``serving_wait_s``, then raises :class:`NoServingEndpoint` naming
each endpoint and its status (or the name that resolves to nothing).
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
DNS_PREFIX = "dns:///"

Resolver = Callable[[str, int], list[str]]  # (host, port) -> addresses; raises socket.gaierror


class NoServingEndpoint(RuntimeError):
    """No endpoint of a stage answered anything but NOT_SERVING (or none exists: a DNS name with no
    Ready pod behind it) within the pool's wait."""


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
    busy: int = field(default=0, repr=False)  # calls running on it now (at most ``slots``)
    # Its DNS name no longer resolves to it (a pod that was deleted): no new calls; dropped when idle.
    retired: bool = field(default=False, repr=False)


def host_port(target: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` → (host without brackets, port)."""
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"endpoint {target!r}: expected host:port")
    return host.removeprefix("[").removesuffix("]"), int(port)


def format_target(address: str, port: int) -> str:
    """An address and port as a gRPC target: IPv6 addresses in brackets (``[::1]:50051``)."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def resolve_addresses(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (a headless Service: one per Ready pod), sorted."""
    return sorted({info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})


@dataclass(frozen=True)
class EndpointSpec:
    """One entry of an endpoint list: a fixed target, or a DNS name resolved to one endpoint per address."""

    target: str
    slots: int = 1

    @classmethod
    def parse(cls, raw: str) -> EndpointSpec:
        target, _, slots = raw.strip().partition("*")
        try:
            count = int(slots) if slots else 1
        except ValueError:
            raise ValueError(f"endpoint {raw!r}: slots must be an integer (host:port*2)") from None
        if count < 1:
            raise ValueError(f"endpoint {raw!r}: slots must be >= 1")
        host_port(target.removeprefix(DNS_PREFIX))  # a port is required either way
        return cls(target, count)

    @property
    def is_dns(self) -> bool:
        return self.target.startswith(DNS_PREFIX)

    def resolve(self, resolver: Resolver = resolve_addresses) -> list[Endpoint]:
        if not self.is_dns:
            return [Endpoint(self.target, self.slots)]
        host, port = host_port(self.target.removeprefix(DNS_PREFIX))
        return [
            Endpoint(format_target(address, port), self.slots, server_name=host)
            for address in resolver(host, port)
        ]


def parse_specs(spec: str) -> list[EndpointSpec]:
    return [EndpointSpec.parse(raw) for raw in spec.split(",") if raw.strip()]


def parse_endpoints(spec: str, resolver: Resolver = resolve_addresses) -> list[Endpoint]:
    """``host:port[*slots],...``; ``dns:///name:port`` expands to every address the name resolves to."""
    endpoints = []
    for entry in parse_specs(spec):
        try:
            endpoints += entry.resolve(resolver)
        except socket.gaierror as exc:
            raise NoServingEndpoint(_no_address(entry.target, exc)) from None
    return endpoints


def _no_address(target: str, exc: BaseException | None = None) -> str:
    why = f" ({exc})" if exc else ""
    return (
        f"{target} resolves to no address{why}: a headless Service has no Ready pod behind it, or the name "
        "is wrong (kubectl get endpoints / pods in its namespace)"
    )


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
    """The endpoints of one stage; ``run`` executes a call on a free slot with retries.

    ``specs`` are the entries the endpoints came from: with a DNS name among them the pool re-resolves
    (``refresh``), and may start with no endpoint at all (pods still starting)."""

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
        specs: list[EndpointSpec] | None = None,
        resolver: Resolver = resolve_addresses,
        resolve_interval_s: float = 5.0,
    ) -> None:
        self.specs = list(specs or [])
        if not endpoints and not any(s.is_dns for s in self.specs):
            raise ValueError(f"no endpoints for stage {stage!r}")
        self.stage = stage
        self.endpoints = list(endpoints)
        self.token = token  # the services' bearer token; None: open_channel's default (the environment)
        self.tls = tls  # the client's TLS settings (a CA bundle ...); None: the environment's, as the token
        self.retries = retries
        self.backoff_s = backoff_s
        self.health_ttl_s = health_ttl_s
        self.serving_wait_s = serving_wait_s
        self.health_timeout_s = health_timeout_s
        self.resolver = resolver
        self.resolve_interval_s = resolve_interval_s
        # The stage's own service name: its status is the one that matters (the server sets "" too).
        self.service_name = SERVICES[stage][0] if stage in SERVICES else ""
        self._lock = threading.Lock()
        self._freed = threading.Condition(self._lock)  # notified when a slot frees or endpoints change
        self._channels: dict[str, grpc.Channel] = {}
        self._turn = 0  # where the round-robin among equally busy endpoints continues
        self._resolved_at = time.monotonic() if self.specs else 0.0
        self._unresolvable: dict[str, str] = {}  # DNS spec -> why it has no address now

    @classmethod
    def from_spec(cls, stage: str, spec: str, **options) -> EndpointPool:
        """A pool from ``host:port[*slots],dns:///name:port[*slots],...``; a DNS name that resolves to
        nothing yet is waited for (up to ``serving_wait_s`` when a call needs it), not an error now."""
        specs = parse_specs(spec)
        resolver = options.get("resolver", resolve_addresses)
        endpoints, unresolvable = [], {}
        for entry in specs:
            try:
                endpoints += entry.resolve(resolver)
            except socket.gaierror as exc:
                unresolvable[entry.target] = _no_address(entry.target, exc)
        pool = cls(stage, endpoints, specs=specs, **options)
        pool._unresolvable = unresolvable
        return pool

    # -- endpoints --------------------------------------------------------------------------------------
    def active(self) -> list[Endpoint]:
        """The endpoints that may take new calls (not retired)."""
        with self._lock:
            return [e for e in self.endpoints if not e.retired]

    def capacity(self) -> int:
        """Slots of the endpoints that may take calls and are not known to refuse: how many of the
        stage's jobs can run at once now (at least 1, so work is never held back for ever)."""
        return max(1, sum(e.slots for e in self.active() if e.health != NOT_SERVING))

    def refresh(self, min_interval_s: float | None = None) -> bool:
        """Resolve the DNS entries again (at most every ``min_interval_s``, default the pool's interval):
        new addresses become endpoints, vanished ones are retired. Returns whether it resolved."""
        dns = [s for s in self.specs if s.is_dns]
        interval = self.resolve_interval_s if min_interval_s is None else min_interval_s
        with self._lock:
            if not dns or time.monotonic() - self._resolved_at < interval:
                return False
            self._resolved_at = time.monotonic()
        found: dict[str, Endpoint] = {}
        unresolvable, failed = {}, set()
        for entry in dns:
            try:
                found.update({e.target: e for e in entry.resolve(self.resolver)})
            except socket.gaierror as exc:
                unresolvable[entry.target] = _no_address(entry.target, exc)
                if exc.errno not in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
                    failed.add(entry.target)  # DNS itself failed (not "no such name"): keep what we have
        from_dns = {s.target for s in dns}
        with self._freed:
            self._unresolvable = unresolvable
            known = {e.target: e for e in self.endpoints}
            for target, endpoint in found.items():
                if target not in known:
                    log.info("%s: new endpoint %s (from %s)", self.stage, target, endpoint.server_name)
                    self.endpoints.append(endpoint)
                elif known[target].retired:
                    known[target].retired = False
            for endpoint in self.endpoints:
                origin = _origin(endpoint, from_dns)
                if origin and origin not in failed and endpoint.target not in found and not endpoint.retired:
                    log.info("%s: endpoint %s no longer resolves; retired", self.stage, endpoint.target)
                    endpoint.retired = True
            gone = [e for e in self.endpoints if e.retired and e.busy == 0]
            self.endpoints = [e for e in self.endpoints if not (e.retired and e.busy == 0)]
            channels = [self._channels.pop(e.target) for e in gone if e.target in self._channels]
            self._freed.notify_all()
        for channel in channels:
            channel.close()
        return True

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

    def _statuses(self) -> str:
        parts = [f"{e.target} {e.health}" for e in self.active()]
        parts += list(self._unresolvable.values())
        return ", ".join(parts) or "no endpoint"

    def _not_refusing(self) -> list[Endpoint]:
        """The endpoints not known to be NOT_SERVING; waits (up to ``serving_wait_s``) while all are (or
        while a DNS name has no address), resolving again meanwhile."""
        waited_from = None
        while True:
            active = self.active()
            # Health is asked only of endpoints with a free slot: waiting callers do not poll 16 busy
            # endpoints every ``health_ttl_s`` (measured: that delayed taking a freed slot under load);
            # a busy endpoint's last answer stands until it frees.
            free = [e for e in active if e.busy < e.slots]
            candidates = [e for e in free if self.health(e) != NOT_SERVING]
            serving_busy = [e for e in active if e.busy >= e.slots and e.health != NOT_SERVING]
            if candidates or serving_busy:  # none free but some serving: ``slot`` waits for one to free
                if waited_from is not None:
                    log.info("%s: serving again after %.1f s", self.stage, time.monotonic() - waited_from)
                return candidates
            now = time.monotonic()
            if waited_from is None:
                waited_from = now
                log.warning(
                    "no %s endpoint is serving (%s); waiting up to %.0f s for one",
                    self.stage,
                    self._statuses(),
                    self.serving_wait_s,
                )
            if now - waited_from >= self.serving_wait_s:
                raise NoServingEndpoint(
                    f"no {self.stage} endpoint is serving after {self.serving_wait_s:.0f} s "
                    f"({self._statuses()}); a server answers NOT_SERVING while its object store does not "
                    "answer or while it drains: check the store (SKINGENBENCH_STORE) and the servers' logs"
                )
            self.refresh(min_interval_s=min(1.0, self.resolve_interval_s))
            poll = self.health_ttl_s if self.active() else min(0.2, self.resolve_interval_s or 0.2)
            time.sleep(max(0.05, min(poll, self.serving_wait_s - (now - waited_from))))

    def _choose(self, candidates: list[Endpoint], avoid: set[str]) -> Endpoint | None:
        """Under the lock: the least busy candidate with a free slot — not avoided, fewest failures, lowest
        share of its slots in use — and among equals the next in turn after the last one chosen."""
        order = {id(e): i for i, e in enumerate(self.endpoints)}
        count = max(1, len(self.endpoints))
        free = [e for e in candidates if e.busy < e.slots and not e.retired and id(e) in order]
        if not free:
            return None
        chosen = min(
            free,
            key=lambda e: (
                e.target in avoid,
                e.failures,
                e.busy / e.slots,
                (order[id(e)] - self._turn) % count,
            ),
        )
        chosen.busy += 1
        self._turn = order[id(chosen)] + 1
        return chosen

    @contextlib.contextmanager
    def slot(self, avoid: set[str] = frozenset()) -> Iterator[Endpoint]:
        """Wait for a free slot on an endpoint that is not NOT_SERVING (see ``_choose`` for which)."""
        while True:
            candidates = self._not_refusing()
            with self._freed:
                endpoint = self._choose(candidates, avoid)
                if endpoint is None:
                    self._freed.wait(timeout=0.5)  # a slot frees, or endpoints change; else look again
                    continue
            break
        try:
            yield endpoint
        finally:
            with self._freed:
                endpoint.busy -= 1
                if endpoint.retired and endpoint.busy == 0 and endpoint in self.endpoints:
                    self.endpoints.remove(endpoint)  # its pod is gone; its last call has ended
                    channel = self._channels.pop(endpoint.target, None)
                    if channel is not None:
                        channel.close()
                self._freed.notify_all()
            self.refresh()  # a slot freed: a good moment to find new pods (rate-limited)

    def run(self, call: Callable[[grpc.Channel], T], what: str = "call") -> T:
        return self.run_on(lambda channel, endpoint: call(channel), what)

    def run_on(self, call: Callable[[grpc.Channel, Endpoint], T], what: str = "call") -> T:
        """``run`` for a call that also wants to know its endpoint (to show where a job runs)."""
        avoid: set[str] = set()
        for attempt in range(self.retries + 1):
            with self.slot(avoid) as endpoint:
                try:
                    return call(self.channel(endpoint), endpoint)
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
            self.refresh(min_interval_s=min(1.0, self.resolve_interval_s))  # the pod may have been replaced
            time.sleep(delay)
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()


def _origin(endpoint: Endpoint, dns_targets: set[str]) -> str:
    """The DNS spec an endpoint came from ('' for a fixed target)."""
    if not endpoint.server_name:
        return ""
    port = endpoint.target.rpartition(":")[2]
    target = f"{DNS_PREFIX}{endpoint.server_name}:{port}"
    return target if target in dns_targets else ""
