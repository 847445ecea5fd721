"""Webhooks: a job's events POSTed to its `webhook_url`, signed as Standard Webhooks specifies.

Events: `job.started` (the first piece starts rendering), `job.progress` (at most one per
WEBHOOK_PROGRESS_INTERVAL_SEC, only when the progress moved), then exactly one of
`job.completed`, `job.failed` (FAILED or TIMED_OUT) or `job.cancelled`; after `job.completed`,
`job.quality` once the video's quality report is ready (or failed), unless reports are off. The body
is `{"type", "timestamp", "data"}` with the job as `GET /jobs/{id}` shows it (without the video).

Signing (https://www.standardwebhooks.com): headers `webhook-id` (the same for every retry of one
event, so receivers can drop duplicates), `webhook-timestamp` (Unix seconds) and
`webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`. The key is the bytes
of WEBHOOK_SECRET after its `whsec_` prefix, base64-decoded (a secret without the prefix is used
as UTF-8 text). `secret_for(owner)` is where a per-key secret plugs in.

Delivery: one sender thread per job keeps its events in order. A delivery that fails (no
connection, timeout, any status but 2xx) is retried after WEBHOOK_RETRY_BACKOFF_SEC, doubling
each time, WEBHOOK_MAX_ATTEMPTS times in all; a progress event still failing when a newer event
is waiting is dropped in favour of it. Pending deliveries live in memory: a gateway restart
drops them (the resumed job's later events are still sent).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx

from itk_gateway.jobs.fetch import IpAddress, Resolver, first_that_connects, pinned, refused_reason, resolve
from itk_gateway.storage.store import CANCELLED, COMPLETED, FAILED, IN_QUEUE, RUNNING, TIMED_OUT, JobRecord, JobStore

log = logging.getLogger(__name__)
MAX_BACKOFF_SEC = 600.0
WATCH_POLL_SEC = 5.0
USER_AGENT = "infinitetalk-gateway-webhooks/1"
FINAL_EVENTS = {COMPLETED: "job.completed", FAILED: "job.failed", TIMED_OUT: "job.failed",
                CANCELLED: "job.cancelled"}


# Lookups for the check made while a job is created run here, so a slow name server holds one of
# these threads, never a request worker past CREATE_CHECK_DNS_SEC.
_CREATE_LOOKUPS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="webhook-dns")
CREATE_CHECK_DNS_SEC = 2.0


class UnsafeWebhookUrlError(Exception):
    """Why a webhook URL may not be called, in words for the client."""


def delivery_addresses(url: str, resolver: Resolver = resolve, allow_private: bool = False) -> list[IpAddress]:
    """The addresses a webhook for `url` may be sent to, resolved once; raises UnsafeWebhookUrlError
    when the host does not resolve or, unless `allow_private`, when any of them is not public.

    A webhook is a request the gateway makes on a client's behalf; without this a client could
    make it reach the cluster's own services or a cloud metadata endpoint. Checked when the job
    is created (`creation_problem`) and again before every delivery, which then connects to the
    address checked (DNS answers can change in between, or between a check and a connect).
    """
    host = urlsplit(url).hostname or ""
    try:
        addresses = resolver(host, 0)
    except (OSError, UnicodeError) as exc:
        raise UnsafeWebhookUrlError(f"its host {host!r} does not resolve "
                               f"({getattr(exc, 'strerror', None) or exc})") from exc
    if not addresses:
        raise UnsafeWebhookUrlError(f"its host {host!r} has no addresses")
    for address in addresses if not allow_private else ():
        reason = refused_reason(address)
        if reason is not None:
            raise UnsafeWebhookUrlError(f"its host {host!r} resolves to the non-public address {address} ({reason})")
    return addresses


def private_address_problem(url: str, resolver: Resolver = resolve) -> str | None:
    """Why `url` must not receive webhooks when private addresses are not allowed (None: it may)."""
    try:
        delivery_addresses(url, resolver)
    except UnsafeWebhookUrlError as exc:
        return str(exc)
    return None


def creation_problem(url: str, resolver: Resolver = resolve, wait_sec: float = CREATE_CHECK_DNS_SEC) -> str | None:
    """`private_address_problem` as a job is created: an early, clear refusal, waited for at most
    `wait_sec`. A host whose name server is slower is let through here; the check before every
    delivery still stands between it and any request the gateway makes."""
    try:
        return _CREATE_LOOKUPS.submit(private_address_problem, url, resolver).result(timeout=wait_sec)
    except FutureTimeout:
        log.info("webhook URL %s: DNS slower than %.0f s; checked again before each delivery", url, wait_sec)
        return None


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret (or of any other text, as UTF-8)."""
    if secret.startswith("whsec_"):
        return base64.b64decode(secret[len("whsec_"):])
    return secret.encode()


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value for one delivery."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


@dataclass
class WebhookEvent:
    id: str
    type: str
    body: bytes


@dataclass
class WebhookSettings:
    secret: str
    max_attempts: int = 8
    retry_backoff_sec: float = 1.0
    timeout_sec: float = 10.0
    progress_interval_sec: float = 10.0
    allow_private: bool = False


class WebhookNotifier:
    """Watches jobs that have a webhook_url and delivers their events."""

    def __init__(self, store: JobStore, settings: WebhookSettings,
                 describe: Callable[[JobRecord], dict], on_delivery: Callable[[str], None] = lambda _: None,
                 resolver: Resolver = resolve) -> None:
        self.store = store
        self.settings = settings
        self.resolver = resolver
        self.describe = describe
        self.on_delivery = on_delivery
        self.stopping = threading.Event()
        self._client = httpx.Client(timeout=settings.timeout_sec, follow_redirects=False,
                                    headers={"User-Agent": USER_AGENT})
        self._threads: list[threading.Thread] = []

    @property
    def enabled(self) -> bool:
        return bool(self.settings.secret)

    def secret_for(self, owner: str) -> bytes:
        """The signing key for the owner's webhooks (the deployment's secret for everyone)."""
        del owner
        return secret_key(self.settings.secret)

    def watch(self, job_id: str, resumed: bool = False) -> None:
        """Follow the job until it ends, if it has a webhook."""
        record = self.store.get_job(job_id)
        if record is None or not record.options.webhook_url or not self.enabled:
            return
        events: queue.Queue[WebhookEvent | None] = queue.Queue()
        watcher = threading.Thread(target=self._watch, args=(job_id, events, resumed),
                                   name=f"{job_id}-webhook-watch", daemon=True)
        sender = threading.Thread(target=self._send_all, args=(record, events),
                                  name=f"{job_id}-webhook-send", daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [watcher, sender]
        watcher.start()
        sender.start()

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._client.close()

    def _post(self, url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        """POST to the address checked just now, never to one the host's DNS gives on a second look."""
        addresses = delivery_addresses(url, self.resolver, self.settings.allow_private)

        def post(address: IpAddress) -> httpx.Response:
            target, host, extensions = pinned(httpx.URL(url), address)
            return self._client.post(target, content=body, headers={**headers, **host}, extensions=extensions)

        return first_that_connects(addresses, post)

    # -- turning job changes into events ------------------------------------------------------

    def _event(self, kind: str, record: JobRecord) -> WebhookEvent:
        body = {"type": kind, "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace(
            "+00:00", "Z"), "data": self.describe(record)}
        return WebhookEvent(f"msg_{secrets.token_hex(12)}", kind, json.dumps(body).encode())

    def _watch(self, job_id: str, events: queue.Queue[WebhookEvent | None], resumed: bool) -> None:
        started = False
        last_progress = -1
        last_progress_at = 0.0
        first = True
        try:
            while not self.stopping.is_set():
                version = self.store.version(job_id)
                record = self.store.get_job(job_id)
                if record is None:
                    return
                if first and resumed:
                    # A resumed job told its receiver it started before the restart (one found
                    # finished at resume had run too).
                    started = record.status != IN_QUEUE
                    last_progress = record.progress
                first = False
                if record.status in FINAL_EVENTS:
                    if record.status == COMPLETED and not started:
                        events.put(self._event("job.started", record))
                    events.put(self._event(FINAL_EVENTS[record.status], record))
                    if record.status == COMPLETED and record.quality:
                        self._watch_quality(job_id, events)
                    return
                if record.status == RUNNING and not started:
                    started = True
                    events.put(self._event("job.started", record))
                now = time.monotonic()
                if (started and record.progress > last_progress
                        and now - last_progress_at >= self.settings.progress_interval_sec):
                    last_progress, last_progress_at = record.progress, now
                    events.put(self._event("job.progress", record))
                # Wake on the next change, or when the throttle lets the next progress through.
                wait = WATCH_POLL_SEC
                if record.progress > last_progress:
                    wait = max(0.05, min(wait, self.settings.progress_interval_sec - (now - last_progress_at)))
                self.store.wait_for_change(job_id, version, wait)
        finally:
            events.put(None)

    def _watch_quality(self, job_id: str, events: queue.Queue[WebhookEvent | None]) -> None:
        """After `job.completed`: `job.quality` once the report is no longer pending."""
        while not self.stopping.is_set():
            version = self.store.version(job_id)
            record = self.store.get_job(job_id)
            if record is None or not record.quality:
                return
            if json.loads(record.quality).get("state") != "pending":
                events.put(self._event("job.quality", record))
                return
            self.store.wait_for_change(job_id, version, WATCH_POLL_SEC)

    # -- delivering ------------------------------------------------------------------------------

    def _send_all(self, record: JobRecord, events: queue.Queue[WebhookEvent | None]) -> None:
        key = self.secret_for(record.owner)
        url = record.options.webhook_url
        while True:
            event = events.get()
            if event is None:
                return
            self._deliver(url, key, event, events)

    def _deliver(self, url: str, key: bytes, event: WebhookEvent, events: queue.Queue) -> None:
        for attempt in range(1, self.settings.max_attempts + 1):
            timestamp = int(time.time())
            headers = {"content-type": "application/json", "webhook-id": event.id,
                       "webhook-timestamp": str(timestamp), "webhook-signature": sign(key, event.id, timestamp,
                                                                                      event.body)}
            try:
                reply = self._post(url, event.body, headers)
                if 200 <= reply.status_code < 300:
                    self.on_delivery("delivered")
                    return
                reason = f"HTTP {reply.status_code}"
            except UnsafeWebhookUrlError as exc:
                if not self.settings.allow_private:
                    log.error("webhook %s %s not sent to %s: %s", event.type, event.id, url, exc)
                    self.on_delivery("failed")
                    return
                reason = str(exc)  # a receiver on the private network whose name does not resolve yet
            except httpx.HTTPError as exc:
                reason = f"{type(exc).__name__}: {exc}"
            self.on_delivery("retried" if attempt < self.settings.max_attempts else "failed")
            if attempt == self.settings.max_attempts:
                break
            if event.type == "job.progress" and not events.empty():
                log.info("webhook %s %s: %s; a newer event replaces it", event.type, event.id, reason)
                return
            backoff = min(MAX_BACKOFF_SEC, self.settings.retry_backoff_sec * 2.0 ** (attempt - 1))
            log.warning("webhook %s %s to %s: attempt %d failed (%s); retrying in %.1fs", event.type, event.id,
                        url, attempt, reason, backoff)
            if self.stopping.wait(backoff):
                return
        log.error("webhook %s %s to %s: gave up after %d attempts", event.type, event.id, url,
                  self.settings.max_attempts)
