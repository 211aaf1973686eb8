"""Client side of the runtime: channels with auth, TLS and message limits, health checks, job watching.

The flow and the CLI use these; a user's own tool can too, or call the services from any language
with the .proto files. A channel is secure when a CA bundle is given (``tls=ClientTls(ca=...)``) or
set in ``SKINGENBENCH_TLS_CA`` (tls.py lists the settings, mutual TLS included); the token and the
TLS settings default to the environment, and an explicit argument wins.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from skingenbench.services.platform.server import grpc_options
from skingenbench.services.platform.status import ERROR_METADATA_KEY
from skingenbench.services.platform.tls import ClientTls, secure_or_insecure_channel

from skingenbench.api.v1 import common_pb2, common_pb2_grpc

# Where a watch ends. INTERRUPTED is final for the watcher only: the server stopped before the job ended,
# and its next start resumes the job (submitting the same request again then finds it, by its id).
FINAL = {
    common_pb2.JOB_STATE_SUCCEEDED,
    common_pb2.JOB_STATE_FAILED,
    common_pb2.JOB_STATE_CANCELLED,
    common_pb2.JOB_STATE_INTERRUPTED,
}
INTERRUPTED_HINT = (
    "the service stopped before the job ended; it resumes from its last checkpoint when the service "
    "starts again: submit the same request again (or watch the same job id) to follow it there"
)


class _BearerToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Adds ``authorization: Bearer <token>`` to every call, over TLS or not (gRPC's call credentials
    refuse insecure channels; loopback and in-cluster use still need the token)."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def _details(self, details):
        metadata = list(details.metadata or []) + [self._header]
        return (
            details._replace(metadata=metadata)
            if hasattr(details, "_replace")
            else _Details(details, metadata)
        )

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)


class _Details(grpc.ClientCallDetails):
    def __init__(self, base, metadata):
        self.method = base.method
        self.timeout = base.timeout
        self.metadata = metadata
        self.credentials = base.credentials
        self.wait_for_ready = getattr(base, "wait_for_ready", None)
        self.compression = getattr(base, "compression", None)


def open_channel(
    target: str, token: str | None = None, max_message_mb: int = 64, tls: ClientTls | None = None
) -> grpc.Channel:
    """A channel with the token; secure when ``tls`` (default: the environment's) has a CA bundle.

    ``token=None`` and ``tls=None`` read ``SKINGENBENCH_AUTH_TOKEN`` and ``SKINGENBENCH_TLS_*``; pass
    ``""`` / ``ClientTls()`` for none. Bad TLS settings raise TlsConfigError before connecting."""
    token = os.environ.get("SKINGENBENCH_AUTH_TOKEN", "") if token is None else token
    channel = secure_or_insecure_channel(target, ClientTls.resolve(tls), grpc_options(max_message_mb))
    if token:
        channel = grpc.intercept_channel(channel, _BearerToken(token))
    return channel


def health_status(
    target: str, service: str = "", timeout_s: float = 2.0, tls: ClientTls | None = None
) -> str:
    """``SERVING``, ``NOT_SERVING``, ``UNKNOWN`` or ``UNREACHABLE`` (grpc.health.v1 Check; a failed TLS
    handshake is UNREACHABLE). ``tls=None``: the environment's TLS settings, as ``open_channel``."""
    with secure_or_insecure_channel(target, ClientTls.resolve(tls)) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return "UNKNOWN"
            return "UNREACHABLE"
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def error_detail(exc: grpc.RpcError) -> common_pb2.ErrorDetail | None:
    """The ErrorDetail a SkinGenBench server attached to a failed call, if any."""
    for key, value in exc.trailing_metadata() or ():
        if key == ERROR_METADATA_KEY:
            return common_pb2.ErrorDetail.FromString(value)
    return None


def watch_job(
    channel: grpc.Channel,
    job_id: str,
    on_event: Callable[[common_pb2.ProgressEvent], None] | None = None,
    timeout_s: float | None = None,
) -> common_pb2.Job:
    """Follow a job's progress stream to its end and return the job as it ended.

    The state is one of ``FINAL``; ``JOB_STATE_INTERRUPTED`` means the server shut down first and the job
    resumes on its next start (``is_interrupted``, ``describe_end``). When the server has already gone
    by the time the job is asked for, the interrupted job is answered from its last event."""
    jobs = common_pb2_grpc.JobsStub(channel)
    last: common_pb2.ProgressEvent | None = None
    for event in jobs.WatchJob(common_pb2.WatchJobRequest(job_id=job_id), timeout=timeout_s):
        last = event
        if on_event is not None:
            on_event(event)
    try:
        return jobs.GetJob(common_pb2.GetJobRequest(job_id=job_id))
    except grpc.RpcError as exc:
        if last is None or last.state != common_pb2.JOB_STATE_INTERRUPTED:
            raise
        if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
            raise
        return common_pb2.Job(job_id=job_id, state=common_pb2.JOB_STATE_INTERRUPTED, last_progress=last)


def is_interrupted(job: common_pb2.Job) -> bool:
    """The job's server stopped before it ended: it resumes there, nothing needs to be run again by hand."""
    return job.state == common_pb2.JOB_STATE_INTERRUPTED


def describe_end(job: common_pb2.Job) -> str:
    """One line on how a watched job ended, for logs and the CLI: state, then the error or the last
    message, and for an interrupted job what happens next."""
    state = common_pb2.JobState.Name(job.state).removeprefix("JOB_STATE_")
    what = f"{job.kind} job {job.job_id}" if job.kind else f"job {job.job_id}"
    if is_interrupted(job):
        return f"{what} INTERRUPTED: {INTERRUPTED_HINT}"
    detail = f"{job.error.code}: {job.error.message}" if job.error.code else job.last_progress.message
    hint = f" (hint: {job.error.hint})" if job.error.hint else ""
    return f"{what} {state}" + (f": {detail}{hint}" if detail else "")


def iter_events(channel: grpc.Channel, job_id: str, after: int = 0) -> Iterator[common_pb2.ProgressEvent]:
    jobs = common_pb2_grpc.JobsStub(channel)
    yield from jobs.WatchJob(common_pb2.WatchJobRequest(job_id=job_id, after_sequence=after))
