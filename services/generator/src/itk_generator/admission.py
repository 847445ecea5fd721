"""Which chunks the service takes: at most `capacity` at once, none while draining.

Admission and draining share one lock, so once `start_draining()` returns no new chunk can
slip in and `wait_idle()` waits for exactly the chunks already in hand.
"""

from __future__ import annotations

import enum
import threading


class Refusal(enum.Enum):
    DRAINING = "draining"
    FULL = "full"


class ChunkSlots:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._active = 0
        self._draining = False
        self._changed = threading.Condition()

    @property
    def active(self) -> int:
        with self._changed:
            return self._active

    @property
    def draining(self) -> bool:
        with self._changed:
            return self._draining

    def try_admit(self) -> Refusal | None:
        """Take a slot and return None, or say why not without waiting."""
        with self._changed:
            if self._draining:
                return Refusal.DRAINING
            if self._active >= self.capacity:
                return Refusal.FULL
            self._active += 1
            return None

    def release(self) -> None:
        with self._changed:
            if self._active == 0:
                raise RuntimeError("release() without a matching try_admit()")
            self._active -= 1
            self._changed.notify_all()

    def start_draining(self) -> None:
        with self._changed:
            self._draining = True

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no chunk is in hand; False if `timeout` passed first."""
        with self._changed:
            return self._changed.wait_for(lambda: self._active == 0, timeout)
