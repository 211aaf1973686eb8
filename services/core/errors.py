"""Typed errors that name the gRPC status they become.

Cores raise these (or plain ``ValueError``/``FileNotFoundError``); the platform maps every exception
to a gRPC status in one place (``skingenbench.services.platform.status.status_for_exception``), so a
servicer never builds a status by hand and a bad request never takes the server down. The status is
held by its name (``"INVALID_ARGUMENT"``), so cores stay free of grpc.
"""

from __future__ import annotations


class SkinGenBenchError(Exception):
    """Base class: an error with a gRPC status and an optional hint a person can act on."""

    code: str = "INTERNAL"  # a grpc.StatusCode name

    def __init__(self, message: str, *, hint: str = "", **context: object) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.context = {k: str(v) for k, v in context.items()}

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class InvalidArgument(SkinGenBenchError, ValueError):
    code = "INVALID_ARGUMENT"


class NotFound(SkinGenBenchError, LookupError):
    code = "NOT_FOUND"


class AlreadyExists(SkinGenBenchError):
    code = "ALREADY_EXISTS"


class FailedPrecondition(SkinGenBenchError):
    code = "FAILED_PRECONDITION"


class ResourceExhausted(SkinGenBenchError):
    code = "RESOURCE_EXHAUSTED"


class Unavailable(SkinGenBenchError):
    code = "UNAVAILABLE"


class Unauthenticated(SkinGenBenchError):
    code = "UNAUTHENTICATED"


class Cancelled(SkinGenBenchError):
    code = "CANCELLED"


class DataIntegrityError(SkinGenBenchError):
    """Stored bytes do not match the hash a manifest promised: never silently accepted."""

    code = "DATA_LOSS"


class NotImplementedYet(SkinGenBenchError):
    code = "UNIMPLEMENTED"
