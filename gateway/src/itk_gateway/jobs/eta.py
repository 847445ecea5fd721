"""The estimate of a job's time left, shown by the page, the CLI and the event stream."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

# No estimate before frames have been coming for this long: one early progress report says
# little about the rate, and an estimate that starts at "24 minutes" for a one-minute job misleads.
MIN_WINDOW_SEC = 3.0
MAX_TRACKED_JOBS = 4096


class Progressing(Protocol):
    id: str
    finished: bool
    split_done: bool
    frames_done: int
    frames_total: int


class TimeLeft:
    """Seconds until a job is done at the rate its frames have been generated since generation
    began (the first time this replica saw it split), so the upload, the split and the wait for a
    generator do not count as slow generation."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._origin: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def __call__(self, record: Progressing) -> float | None:
        with self._lock:
            if record.finished or record.frames_total <= 0:
                self._origin.pop(record.id, None)
                return None
            if not record.split_done:
                return None
            now = self._clock()
            if record.id not in self._origin and len(self._origin) >= MAX_TRACKED_JOBS:
                self._origin.pop(next(iter(self._origin)))
            since, frames_then = self._origin.setdefault(record.id, (now, record.frames_done))
        made, span = record.frames_done - frames_then, now - since
        if made <= 0 or span < MIN_WINDOW_SEC:
            return None
        left = record.frames_total - min(record.frames_done, record.frames_total)
        return round(span * left / made, 1)
