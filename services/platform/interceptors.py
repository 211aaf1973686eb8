"""Server interceptors every service installs: authentication, request logging, error mapping.

gRPC's Python server has no per-call middleware, so each interceptor wraps the method handler's
behaviour and returns a new handler of the same shape (unary or streaming).
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable

import grpc
from skingenbench.services.platform.status import ERROR_METADATA_KEY, error_detail_dict, status_for_exception

log = logging.getLogger("skingenbench.rpc")

# Health checks stay open without a token: Kubernetes' gRPC probes cannot send one.
_PUBLIC_PREFIXES = ("/grpc.health.v1.Health/",)


def _rewrap(handler: grpc.RpcMethodHandler, wrap: Callable) -> grpc.RpcMethodHandler:
    """A copy of ``handler`` whose behaviour is ``wrap(behaviour, streaming_response)``."""
    kwargs = dict(
        request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
    )
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(wrap(handler.unary_unary, False), **kwargs)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(wrap(handler.unary_stream, True), **kwargs)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(wrap(handler.stream_unary, False), **kwargs)
    return grpc.stream_stream_rpc_method_handler(wrap(handler.stream_stream, True), **kwargs)


def _abort_with(context: grpc.ServicerContext, exc: BaseException) -> None:
    """Answer the call with the exception's status, message and an ErrorDetail in the trailers."""
    from skingenbench.api.v1 import common_pb2

    detail = error_detail_dict(exc)
    proto = common_pb2.ErrorDetail(
        code=detail["code"], message=detail["message"], hint=detail["hint"], context=detail["context"]
    )
    context.set_trailing_metadata(((ERROR_METADATA_KEY, proto.SerializeToString()),))
    text = detail["message"] + (f" (hint: {detail['hint']})" if detail["hint"] else "")
    context.abort(status_for_exception(exc), text)


class ErrorMappingInterceptor(grpc.ServerInterceptor):
    """Turns any exception a servicer raises into the right status; the server keeps serving."""

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method

        def wrap(behaviour, streaming):
            if streaming:

                def stream_behaviour(request, context):
                    try:
                        yield from behaviour(request, context)
                    except Exception as exc:
                        _log_failure(method, exc)
                        _abort_with(context, exc)

                return stream_behaviour

            def unary_behaviour(request, context):
                try:
                    return behaviour(request, context)
                except Exception as exc:
                    _log_failure(method, exc)
                    _abort_with(context, exc)

            return unary_behaviour

        return _rewrap(handler, wrap)


def _log_failure(method: str, exc: BaseException) -> None:
    code = status_for_exception(exc)
    if code == grpc.StatusCode.INTERNAL:
        log.exception("%s failed", method)
    else:
        log.info("%s -> %s: %s", method, code.name, exc)


class AuthInterceptor(grpc.ServerInterceptor):
    """Requires ``authorization: Bearer <token>`` on every call but health checks."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        if method.startswith(_PUBLIC_PREFIXES):
            return continuation(handler_call_details)
        metadata = dict(handler_call_details.invocation_metadata or ())
        given = str(metadata.get("authorization", "")).encode()
        if hmac.compare_digest(given, self._expected):
            return continuation(handler_call_details)
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        reason = "missing bearer token" if not given else "wrong bearer token"

        def wrap(_behaviour, streaming):
            def deny(request, context):
                context.abort(
                    grpc.StatusCode.UNAUTHENTICATED,
                    f"{reason}: send 'authorization: Bearer <SKINGENBENCH_AUTH_TOKEN>'",
                )

            if streaming:

                def deny_stream(request, context):
                    deny(request, context)
                    yield  # pragma: no cover - deny always aborts

                return deny_stream
            return deny

        return _rewrap(handler, wrap)


class LoggingInterceptor(grpc.ServerInterceptor):
    """One log line per call: method, peer, duration."""

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(_PUBLIC_PREFIXES):
            return handler
        method = handler_call_details.method

        def wrap(behaviour, streaming):
            if streaming:

                def stream_behaviour(request, context):
                    start = time.perf_counter()
                    try:
                        yield from behaviour(request, context)
                    finally:
                        log.info(
                            "%s from %s: %.1f ms (stream)",
                            method,
                            context.peer(),
                            1e3 * (time.perf_counter() - start),
                        )

                return stream_behaviour

            def unary_behaviour(request, context):
                start = time.perf_counter()
                try:
                    return behaviour(request, context)
                finally:
                    log.info(
                        "%s from %s: %.1f ms", method, context.peer(), 1e3 * (time.perf_counter() - start)
                    )

            return unary_behaviour

        return _rewrap(handler, wrap)
