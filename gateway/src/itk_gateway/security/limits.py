"""Per-key request rate (token buckets) and the gateway-wide budget of upload bytes in flight."""

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
