"""The gateway's `{error, code}` answers as an exception."""

from __future__ import annotations

import httpx


class GatewayError(Exception):
    """A request the gateway refused or failed: HTTP status, its message and its error code."""

    def __init__(self, status: int, message: str, code: str = "") -> None:
        super().__init__(f"{status} {code}: {message}" if code else f"{status}: {message}")
        self.status = status
        self.message = message
        self.code = code

    @classmethod
    def from_response(cls, response: httpx.Response, body: bytes) -> GatewayError:
        try:
            reply = httpx.Response(response.status_code, content=body).json()
            return cls(response.status_code, str(reply.get("error", "")), str(reply.get("code", "")))
        except ValueError:
            return cls(response.status_code, body.decode(errors="replace").strip() or response.reason_phrase)
