"""HTTP calls to a provider with httpx: per-call timeout, retries with backoff, cancellation, deadline.

Transport errors (connection refused or reset, timeouts), 429 and 5xx are retried with
exponential backoff (`Retry-After` is honoured when it asks for more); any other 4xx is final.
Waiting between attempts stops at once when the chunk is cancelled or its deadline comes.

A call that starts something on the provider (a submit) is not idempotent: sent twice it may start
two provider jobs, and the one whose answer was lost would render and bill with nobody polling or
cancelling it. Such a call is sent again only when the provider surely did not act on it: the
connection was never made, or the provider refused it (429, 503). After a failure that leaves it
open (a timeout or a broken connection once the request was sent, another 5xx) it fails with
SubmitOutcomeUnknownError instead.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx

from ..backend import Cancelled
from .errors import ProviderDeadlineError, ProviderError, ProviderJobLostError, SubmitOutcomeUnknownError, scrub
from .policy import CallPolicy

log = logging.getLogger(__name__)

MAX_BODY_IN_ERROR = 300
# Transport errors raised before any byte of the request left: the provider cannot have acted on it.
NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)
# Answers by which the provider says it did not take the request: too many requests, not available now.
REFUSED_STATUSES = (429, 503)


@dataclass
class CallScope:
    """What bounds every call made for one chunk: its cancel flag and its deadline (monotonic)."""

    cancelled: threading.Event
    deadline: float

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def check(self, what: str) -> None:
        if self.cancelled.is_set():
            raise Cancelled()
        if self.remaining() <= 0:
            raise ProviderDeadlineError(what)

    def sleep(self, seconds: float, what: str) -> None:
        """Wait `seconds`, returning early (by raising) on cancel or deadline."""
        if self.cancelled.wait(max(0.0, min(seconds, self.remaining()))):
            raise Cancelled()
        self.check(what)


class ProviderHttp:
    """One provider's HTTP client; `secrets` are scrubbed from every error message."""

    def __init__(self, provider: str, policy: CallPolicy, secrets: list[str],
                 transport: httpx.BaseTransport | None = None) -> None:
        self.provider = provider
        self.policy = policy
        self.secrets = [s for s in secrets if s]
        self.client = httpx.Client(timeout=httpx.Timeout(policy.request_timeout_sec), transport=transport,
                                   follow_redirects=True)

    def close(self) -> None:
        self.client.close()

    def request(self, method: str, url: str, scope: CallScope, *, what: str,
                headers: dict[str, str] | None = None, json: Any = None,
                params: dict[str, str] | None = None, ok: tuple[int, ...] = (200,),
                idempotent: bool = True) -> httpx.Response:
        """Send one request, retrying transient failures; the response has a status in `ok`.

        `what` says what the call is for ("submit", "status of job X"), for error messages.
        404 raises ProviderJobLostError (the caller decides whether that means a lost job).
        `idempotent=False` (a submit): retried only when the provider surely did not act on it; a
        failure that leaves that open raises SubmitOutcomeUnknownError.
        """
        attempts = self.policy.retries + 1
        last = ""
        for attempt in range(attempts):
            scope.check(f"{self.provider}: deadline passed before {what}")
            retry_after = 0.0
            try:
                response = self.client.request(method, url, headers=headers, json=json, params=params)
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                if not idempotent and not isinstance(exc, NOT_SENT_ERRORS):
                    raise self._outcome_unknown(what, last) from exc
            else:
                if response.status_code in ok:
                    return response
                body = response.text[:MAX_BODY_IN_ERROR].strip()
                last = f"HTTP {response.status_code}" + (f": {body}" if body else "")
                if response.status_code == 404:
                    raise ProviderJobLostError(self._message(f"{what}: not found ({last})"))
                if response.status_code in (401, 403):
                    raise ProviderError(self._message(f"{what}: the provider refused the credentials ({last})"))
                if response.status_code != 429 and response.status_code < 500:
                    raise ProviderError(self._message(f"{what} failed: {last}"))
                if not idempotent and response.status_code not in REFUSED_STATUSES:
                    raise self._outcome_unknown(what, last)
                retry_after = _retry_after(response)
            if attempt + 1 < attempts:
                pause = max(self.policy.retry_backoff_sec * 2.0**attempt, retry_after)
                log.warning("%s: %s: %s; retry %d of %d in %.1f s", self.provider, what,
                            self._scrubbed(last), attempt + 1, self.policy.retries, pause)
                scope.sleep(pause, f"{self.provider}: deadline passed while retrying {what}")
        raise ProviderError(self._message(f"{what} failed after {attempts} attempts: {last}"))

    def _outcome_unknown(self, what: str, last: str) -> SubmitOutcomeUnknownError:
        return SubmitOutcomeUnknownError(self._message(
            f"{what}: the provider may have started a job but its answer was lost ({last}); not sent again, "
            f"so at most one provider job runs for this attempt (one that did start runs unwatched: see the "
            f"provider's console)"))

    def _scrubbed(self, text: str) -> str:
        return scrub(text, self.secrets)

    def _message(self, text: str) -> str:
        return self._scrubbed(f"{self.provider}: {text}")


def _retry_after(response: httpx.Response) -> float:
    try:
        return min(60.0, max(0.0, float(response.headers.get("retry-after", "0"))))
    except ValueError:
        return 0.0


def json_object(response: httpx.Response, provider: str, what: str) -> dict[str, Any]:
    """The response's JSON object, or a ProviderError saying the answer was not one."""
    try:
        answer = response.json()
    except ValueError as exc:
        raise ProviderError(f"{provider}: {what} answered with something that is not JSON") from exc
    if not isinstance(answer, dict):
        raise ProviderError(f"{provider}: {what} answered with JSON that is not an object")
    return answer
