"""Readiness: a server's health follows its object store.

The gRPC health checking protocol (https://github.com/grpc/grpc/blob/master/doc/health-checking.md)
answers, per service name, whether the server can do its work: SERVING or NOT_SERVING, by ``Check``
and as a stream of changes by ``Watch``. A service whose store cannot be reached can only fail the
work it is sent, so while the store does not answer every name the server serves is NOT_SERVING, and
SERVING again once it does; probes (Kubernetes, the local stack) and the flow's endpoint pools then
send work elsewhere.

The store is probed by one background thread at a bounded interval (``ObjectStore.ping``: a HEAD of the
bucket, a look at the folder), never by a health call: a probe storm costs the store nothing, and a
slow store never makes a health call slow. A drain (``enter_graceful_shutdown``) wins: the health
servicer ignores later changes, so a stopping server stays NOT_SERVING.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from grpc_health.v1 import health, health_pb2
from skingenbench.services.platform.store import ObjectStore

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 5.0
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class StoreReadiness:
    """Sets the health of ``names`` from a store probe every ``interval_s`` seconds."""

    def __init__(
        self,
        store: ObjectStore,
        health_servicer: health.HealthServicer,
        names: Sequence[str],
        interval_s: float = DEFAULT_INTERVAL_S,
    ) -> None:
        self.store = store
        self.health = health_servicer
        self.names = list(names)
        self.interval_s = max(0.05, float(interval_s))
        self.serving: bool | None = None  # None until the first probe
        self.reason = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def probe(self) -> bool:
        """Probe the store once and set every name's status; a change is logged once."""
        try:
            self.store.ping()
        except Exception as exc:  # whatever the store raises, it cannot serve work now
            serving, reason = False, f"{type(exc).__name__}: {getattr(exc, 'message', '') or exc}"
        else:
            serving, reason = True, ""
        if serving != self.serving:
            if serving and self.serving is not None:
                log.info("object store %s answers again: SERVING", self.store.root_uri)
            elif not serving:
                log.warning("object store %s does not answer (%s): NOT_SERVING", self.store.root_uri, reason)
            for name in self.names:
                self.health.set(name, _SERVING if serving else _NOT_SERVING)
        self.serving, self.reason = serving, reason
        return serving

    def start(self) -> None:
        """Probe now (the server's first status comes from the store), then every interval."""
        self.probe()
        self._thread = threading.Thread(target=self._loop, name="store-readiness", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.probe()

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop probing; wait for a probe in progress at most ``timeout_s`` (default: one interval + 1 s)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s + 1.0 if timeout_s is None else timeout_s)
