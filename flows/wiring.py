"""How a benchmark run reaches its services: each stage's endpoints, the shared store, the auth token
and the TLS settings.

A ``Wiring`` is a value built once — by ``skingenbench run`` from its options and the local stack, or
from the settings (``SKINGENBENCH_<STAGE>_ENDPOINTS``, ``SKINGENBENCH_STORE``,
``SKINGENBENCH_AUTH_TOKEN``, ``SKINGENBENCH_TLS_CA`` ...) when the flow runs as a Prefect deployment —
and handed to the flow and from the flow to every task, so nothing reaches a task by a side route. The
token is a pydantic ``SecretStr``: Prefect stores flow parameters, and a secret one is stored masked.
The TLS settings are paths (a CA bundle; a client certificate and key for mutual TLS), never key
material, so a stored parameter holds nothing secret; the files must exist where the tasks run.

The endpoint pools of a wiring (slots, channels, failure counts) must be shared by every task of a
run, or slots would not bound concurrency; ``pools_for`` keeps them per wiring value, and
``open_pools`` (the flow's ``with``) closes them when the last run using that wiring ends.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from pydantic import SecretStr
from skingenbench.flows.endpoints import EndpointPool, endpoint_specs_from_env
from skingenbench.services.platform.settings import SERVICES
from skingenbench.services.platform.store import DEFAULT_STORE_DIR, ObjectStore, store_from_uri
from skingenbench.services.platform.tls import ClientTls


@dataclass(frozen=True)
class Wiring:
    """Per stage its targets (``host:port[*slots]`` or ``dns:///name:port[*slots]``), the store URI, the
    token, the client's TLS settings (``ClientTls()``: insecure channels)."""

    endpoints: dict[str, tuple[str, ...]]
    store_uri: str
    auth_token: SecretStr = field(default_factory=lambda: SecretStr(""))
    tls: ClientTls = field(default_factory=ClientTls)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.endpoints) - set(SERVICES))
        missing = [stage for stage in SERVICES if not self.endpoints.get(stage)]
        if unknown or missing:
            raise ValueError(
                f"wiring: unknown stage(s) {unknown}"
                if unknown
                else f"wiring: no endpoints for stage(s) {missing}"
            )
        if not self.store_uri:
            raise ValueError("wiring: the store URI is empty")
        # Normalised (stage order, tuples, a SecretStr), so equal wirings compare and hash equal.
        object.__setattr__(self, "endpoints", {stage: tuple(self.endpoints[stage]) for stage in SERVICES})
        if not isinstance(self.auth_token, SecretStr):
            object.__setattr__(self, "auth_token", SecretStr(str(self.auth_token or "")))
        if isinstance(self.tls, Mapping):  # a stored parameter read back as a plain dict
            object.__setattr__(self, "tls", ClientTls(**self.tls))
        elif not isinstance(self.tls, ClientTls):
            raise ValueError(f"wiring: tls must be a ClientTls, got {type(self.tls).__name__}")

    def __hash__(self) -> int:  # explicit: the endpoints are a dict, which a generated hash cannot take
        return hash(
            (tuple(self.endpoints.items()), self.store_uri, self.auth_token.get_secret_value(), self.tls)
        )

    @classmethod
    def from_settings(
        cls,
        env: Mapping[str, str] | None = None,
        endpoints: Mapping[str, str] | None = None,
        store_uri: str = "",
        tls: ClientTls | None = None,
    ) -> Wiring:
        """From the environment (a deployment's settings), with ``endpoints`` (stage -> comma-separated
        targets), ``store_uri`` and ``tls`` taking precedence; a stage configured nowhere is on its
        default port on 127.0.0.1."""
        env = dict(os.environ if env is None else env)
        specs = {**endpoint_specs_from_env(env, defaults=True), **dict(endpoints or {})}
        return cls(
            {stage: split_targets(spec) for stage, spec in specs.items()},
            store_uri or env.get("SKINGENBENCH_STORE") or DEFAULT_STORE_DIR,
            SecretStr(env.get("SKINGENBENCH_AUTH_TOKEN", "")),
            ClientTls.resolve(tls, env=env),
        )

    def store(self) -> ObjectStore:
        return store_from_uri(self.store_uri)

    def pools(self) -> dict[str, EndpointPool]:
        """New pools for this wiring (DNS names are resolved now, and again as the run goes: endpoints.py);
        ``pools_for`` shares them."""
        token = self.auth_token.get_secret_value()
        return {
            stage: EndpointPool.from_spec(stage, ",".join(targets), token=token, tls=self.tls)
            for stage, targets in self.endpoints.items()
        }


def split_targets(spec: str) -> tuple[str, ...]:
    return tuple(filter(None, (part.strip() for part in spec.split(","))))


@dataclass
class _Shared:
    pools: dict[str, EndpointPool]
    runs: int = 0


_LOCK = threading.Lock()
_SHARED: dict[Wiring, _Shared] = {}


def _shared(wiring: Wiring) -> _Shared:
    shared = _SHARED.get(wiring)
    if shared is None:
        shared = _SHARED[wiring] = _Shared(wiring.pools())
    return shared


def pools_for(wiring: Wiring) -> dict[str, EndpointPool]:
    """The pools every task of a run with this wiring shares (built on first use)."""
    with _LOCK:
        return _shared(wiring).pools


@contextlib.contextmanager
def open_pools(wiring: Wiring) -> Iterator[dict[str, EndpointPool]]:
    """The pools of a wiring for the length of a run; closed when the last run using them ends, so the
    next run resolves its DNS names again."""
    with _LOCK:
        shared = _shared(wiring)
        shared.runs += 1
    try:
        yield shared.pools
    finally:
        with _LOCK:
            shared.runs -= 1
            last = shared.runs == 0 and _SHARED.get(wiring) is shared
            if last:
                del _SHARED[wiring]
        if last:
            for pool in shared.pools.values():
                pool.close()
