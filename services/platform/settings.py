"""Runtime settings of a service, from the environment (one place, so the README can list them)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from skingenbench.services.platform.tls import ServerTls

# Stage name -> (gRPC service name, default port). The local stack and the flow use the same table.
SERVICES: dict[str, tuple[str, int]] = {
    "preprocessing": ("skingenbench.v1.Preprocessing", 50051),
    "generation": ("skingenbench.v1.Generation", 50052),
    "evaluation": ("skingenbench.v1.Evaluation", 50053),
    "classification": ("skingenbench.v1.Classification", 50054),
}


def host_port(host: str, port: int) -> str:
    """``host:port`` as gRPC targets and bind addresses spell it: a bare IPv6 host is bracketed (RFC 3986
    section 3.2.2), so ``::1`` becomes ``[::1]:50051``; an already bracketed one is kept."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def _float(raw: str, name: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not value >= 0:  # also refuses NaN
        raise ValueError(f"{name} must be >= 0, got {raw!r}")
    return value


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None


@dataclass
class ServiceSettings:
    stage: str
    host: str = "127.0.0.1"
    port: int = 0
    store_uri: str = ""
    auth_token: str = ""
    max_message_mb: int = 64
    rpc_workers: int = 16
    job_slots: int = 1
    # One shutdown budget for jobs and calls together (server.py, docs/shutdown.md): jobs get it less
    # ``shutdown_calls_s`` to checkpoint and stop, in-flight calls the rest; the process exits inside it.
    shutdown_grace_s: float = 30.0
    shutdown_calls_s: float = 5.0
    resume_jobs: bool = True
    # TLS (paths of PEM files; tls.py): a certificate and its key turn TLS on, a client CA requires
    # client certificates (mutual TLS). With TLS the server binds a secure port only.
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    # A second, plaintext listener carrying only grpc.health.v1 (0: none), for probes that cannot
    # speak TLS (the kubelet's gRPC probe); it answers health and nothing else.
    health_port: int = 0
    # Refuse to start without an auth token (deployments set it, so a missing Secret is loud).
    require_token: bool = False
    # How often the store is probed for health (readiness.py): NOT_SERVING while it does not answer.
    store_probe_interval_s: float = 5.0
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def service_name(self) -> str:
        return SERVICES[self.stage][0]

    @property
    def address(self) -> str:
        return host_port(self.host, self.port)

    @property
    def tls(self) -> ServerTls:
        return ServerTls(self.tls_cert, self.tls_key, self.tls_client_ca)

    @classmethod
    def from_env(cls, stage: str, env: dict[str, str] | None = None) -> ServiceSettings:
        """``SKINGENBENCH_<STAGE>_PORT`` etc. override the shared ``SKINGENBENCH_*`` values."""
        if stage not in SERVICES:
            raise ValueError(f"unknown stage {stage!r}; expected one of {', '.join(SERVICES)}")
        env = dict(os.environ if env is None else env)
        upper = stage.upper()

        def get(name: str, default: str = "") -> str:
            return env.get(f"SKINGENBENCH_{upper}_{name}") or env.get(f"SKINGENBENCH_{name}") or default

        return cls(
            stage=stage,
            host=get("HOST", "127.0.0.1"),
            port=_int(env, f"SKINGENBENCH_{upper}_PORT", SERVICES[stage][1]),
            store_uri=env.get("SKINGENBENCH_STORE", ""),
            auth_token=env.get("SKINGENBENCH_AUTH_TOKEN", ""),
            max_message_mb=int(get("MAX_MESSAGE_MB", "64")),
            rpc_workers=int(get("RPC_WORKERS", "16")),
            job_slots=int(get("JOB_SLOTS", "1")),
            shutdown_grace_s=_float(get("SHUTDOWN_GRACE_S", "30"), "SKINGENBENCH_SHUTDOWN_GRACE_S"),
            shutdown_calls_s=_float(get("SHUTDOWN_CALLS_S", "5"), "SKINGENBENCH_SHUTDOWN_CALLS_S"),
            resume_jobs=get("RESUME_JOBS", "1").lower() not in ("0", "false", "no"),
            require_token=get("REQUIRE_TOKEN", "0").lower() in ("1", "true", "yes"),
            store_probe_interval_s=float(get("STORE_PROBE_INTERVAL_S", "5")),
            tls_cert=get("TLS_CERT"),
            tls_key=get("TLS_KEY"),
            tls_client_ca=get("TLS_CLIENT_CA"),
            health_port=_int(
                env, f"SKINGENBENCH_{upper}_HEALTH_PORT", _int(env, "SKINGENBENCH_HEALTH_PORT", 0)
            ),
        )
