"""The command line's expected errors: one line ``error: … (what to do)`` and exit code 2.

A researcher who typed a wrong name, a folder where a manifest URI belongs, or who has not started the
stack needs the message and what to do next, not a traceback (``--debug`` shows it). Errors that are
not the user's (a bug, a failed job) keep their own exit codes.
"""

from __future__ import annotations

from pathlib import Path

EXIT_USAGE = 2  # argparse's code for a bad command line; every user error uses it
EXIT_JOB_FAILED = 1
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """A mistake the user can fix: ``message`` says what is wrong, ``todo`` what to do about it."""

    def __init__(self, message: str, todo: str = "") -> None:
        super().__init__(message)
        self.message, self.todo = message, todo

    def __str__(self) -> str:
        return f"{self.message} ({self.todo})" if self.todo else self.message


class JobEnded(Exception):
    """A job the command waited for ended FAILED or CANCELLED (not the user's mistake: exit 1)."""

    def __init__(self, job) -> None:
        from skingenbench.api.v1 import common_pb2

        state = common_pb2.JobState.Name(job.state).removeprefix("JOB_STATE_")
        error = f"{job.error.code}: {job.error.message}" if job.error.code else job.error.message
        hint = f" ({job.error.hint})" if job.error.hint and job.error.hint not in error else ""
        super().__init__(
            f"the {job.kind} job {job.job_id} ended {state}" + (f": {error}{hint}" if error else "")
        )
        self.job = job


def one_line(text: str) -> str:
    """Messages from services may hold newlines (a wrapped hint); the CLI prints one line."""
    return " ".join(str(text).split())


def service_error(stage: str, target: str, exc) -> UserError:
    """A failed gRPC call as a user error: an unreachable service says how to start it; a refusal
    gives the service's own message and hint (``CODE: message (hint)``)."""
    import grpc

    from skingenbench.services.platform.client import error_detail

    code = exc.code() if hasattr(exc, "code") else None
    detail = error_detail(exc) if hasattr(exc, "trailing_metadata") else None
    if detail is None and code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        # No ErrorDetail: the server never answered (not listening, TLS handshake failed, wrong host).
        return UserError(
            f"the {stage} service at {target} is not reachable",
            f"start it with `skingenbench up`, or pass --target HOST:PORT; "
            f"grpc said: {one_line(exc.details() or code.name)[:160]}",
        )
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return UserError(
            f"the {stage} service at {target} refused the call: {one_line(exc.details())}",
            "pass --token or set SKINGENBENCH_AUTH_TOKEN",
        )
    message = one_line(detail.message if detail is not None else exc.details() or "")
    hint = one_line(detail.hint) if detail is not None and detail.hint else ""
    name = code.name if code is not None else "ERROR"
    return UserError(f"{stage} service: {name}: {message}", hint if hint and hint not in message else "")


def require_manifest_uri(text: str, what: str = "manifest") -> str:
    """A manifest reference (``file://…/manifest.json``, ``s3://…`` or a store key) — never a local folder
    or image file, which is the common mistake and would otherwise meet an object-key error."""
    if "://" not in text:
        path = Path(text).expanduser()
        if path.is_dir():
            raise UserError(
                f"expected a {what} URI (file:///…/manifest.json, s3://… or a store key), got a folder "
                f"{text!r}",
                f"import it first with `skingenbench data import-ham10000 {text}` (HAM10000 layout) or "
                f"`skingenbench data import-folder {text} --label MEL` (plain images) and pass the "
                "manifest: URI it prints",
            )
        if path.is_absolute():
            if path.is_file() and path.name.endswith(".json"):
                return path.resolve().as_uri()  # a manifest file in a folder store, named by its path
            raise UserError(
                f"expected a {what} URI (file:///…/manifest.json, s3://… or a store key), got the path "
                f"{text!r}",
                "pass the manifest: line that `skingenbench data import-…` or a job printed",
            )
    return text
