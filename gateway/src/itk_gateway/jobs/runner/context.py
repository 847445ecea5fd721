"""What every step of a running job shares: its id, the backends, the settings, and how it ends.

A job runs as steps (split, pieces, stitch; see lifecycle.py), each a class of its own that gets
this context. A step that decides the job cannot go on calls `fail`, which records the reason
(the first reason wins) and unwinds the step with JobEndedError; `check` unwinds once the job was
ended from outside (cancelled, timed out, the gateway stopping).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from itk_gateway.dispatch.clients import CallSet, SplitterClient, StitcherClient
from itk_gateway.dispatch.pool import EndpointPool
from itk_gateway.live.publisher import LivePublisher
from itk_gateway.metrics import GatewayMetrics
from itk_gateway.storage.files import JobFiles, S3Store
from itk_gateway.storage.store import FAILED, JobStore

# Longest wait between two attempts of anything a job retries (a piece, the split, the stitch).
MAX_BACKOFF_SEC = 30.0
# A quality report still pending this long after its job completed is given up (its gateway died).
QUALITY_TIMEOUT_SEC = 3600.0


@dataclass
class Backends:
    splitter: SplitterClient
    stitcher: StitcherClient
    pools: dict[str, EndpointPool]
    s3: S3Store | None
    live: LivePublisher | None = None


@dataclass
class RunSettings:
    max_concurrent_chunks: int = 8
    max_attempts: int = 4
    retry_backoff_sec: float = 1.0
    chunk_target_sec: float = 45.0
    job_timeout_sec: float = 0.0
    stitcher_wait_sec: float = 600.0
    # None: not sent, so the splitter's own settings apply; 0 is sent as 0 (no minimum, a hard cut).
    min_lane_sec: float | None = None
    clip_frames: int = 81
    audio_context_sec: float = 2.0
    seam_fade_sec: float | None = None
    quality_report: bool = True
    quality_timeout_sec: float = QUALITY_TIMEOUT_SEC


class JobEndedError(Exception):
    """Raised inside a runner once the job was failed, cancelled, timed out or the gateway stops."""


@dataclass
class JobContext:
    job_id: str
    store: JobStore
    files: JobFiles
    backends: Backends
    settings: RunSettings
    metrics: GatewayMetrics
    calls: CallSet
    # Ends the job with a final status; the first reason wins (True if this one did).
    end: Callable[[str, str], bool]

    @property
    def abort(self) -> threading.Event:
        """Set once the job was ended or is stopping: every wait of a step watches it."""
        return self.calls.cancelled

    def check(self) -> None:
        if self.abort.is_set():
            raise JobEndedError()

    def fail(self, message: str) -> NoReturn:
        self.end(FAILED, message)
        raise JobEndedError()
