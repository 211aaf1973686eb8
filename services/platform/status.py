"""The one place where exceptions become gRPC statuses (DESIGN.md, rule 6: errors are answers).

Typed errors carry their own status. A few standard exceptions that cores raise for bad input are
mapped by type; anything else is INTERNAL, logged with its traceback, and still answered with a
message, so the server keeps serving.
"""

from __future__ import annotations

from typing import Any

import grpc
from skingenbench.services.core.errors import SkinGenBenchError

ERROR_METADATA_KEY = "skingenbench-error-bin"

_BY_TYPE: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (FileNotFoundError, grpc.StatusCode.NOT_FOUND),
    (KeyError, grpc.StatusCode.NOT_FOUND),
    (PermissionError, grpc.StatusCode.PERMISSION_DENIED),
    (MemoryError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    # Input nested deeper than the interpreter's recursion limit (JSON, a config): the input is at fault.
    # A backstop: request JSON and manifests are bounded before parsing (core/json_limits.py).
    (RecursionError, grpc.StatusCode.INVALID_ARGUMENT),
    (NotImplementedError, grpc.StatusCode.UNIMPLEMENTED),
    (TimeoutError, grpc.StatusCode.DEADLINE_EXCEEDED),
    (ConnectionError, grpc.StatusCode.UNAVAILABLE),
    (ValueError, grpc.StatusCode.INVALID_ARGUMENT),
    (TypeError, grpc.StatusCode.INVALID_ARGUMENT),
)


def status_for_exception(exc: BaseException) -> grpc.StatusCode:
    if isinstance(exc, SkinGenBenchError):
        return grpc.StatusCode[exc.code]
    # torch.cuda.OutOfMemoryError is a RuntimeError; matched by name so this module needs no torch.
    if type(exc).__name__ == "OutOfMemoryError":
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    for exc_type, code in _BY_TYPE:
        if isinstance(exc, exc_type):
            return code
    return grpc.StatusCode.INTERNAL


def error_detail_dict(exc: BaseException) -> dict[str, Any]:
    """A JSON-friendly ErrorDetail: status name, message, hint, context."""
    code = status_for_exception(exc)
    if isinstance(exc, SkinGenBenchError):
        message, hint, context = exc.message, exc.hint, dict(exc.context)
    elif isinstance(exc, KeyError):
        message, hint, context = f"not found: {exc.args[0] if exc.args else exc}", "", {}
    elif isinstance(exc, RecursionError):
        message = "the input is nested too deeply to process (recursion limit reached)"
        hint, context = "flatten the nested JSON or config in the request", {}
    else:
        message, hint, context = str(exc) or type(exc).__name__, "", {}
    if code == grpc.StatusCode.INTERNAL:
        message = f"internal error ({type(exc).__name__}): {message}"
        hint = hint or "this is a bug or an environment problem; the server log has the traceback"
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and type(exc).__name__ == "OutOfMemoryError":
        hint = hint or "lower the batch size or use a smaller profile"
    return {"code": code.name, "message": message, "hint": hint, "context": context}
