"""The gateway's one decision on every call: who is it (API key), may it call now (rate limit)."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Mapping

from itk_gateway.errors import RateLimitedError, UnauthorizedError
from itk_gateway.security.keys import ANONYMOUS, KeyRing, Principal
from itk_gateway.security.limits import RateLimiter

log = logging.getLogger(__name__)
AUTH_MODES = ("auto", "required", "off")


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def peer_host(peer: str) -> str:
    """The address part of a client: ASGI gives `1.2.3.4`, gRPC `ipv4:1.2.3.4:5678` or `ipv6:[::1]:5678`."""
    kind, sep, rest = peer.partition(":")
    if sep and kind in ("ipv4", "ipv6"):
        return rest.rsplit(":", 1)[0].strip("[]")
    return peer


def key_from_headers(headers: Mapping[str, str]) -> str:
    """The presented key: `Authorization: Bearer <key>`, `X-API-Key: <key>`, or the Modal-style
    `Modal-Secret` header (Modal clients send `Modal-Key` and `Modal-Secret`; the secret is the key).
    Header names are looked up in lower case (ASGI and gRPC metadata both give them so)."""
    authorization = headers.get("authorization", "").strip()
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return headers.get("x-api-key", "").strip() or headers.get("modal-secret", "").strip()


class Guard:
    def __init__(self, keys: KeyRing, required: bool, limiter: RateLimiter,
                 on_refused: Callable[[str], None] = lambda reason: None) -> None:
        self.keys = keys
        self.required = required
        self.limiter = limiter
        self.on_refused = on_refused
        if required and not keys.configured:
            log.error("authentication is required but no API keys are configured (API_KEYS or API_KEYS_FILE):"
                      " every request except /health will be refused")

    def authenticate(self, key: str) -> Principal:
        """The caller's principal. With authentication off a key is still honoured when given."""
        if not key:
            if self.required:
                raise UnauthorizedError("an API key is required: send Authorization: Bearer <key>")
            return ANONYMOUS
        principal = self.keys.lookup(key)
        if principal is None:
            if self.required or self.keys.configured:
                raise UnauthorizedError("invalid API key")
            return ANONYMOUS
        return principal

    def admit(self, key: str, client: str) -> Principal:
        """Authenticate and take one request from the caller's rate budget. Key holders are
        limited per key, anonymous callers (authentication off) per address, except on this
        machine itself (`make run`, `make up`, a sidecar): there is no one else to protect."""
        try:
            principal = self.authenticate(key)
            if principal.name:
                self.limiter.take(f"key:{principal.name}")
            elif not is_loopback(peer_host(client)):
                self.limiter.take(f"addr:{peer_host(client)}")
        except UnauthorizedError:
            self.on_refused("unauthorized")
            raise
        except RateLimitedError:
            self.on_refused("rate_limited")
            raise
        return principal
