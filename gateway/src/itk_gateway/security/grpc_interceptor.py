"""The gRPC side of the guard: a server interceptor in front of every method but health and reflection.

Credentials travel in the `authorization` metadata (`Bearer <key>`, or the bare key) or
`x-api-key`. A refused call ends with UNAUTHENTICATED or RESOURCE_EXHAUSTED (with a
`retry-after` trailer) before the servicer runs; servicers read the caller with `principal_of`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from itk_gateway.errors import ApiError, RateLimitedError
from itk_gateway.security.guard import Guard, key_from_headers
from itk_gateway.security.keys import Principal

# Probes and tooling: health answers Kubernetes, reflection describes the API (no data in either).
OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def metadata_key(metadata: Any) -> str:
    headers = {item.key.lower() if hasattr(item, "key") else item[0].lower():
               item.value if hasattr(item, "value") else item[1] for item in metadata or ()}
    key = key_from_headers({k: v for k, v in headers.items() if isinstance(v, str)})
    if key:
        return key
    bare = headers.get("authorization", "")
    return bare.strip() if isinstance(bare, str) and " " not in bare.strip() else ""


def principal_of(guard: Guard, context: grpc.ServicerContext) -> Principal:
    """The authenticated caller (the interceptor already let it in, so this does not raise then)."""
    return guard.authenticate(metadata_key(context.invocation_metadata()))


def _abort(context: grpc.ServicerContext, error: ApiError) -> None:
    if isinstance(error, RateLimitedError):
        context.set_trailing_metadata((("retry-after", error.retry_after),))
    context.abort(error.grpc_status, error.message)


class AuthInterceptor(grpc.ServerInterceptor):
    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    def _admit(self, context: grpc.ServicerContext) -> None:
        try:
            self.guard.admit(metadata_key(context.invocation_metadata()), context.peer())
        except ApiError as error:
            _abort(context, error)

    def intercept_service(self, continuation: Callable, handler_call_details: grpc.HandlerCallDetails):
        handler = continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(OPEN_SERVICES):
            return handler
        admit = self._admit
        if handler.unary_unary is not None:
            inner_uu = handler.unary_unary

            def unary_unary(request, context):
                admit(context)
                return inner_uu(request, context)

            return handler._replace(unary_unary=unary_unary)
        if handler.unary_stream is not None:
            inner_us = handler.unary_stream

            def unary_stream(request, context):
                admit(context)
                yield from inner_us(request, context)

            return handler._replace(unary_stream=unary_stream)
        if handler.stream_unary is not None:
            inner_su = handler.stream_unary

            def stream_unary(requests, context):
                admit(context)
                return inner_su(requests, context)

            return handler._replace(stream_unary=stream_unary)
        inner_ss = handler.stream_stream

        def stream_stream(requests, context):
            admit(context)
            yield from inner_ss(requests, context)

        return handler._replace(stream_stream=stream_stream)
