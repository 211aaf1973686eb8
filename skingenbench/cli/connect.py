"""One running service as the command line sees it: its channel, its stub, and calls whose failures
are user errors (``errors.service_error``) instead of raw ``grpc.RpcError``.

Every stage command (``train``, ``evaluate``, ``classify``, ``jobs``) reaches its service at
``--target``, else where ``skingenbench up`` put it (:func:`skingenbench.cli.stack.target_for`).
"""

from __future__ import annotations

import argparse
from typing import Any

from skingenbench.cli.errors import JobEnded, service_error
from skingenbench.cli.tls import add_tls_arguments, client_tls


def _stub_types() -> dict[str, type]:
    from skingenbench.api.v1 import (
        classification_pb2_grpc,
        evaluation_pb2_grpc,
        generation_pb2_grpc,
        preprocessing_pb2_grpc,
    )

    return {
        "preprocessing": preprocessing_pb2_grpc.PreprocessingStub,
        "generation": generation_pb2_grpc.GenerationStub,
        "evaluation": evaluation_pb2_grpc.EvaluationStub,
        "classification": classification_pb2_grpc.ClassificationStub,
    }


def add_connection_arguments(parser: argparse.ArgumentParser, stage: str | None) -> None:
    """``--target`` (for a one-stage command), ``--token`` and the TLS options."""
    if stage is not None:
        parser.add_argument(
            "--target",
            default="",
            help=f"host:port of the {stage} service (default: $SKINGENBENCH_{stage.upper()}_TARGET, else "
            f"127.0.0.1:$SKINGENBENCH_{stage.upper()}_PORT as `skingenbench up` uses)",
        )
    parser.add_argument("--token", default="", help="bearer token (default: $SKINGENBENCH_AUTH_TOKEN)")
    add_tls_arguments(parser)


class Service:
    """A channel to one stage's service; ``call`` and ``follow`` turn gRPC failures into user errors."""

    def __init__(self, stage: str, target: str, token: str | None = None, tls=None) -> None:
        from skingenbench.api.v1 import common_pb2_grpc
        from skingenbench.services.platform.client import open_channel

        self.stage, self.target = stage, target
        self.channel = open_channel(target, token or None, tls=tls)
        self.stub = _stub_types()[stage](self.channel)
        self.jobs = common_pb2_grpc.JobsStub(self.channel)

    @classmethod
    def from_args(cls, stage: str, args: argparse.Namespace, target: str = "") -> Service:
        from skingenbench.cli.stack import target_for

        chosen = target or getattr(args, "target", "") or target_for(stage)
        # Callers without TLS options (``status``) get the environment's settings.
        tls = client_tls(args) if hasattr(args, "tls_ca") else None
        return cls(stage, chosen, getattr(args, "token", "") or None, tls)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, request: Any, timeout_s: float | None = 30.0, stub: Any = None) -> Any:
        import grpc

        try:
            return getattr(stub or self.stub, method)(request, timeout=timeout_s)
        except grpc.RpcError as exc:
            raise service_error(self.stage, self.target, exc) from exc

    def start_and_follow(self, method: str, request: Any, label: str, plain: bool | None = None):
        """Start a job, show its progress until it ends, and return the final Job (JobEnded if it did
        not succeed). Ctrl-C leaves the job running on the service and says how to follow or stop it."""
        job = self.call(method, request)
        return self.follow(job, label, plain)

    def follow(self, job, label: str, plain: bool | None = None):
        import grpc

        from skingenbench.api.v1 import common_pb2
        from skingenbench.cli.progress import JobProgress
        from skingenbench.services.platform.client import watch_job

        progress = JobProgress(label, plain=plain)
        if job.reused:
            progress.note(f"{label}: an identical request already ran or is running (job {job.job_id})")
        try:
            final = watch_job(self.channel, job.job_id, progress.update)
        except grpc.RpcError as exc:
            raise service_error(self.stage, self.target, exc) from exc
        except KeyboardInterrupt:
            progress.close()
            progress.note(
                f"job {job.job_id} keeps running on the {self.stage} service; follow it with "
                f"`skingenbench jobs watch {job.job_id}` or stop it with `skingenbench jobs cancel {job.job_id}`"
            )
            raise
        progress.close()
        if final.state != common_pb2.JOB_STATE_SUCCEEDED:
            raise JobEnded(final)
        return final


def outputs(job) -> dict[str, Any]:
    """A job's named outputs: name -> {"uri", "sha256"}."""
    return {o.name: {"uri": o.uri, "sha256": o.sha256} for o in job.outputs}


def job_summary(job) -> dict[str, Any]:
    """What ``--json`` prints for a finished job: id, kind, state, outputs and its result."""
    import json

    from skingenbench.api.v1 import common_pb2

    return {
        "job_id": job.job_id,
        "kind": job.kind,
        "state": common_pb2.JobState.Name(job.state).removeprefix("JOB_STATE_"),
        "reused": job.reused,
        "outputs": outputs(job),
        "result": json.loads(job.result_json or "{}"),
    }
