"""Run one service job from the flow: start it, follow its progress stream, return its outputs.

Flows never import torch: they only build requests, call ``Start*`` RPCs and watch jobs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from skingenbench.flows.endpoints import Endpoint, EndpointPool
from skingenbench.services.platform.client import watch_job

from skingenbench.api.v1 import common_pb2


class JobFailed(RuntimeError):
    def __init__(self, job: common_pb2.Job) -> None:
        state = common_pb2.JobState.Name(job.state).removeprefix("JOB_STATE_")
        detail = f"{job.error.code}: {job.error.message}" if job.error.code else job.last_progress.message
        hint = f" (hint: {job.error.hint})" if job.error.hint else ""
        super().__init__(f"{job.kind} job {job.job_id} {state}: {detail}{hint}")
        self.job = job


@dataclass
class JobOutcome:
    job_id: str
    kind: str
    outputs: dict[str, common_pb2.NamedRef]
    result: dict[str, Any]
    reused: bool
    endpoint: str = ""
    events: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def uri(self, name: str) -> str:
        return self.outputs[name].uri


class JobInterrupted(grpc.RpcError):
    """The job's server stopped it to shut down ("interrupted, will resume"): retried like a lost
    endpoint (UNAVAILABLE), on another endpoint when there is one; the job resumes from its checkpoint."""

    def __init__(self, job: common_pb2.Job, endpoint: str) -> None:
        super().__init__(f"{job.kind} job {job.job_id} was interrupted on {endpoint} (its server shut down)")
        self._details = str(self)

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return self._details


# JOB_STATE_INTERRUPTED exists once the platform reports interrupted jobs as final; None before that.
_INTERRUPTED = dict(common_pb2.JobState.items()).get("JOB_STATE_INTERRUPTED")


def run_job(
    pool: EndpointPool,
    stub_class: type,
    method: str,
    request: Any,
    on_event: Callable[[common_pb2.ProgressEvent], None] | None = None,
    timeout_s: float | None = None,
    on_start: Callable[[common_pb2.Job, str], None] | None = None,
) -> JobOutcome:
    """Start a job on a free endpoint of the pool and watch it to its end, retrying if it is lost.
    ``on_start(job, endpoint)`` hears each (re)start: the job as Start returned it (its state QUEUED or
    RUNNING) and the endpoint's target."""
    counter = {"events": 0, "endpoint": ""}

    def call(channel: grpc.Channel, endpoint: Endpoint) -> common_pb2.Job:
        job = getattr(stub_class(channel), method)(request, timeout=60)
        counter["endpoint"] = endpoint.target
        if on_start is not None:
            on_start(job, endpoint.target)

        def count(event: common_pb2.ProgressEvent) -> None:
            counter["events"] += 1
            if on_event is not None:
                on_event(event)

        final = watch_job(channel, job.job_id, on_event=count, timeout_s=timeout_s)
        if _INTERRUPTED is not None and final.state == _INTERRUPTED:
            raise JobInterrupted(final, endpoint.target)
        final.reused = job.reused
        return final

    final = pool.run_on(call, what=f"{stub_class.__name__}.{method}")
    if final.state != common_pb2.JOB_STATE_SUCCEEDED:
        raise JobFailed(final)
    return JobOutcome(
        job_id=final.job_id,
        kind=final.kind,
        outputs={o.name: o for o in final.outputs},
        result=json.loads(final.result_json) if final.result_json else {},
        reused=final.reused,
        endpoint=counter["endpoint"],
        events=counter["events"],
    )
