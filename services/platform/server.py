"""The service runtime: one bootstrap for every stage's gRPC server.

It wires what all services share — the object store, the job runner, grpc.health.v1 per service
name, server reflection, raised message limits, the auth/logging/error interceptors — and leaves
one thing to each stage: a ``setup(ctx)`` function in ``services/<stage>/service.py`` that adds its
servicer and job handlers. SIGTERM drains within one budget, ``SKINGENBENCH_SHUTDOWN_GRACE_S``: health turns
NOT_SERVING, queued jobs and running jobs that checkpointed end as INTERRUPTED for their watchers (they
resume on the next start), a job that does not stop in time is abandoned to that same next start, and
in-flight RPCs get what is left; the process then exits, inside the budget (docs/shutdown.md).
Health also follows the store: NOT_SERVING while it does not answer, probed in the background
(``readiness.py``).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from skingenbench.services.core.errors import FailedPrecondition
from skingenbench.services.platform.interceptors import (
    AuthInterceptor,
    ErrorMappingInterceptor,
    LoggingInterceptor,
)
from skingenbench.services.platform.jobs import JobRunner
from skingenbench.services.platform.jobs_service import JobsServicer
from skingenbench.services.platform.readiness import StoreReadiness
from skingenbench.services.platform.runtime_dirs import prepare_runtime_dirs
from skingenbench.services.platform.settings import ServiceSettings, host_port
from skingenbench.services.platform.store import ObjectStore

from skingenbench.api.v1 import common_pb2, common_pb2_grpc

log = logging.getLogger(__name__)
JOBS_SERVICE = common_pb2.DESCRIPTOR.services_by_name["Jobs"].full_name


@dataclass
class ServiceContext:
    """What a stage's ``setup`` gets to build its servicer from."""

    settings: ServiceSettings
    store: ObjectStore
    runner: JobRunner
    server: grpc.Server


@dataclass
class RunningService:
    settings: ServiceSettings
    server: grpc.Server
    health: health.HealthServicer
    runner: JobRunner
    store: ObjectStore
    port: int
    health_server: grpc.Server | None = None  # the plaintext health-only listener (settings.health_port)
    readiness: StoreReadiness | None = None  # health follows the store (readiness.py)
    _stopped: list[str] | None = None  # set by the first ``stop``: what it abandoned

    @property
    def target(self) -> str:
        return host_port(self.settings.host, self.port)

    def stop(self, grace_s: float | None = None) -> list[str]:
        """Graceful stop within one budget: refuse new work, let jobs checkpoint, drain in-flight calls.

        The budget (``grace_s``, default the settings' ``shutdown_grace_s``) is one deadline, not one per
        phase: jobs get it less ``shutdown_calls_s`` (at most half of it) to checkpoint and stop, then the
        calls still in flight get what is left and are cancelled at the deadline. Watch streams end as
        their jobs reach INTERRUPTED, so they do not hold the drain. Returns the ids of jobs abandoned
        because they did not stop in time (they resume or run again on the next start).
        """
        if self._stopped is not None:
            return self._stopped  # stopped already (a signal and a context manager may both stop it)
        grace = max(0.0, self.settings.shutdown_grace_s if grace_s is None else grace_s)
        deadline = time.monotonic() + grace
        calls_s = min(max(0.0, self.settings.shutdown_calls_s), grace / 2)
        self.health.enter_graceful_shutdown()  # NOT_SERVING from now on; later store probes are ignored
        if self.readiness is not None:
            self.readiness.stop(timeout_s=0.0)  # a probe in progress must not spend the budget
        abandoned = self.runner.shutdown(grace - calls_s)
        remaining = max(0.0, deadline - time.monotonic())
        # grpc: stop accepting calls now, cancel those still running after ``remaining`` seconds.
        self.server.stop(remaining).wait(remaining + 1.0)
        if self.health_server is not None:
            self.health_server.stop(0).wait(1.0)
        self._stopped = abandoned
        return abandoned


def grpc_options(max_message_mb: int) -> list[tuple[str, int]]:
    limit = max_message_mb * 1024 * 1024
    return [
        ("grpc.max_send_message_length", limit),
        ("grpc.max_receive_message_length", limit),
        ("grpc.so_reuseport", 0),  # two servers must never share a port by accident
    ]


StageSetup = Callable[[ServiceContext], None]


def start_server(
    stage: str,
    setup: StageSetup,
    settings: ServiceSettings | None = None,
    store: ObjectStore | None = None,
    extra_setup: StageSetup | None = None,
) -> RunningService:
    """Build and start a stage's server around its ``setup`` (which adds the servicer and job kinds).

    The runtime knows no stage: ``skingenbench.services.stages`` maps a stage name to its setup.
    ``extra_setup`` lets embedders (and tests) add job kinds.
    """
    settings = settings or ServiceSettings.from_env(stage)
    credentials = settings.tls.credentials()  # half-configured TLS is refused before anything starts
    if settings.require_token and not settings.auth_token:
        raise FailedPrecondition(
            "SKINGENBENCH_REQUIRE_TOKEN is set but SKINGENBENCH_AUTH_TOKEN is empty",
            hint="give the services a bearer token (deploy/k8s: the skingenbench-store Secret)",
        )
    # Before anything serves: a temp dir, the caches and a folder store that can be written (runtime_dirs.py).
    store = prepare_runtime_dirs(settings.store_uri or None, store)
    runner = JobRunner(store, settings.service_name, settings.job_slots)
    interceptors: list[grpc.ServerInterceptor] = []
    if settings.auth_token:
        interceptors.append(AuthInterceptor(settings.auth_token))
    interceptors += [LoggingInterceptor(), ErrorMappingInterceptor()]
    server = grpc.server(
        ThreadPoolExecutor(max_workers=settings.rpc_workers, thread_name_prefix=f"rpc-{stage}"),
        interceptors=interceptors,
        options=grpc_options(settings.max_message_mb),
    )
    context = ServiceContext(settings, store, runner, server)
    setup(context)
    if extra_setup is not None:
        extra_setup(context)
    common_pb2_grpc.add_JobsServicer_to_server(JobsServicer(runner), server)

    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [settings.service_name, JOBS_SERVICE]
    reflection.enable_server_reflection(
        names + [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME], server
    )
    try:
        # With TLS configured the server binds a secure port only: nothing of it is reachable in clear.
        if credentials is not None:
            port = server.add_secure_port(settings.address, credentials)
        else:
            port = server.add_insecure_port(settings.address)
            if settings.host not in ("127.0.0.1", "localhost", "::1"):
                log.warning(
                    "listening on %s without TLS: tokens and images travel in clear "
                    "(set SKINGENBENCH_TLS_CERT and SKINGENBENCH_TLS_KEY)",
                    settings.address,
                )
    except RuntimeError as exc:
        raise OSError(f"cannot listen on {settings.address}: {exc} (is the port in use?)") from exc
    if port == 0:
        raise OSError(f"cannot listen on {settings.address} (is the port in use?)")
    server.start()
    try:
        health_server = _start_health_listener(settings, health_servicer) if settings.health_port else None
    except OSError:
        server.stop(0)
        raise
    # SERVING while the store answers, NOT_SERVING while it does not (gRPC health checking protocol).
    readiness = StoreReadiness(store, health_servicer, ["", *names], settings.store_probe_interval_s)
    readiness.start()
    if settings.resume_jobs:
        resumed = runner.resume_interrupted()
        if resumed:
            log.info("resumed %d interrupted job(s)", len(resumed))
    log.info(
        "%s serving on %s:%d (%s), store %s",
        settings.service_name,
        settings.host,
        port,
        "mutual TLS" if settings.tls_client_ca else "TLS" if credentials is not None else "insecure",
        store.root_uri,
    )
    return RunningService(settings, server, health_servicer, runner, store, port, health_server, readiness)


def _start_health_listener(settings: ServiceSettings, health_servicer: health.HealthServicer) -> grpc.Server:
    """A plaintext server with grpc.health.v1 only, sharing the main server's health servicer (so a drain
    shows there too): the kubelet's gRPC probe speaks no TLS. It carries no token and no data."""
    server = grpc.server(ThreadPoolExecutor(max_workers=2, thread_name_prefix="health"))
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    address = host_port(settings.host, settings.health_port)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise OSError(f"cannot listen on {address} for health: {exc} (is the port in use?)") from exc
    if port == 0:
        raise OSError(f"cannot listen on {address} for health (is the port in use?)")
    server.start()
    return server


def serve(stage: str, setup: StageSetup) -> None:
    """Run a stage's server until SIGTERM/SIGINT, then stop gracefully; a second Ctrl-C exits at once."""
    service = start_server(stage, setup)
    print(f"{service.settings.service_name} listening on {service.target}", flush=True)
    stop = threading.Event()

    def on_signal(signum, _frame) -> None:
        # Ctrl-C during the drain: a person who does not want to wait. A repeated SIGTERM (an orchestrator
        # re-sending it) does not cut the drain short.
        if stop.is_set() and signum == signal.SIGINT:
            os.write(2, b"second SIGINT: exiting without the drain\n")
            os._exit(128 + signum)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    stop.wait()
    grace = service.settings.shutdown_grace_s
    log.info("stopping %s (shutdown grace %.0f s)", service.settings.service_name, grace)
    began = time.monotonic()
    abandoned = service.stop()
    log.info(
        "%s stopped in %.1f s (grace %.0f s)%s",
        service.settings.service_name,
        time.monotonic() - began,
        grace,
        f"; {len(abandoned)} job(s) abandoned, they resume on the next start" if abandoned else "",
    )
    if service.runner.busy:
        # A job thread that ignores shutdown would hold the interpreter's exit (concurrent.futures joins
        # its workers at exit): its state is recorded, so the process leaves without it.
        logging.shutdown()
        os._exit(0)
