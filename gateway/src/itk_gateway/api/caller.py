"""Who is calling: the principal whose jobs a request may see and create.

The security middleware (security/rest_middleware.py) authenticates every guarded request and leaves the
caller in the request's state: an API key's principal, or, with authentication off, the
anonymous one (owner "", who sees every job). Everything that lists or keys by owner (recent
jobs, Idempotency-Key, webhook secrets) goes through here.
Clients of the Modal app's API (api/modal_compat.py) send their key as the `Modal-Key` / `Modal-Secret`
header pair; the middleware takes `Modal-Secret` as the key.
"""

from __future__ import annotations

from starlette.requests import HTTPConnection

from itk_gateway.errors import UnauthorizedError
from itk_gateway.security.keys import Principal


def principal_of(connection: HTTPConnection) -> Principal:
    found = getattr(connection.state, "principal", None)
    if found is None:
        # Only public routes pass the middleware without a principal; they must not ask for one.
        raise UnauthorizedError("an API key is required")
    return found

