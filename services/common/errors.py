"""Typed errors that carry their gRPC status.

Cores raise these (or plain ``ValueError``/``FileNotFoundError``); the service runtime maps every
exception to a gRPC status in one place (``services.common.server.status_for_exception``), so a
servicer never builds a status by hand and a bad request never takes the server down.
"""

from __future__ import annotations

import grpc


class SkinGenBenchError(Exception):
    """Base class: an error with a gRPC status and an optional hint a person can act on."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str, *, hint: str = "", **context: object) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.context = {k: str(v) for k, v in context.items()}

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class InvalidArgument(SkinGenBenchError, ValueError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(SkinGenBenchError, LookupError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(SkinGenBenchError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(SkinGenBenchError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(SkinGenBenchError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(SkinGenBenchError):
    code = grpc.StatusCode.UNAVAILABLE


class Unauthenticated(SkinGenBenchError):
    code = grpc.StatusCode.UNAUTHENTICATED


class Cancelled(SkinGenBenchError):
    code = grpc.StatusCode.CANCELLED


class DataIntegrityError(SkinGenBenchError):
    """Stored bytes do not match the hash a manifest promised: never silently accepted."""

    code = grpc.StatusCode.DATA_LOSS


class NotImplementedYet(SkinGenBenchError):
    code = grpc.StatusCode.UNIMPLEMENTED
