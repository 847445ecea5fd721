"""The REST side of the guard: one ASGI middleware in front of every route.

In order: the `Host` header must be a trusted name (TRUSTED_HOSTS); every path that is not
explicitly public needs a valid key and a token from the caller's rate bucket; request bodies
must keep arriving (a gap longer than BODY_READ_TIMEOUT_SEC ends the request with 408). The
principal is put in the request's state, where routes take it with `Depends(principal)`.
Routes that must be open (health, the OpenAPI document, a web page) are listed with
`mark_public(app, path)`.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json

from fastapi import FastAPI, Request
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from itk_gateway.errors import ApiError, InvalidInputError, RateLimitedError, RequestTimeoutError, UnauthorizedError
from itk_gateway.security.guard import Guard, key_from_headers
from itk_gateway.security.keys import Principal

DEFAULT_PUBLIC_PATHS = frozenset({"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})


def mark_public(app: FastAPI, *paths: str, prefixes: tuple[str, ...] = ()) -> None:
    """Let these exact paths, and every path under `prefixes`, through without a key (and without
    counting against any budget)."""
    app.state.public_paths = frozenset(getattr(app.state, "public_paths", DEFAULT_PUBLIC_PATHS)) | set(paths)
    app.state.public_prefixes = tuple(getattr(app.state, "public_prefixes", ())) + tuple(prefixes)


def is_public(app: FastAPI, path: str) -> bool:
    public = getattr(app.state, "public_paths", DEFAULT_PUBLIC_PATHS)
    return path in public or path.startswith(tuple(getattr(app.state, "public_prefixes", ())))


def principal(request: Request) -> Principal:
    """FastAPI dependency: the authenticated caller of this request."""
    found = getattr(request.state, "principal", None)
    if found is None:
        # A public route asking for a principal: it should not be public.
        raise UnauthorizedError("an API key is required")
    return found


def host_allowed(host_header: str, trusted: list[str]) -> bool:
    if not trusted or "*" in trusted:
        return True
    host = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
    host = host.strip("[]").lower()
    return any(fnmatch.fnmatchcase(host, pattern.lower()) for pattern in trusted)


# The Modal-style API (api/modal.py) answers errors in `detail`, as the Modal app does, and its
# clients present credentials the Modal way: a refusal there says so in their terms.
MODAL_PREFIX = "/modal/"


def modal_unauthorized(key_sent: bool) -> str:
    if key_sent:
        return ("the key in Modal-Secret is not an API key of this gateway: send a valid key as "
                "Modal-Secret (with any Modal-Key), or as Authorization: Bearer <key>")
    return ("an API key is required: send it the way a Modal client sends its proxy auth token, "
            "as the headers Modal-Key: <any name> and Modal-Secret: <API key> "
            "(or Authorization: Bearer <key>)")


async def _send_error(send: Send, error: ApiError, path: str = "", key_sent: bool = False) -> None:
    headers = [(b"content-type", b"application/json")]
    if isinstance(error, RateLimitedError):
        headers.append((b"retry-after", error.retry_after.encode()))
    reply: dict[str, str] = {"error": error.message, "code": error.code}
    if isinstance(error, UnauthorizedError):
        headers.append((b"www-authenticate", b'Bearer realm="infinitetalk"'))
        if path.startswith(MODAL_PREFIX):
            reply["error"] = modal_unauthorized(key_sent)
    if path.startswith(MODAL_PREFIX):
        reply["detail"] = reply["error"]
    body = json.dumps(reply).encode()
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": error.http_status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class SecurityMiddleware:
    def __init__(self, app: ASGIApp, guard: Guard, fastapi_app: FastAPI, trusted_hosts: list[str],
                 body_timeout_sec: float) -> None:
        self.app = app
        self.guard = guard
        self.fastapi_app = fastapi_app
        self.trusted_hosts = trusted_hosts
        self.body_timeout_sec = body_timeout_sec

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        # Probes (kubelet) address the pod by its IP: /health answers whatever the Host.
        if scope["path"] != "/health" and not host_allowed(headers.get("host", ""), self.trusted_hosts):
            await _send_error(send, InvalidInputError("the Host header names a host this server does not serve"))
            return
        if not is_public(self.fastapi_app, scope["path"]) and scope["method"] != "OPTIONS":
            client = scope.get("client") or ("", 0)
            key = key_from_headers(headers)
            try:
                found = self.guard.admit(key, str(client[0]))
            except ApiError as error:
                await _send_error(send, error, scope["path"], bool(key))
                return
            scope.setdefault("state", {})["principal"] = found
        await self.app(scope, self._timed_receive(receive), send)

    def _timed_receive(self, receive: Receive) -> Receive:
        if self.body_timeout_sec <= 0:
            return receive
        timeout = self.body_timeout_sec
        body_done = False

        async def timed() -> Message:
            nonlocal body_done
            if body_done:
                # After the body, receive() only waits for a disconnect (during a long download).
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), timeout)
            except TimeoutError as exc:
                raise RequestTimeoutError(f"no request body data for {timeout:g} s; the upload was dropped") from exc
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        return timed
