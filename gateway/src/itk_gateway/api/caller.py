"""Who is calling: the owner whose jobs a request may see and create.

Without API keys every caller is the same anonymous owner (""), so "the key's recent jobs" are
all jobs. API-key authentication replaces `owner_of` with the key's owner; everything that lists
or keys by owner (recent jobs, Idempotency-Key, webhook secrets) goes through it. Clients of the
Modal app's API (api/modal.py) send their key as the `Modal-Key` / `Modal-Secret` header pair,
which `itk_gateway.api.modal.modal_credentials` reads.
"""

from __future__ import annotations

from starlette.requests import HTTPConnection

ANONYMOUS = ""


def owner_of(connection: HTTPConnection) -> str:
    del connection
    return ANONYMOUS
