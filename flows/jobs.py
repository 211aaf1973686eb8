"""Run one service job from the flow: start it, follow its progress stream, return its outputs.

Flows never import torch: they only build requests, call ``Start*`` RPCs and watch jobs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from skingenbench.flows.endpoints import EndpointPool
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


def run_job(
    pool: EndpointPool,
    stub_class: type,
    method: str,
    request: Any,
    on_event: Callable[[common_pb2.ProgressEvent], None] | None = None,
    timeout_s: float | None = None,
) -> JobOutcome:
    """Start a job on a free endpoint of the pool and watch it to its end, retrying if it is lost."""
    counter = {"events": 0, "endpoint": ""}

    def call(channel: grpc.Channel) -> common_pb2.Job:
        job = getattr(stub_class(channel), method)(request, timeout=60)

        def count(event: common_pb2.ProgressEvent) -> None:
            counter["events"] += 1
            if on_event is not None:
                on_event(event)

        final = watch_job(channel, job.job_id, on_event=count, timeout_s=timeout_s)
        final.reused = job.reused
        return final

    final = pool.run(call, what=f"{stub_class.__name__}.{method}")
    if final.state != common_pb2.JOB_STATE_SUCCEEDED:
        raise JobFailed(final)
    return JobOutcome(
        job_id=final.job_id,
        kind=final.kind,
        outputs={o.name: o for o in final.outputs},
        result=json.loads(final.result_json) if final.result_json else {},
        reused=final.reused,
        events=counter["events"],
    )
