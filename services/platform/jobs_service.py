"""The ``skingenbench.v1.Jobs`` servicer every server registers, and record <-> proto conversion."""

from __future__ import annotations

import json
from typing import Any

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from skingenbench.services.core.errors import InvalidArgument
from skingenbench.services.platform.jobs import JobRecord, JobRunner

from skingenbench.api.v1 import common_pb2, common_pb2_grpc


def _timestamp(iso: str) -> Timestamp | None:
    if not iso:
        return None
    stamp = Timestamp()
    stamp.FromJsonString(iso.replace("+00:00", "Z"))
    return stamp


def event_to_proto(event: dict[str, Any]) -> common_pb2.ProgressEvent:
    if not event:
        return common_pb2.ProgressEvent()
    proto = common_pb2.ProgressEvent(
        job_id=event["job_id"],
        sequence=event["sequence"],
        state=common_pb2.JobState.Value(f"JOB_STATE_{event['state']}"),
        step=event["step"],
        total=event["total"],
        metrics=event.get("metrics", {}),
        message=event.get("message", ""),
    )
    stamp = _timestamp(event.get("time", ""))
    if stamp is not None:
        proto.time.CopyFrom(stamp)
    return proto


def record_to_proto(record: JobRecord) -> common_pb2.Job:
    job = common_pb2.Job(
        job_id=record.job_id,
        kind=record.kind,
        service=record.service,
        state=common_pb2.JobState.Value(f"JOB_STATE_{record.state}"),
        last_progress=event_to_proto(record.last_progress),
        outputs=[common_pb2.NamedRef(**o) for o in record.outputs],
        result_json=json.dumps(record.result, sort_keys=True) if record.result else "",
        request_json=json.dumps(record.request, sort_keys=True),
        reused=record.reused,
    )
    if record.error:
        job.error.CopyFrom(common_pb2.ErrorDetail(**record.error))
    for name in ("created", "started", "finished"):
        stamp = _timestamp(getattr(record, name))
        if stamp is not None:
            getattr(job, name).CopyFrom(stamp)
    return job


# Job ids are what Start* returned: 24 hex digits (JobRunner.job_id_for). Anything else is refused here,
# naming the field, before it becomes part of a store key (whose own errors would talk of object keys).
MAX_JOB_ID_LENGTH = 128
_JOB_ID_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def checked_job_id(job_id: str) -> str:
    """A job id that can name a job record; INVALID_ARGUMENT naming ``job_id`` otherwise."""
    if not job_id:
        raise InvalidArgument("job_id is required", hint="job ids are returned by the Start* calls")
    if len(job_id) > MAX_JOB_ID_LENGTH or not set(job_id) <= _JOB_ID_CHARACTERS or job_id.strip(".") == "":
        raise InvalidArgument(
            f"no job {job_id[:80]!r}: job_id is not a job id (letters, digits, '-', '_', '.'; "
            f"at most {MAX_JOB_ID_LENGTH})",
            hint="job ids are returned by the Start* calls",
            field="job_id",
        )
    return job_id


class JobsServicer(common_pb2_grpc.JobsServicer):
    def __init__(self, runner: JobRunner) -> None:
        self.runner = runner

    def GetJob(self, request, context):
        return record_to_proto(self.runner.get(checked_job_id(request.job_id)))

    def WatchJob(self, request, context):
        job_id = checked_job_id(request.job_id)
        for event in self.runner.watch(job_id, request.after_sequence, is_active=context.is_active):
            yield event_to_proto(event)

    def CancelJob(self, request, context):
        return record_to_proto(self.runner.cancel(checked_job_id(request.job_id)))

    def ListJobs(self, request, context):
        state = ""
        if request.state:
            state = common_pb2.JobState.Name(request.state).removeprefix("JOB_STATE_")
        records = self.runner.list(request.kind, state, request.limit or 100)
        return common_pb2.ListJobsResponse(jobs=[record_to_proto(r) for r in records])


def job_reply(runner: JobRunner, kind: str, request: Message) -> common_pb2.Job:
    """Start (or find) a job for a servicer's ``Start*`` call and answer with the Job message."""
    return record_to_proto(runner.submit(kind, request))
