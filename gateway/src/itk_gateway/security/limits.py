"""Per-key request rate (token buckets), things held at once per key and in total (slots), and the
gateway-wide budget of upload bytes in flight."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from itk_gateway.errors import RateLimitedError

# Buckets untouched this long are full again anyway; they are dropped to keep the table small.
IDLE_FORGET_SEC = 600.0


class RateLimiter:
    """A token bucket per caller: `rate` requests per second on average, bursts up to `burst`."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self._buckets: dict[str, tuple[float, float]] = {}  # caller -> (tokens, last refill)
        self._lock = threading.Lock()
        self._swept = time.monotonic()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, caller: str) -> None:
        """Spend one token of `caller`'s bucket, or raise RateLimitedError saying when one is back."""
        if not self.enabled:
            return
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(caller, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens < 1.0:
                self._buckets[caller] = (tokens, now)
                raise RateLimitedError(
                    f"rate limit reached: at most {self.rate:g} requests per second (bursts of {self.burst:g})",
                    (1.0 - tokens) / self.rate)
            self._buckets[caller] = (tokens - 1.0, now)
            if now - self._swept > IDLE_FORGET_SEC:
                self._swept = now
                self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < IDLE_FORGET_SEC}


class UploadBudget:
    """Bytes of uploads being received, over all requests; beyond the limit new bytes are refused."""

    RETRY_AFTER_SEC = 5.0

    def __init__(self, limit_bytes: int, on_refused: Callable[[str], None] = lambda reason: None) -> None:
        self.limit_bytes = limit_bytes
        self.on_refused = on_refused
        self.in_flight = 0
        self.peak = 0
        self._lock = threading.Lock()

    def reserve(self, size: int) -> None:
        with self._lock:
            if self.limit_bytes > 0 and self.in_flight + size > self.limit_bytes:
                self.on_refused("upload_budget")
                raise RateLimitedError(
                    "the gateway is receiving too many uploads at once; retry shortly", self.RETRY_AFTER_SEC)
            self.in_flight += size
            self.peak = max(self.peak, self.in_flight)

    def release(self, size: int) -> None:
        with self._lock:
            self.in_flight -= size


class Slots:
    """Things held at once (URL downloads, long gRPC calls), per caller and in total: a caller
    takes one or is refused at once, never queued, so no caller can hold more than its share and
    all of them together no more than the total."""

    PER_CALLER, TOTAL = "per_caller", "total"

    def __init__(self, per_caller: int, total: int) -> None:
        self.per_caller = per_caller
        self.total = total
        self._lock = threading.Lock()
        self._held: dict[str, int] = {}

    def take(self, caller: str) -> str | None:
        """None when a slot was taken; else which bound is full (PER_CALLER or TOTAL)."""
        with self._lock:
            if self._held.get(caller, 0) >= self.per_caller:
                return self.PER_CALLER
            if sum(self._held.values()) >= self.total:
                return self.TOTAL
            self._held[caller] = self._held.get(caller, 0) + 1
            return None

    def give_back(self, caller: str) -> None:
        with self._lock:
            left = self._held.get(caller, 0) - 1
            if left > 0:
                self._held[caller] = left
            else:
                self._held.pop(caller, None)

    def in_use(self) -> int:
        with self._lock:
            return sum(self._held.values())
