"""Retention: what the gateway keeps, and for how long.

Finished jobs (any final status) keep their result, their inputs' leftovers and their row for
RESULT_TTL_HOURS after they ended; then all of it goes, S3 objects included, and the id answers
404 like any unknown id. At start, before serving, files that belong to no job the store knows
(a crash in the middle of an upload, a result whose row was removed, half-written `*.tmp`
files) are removed too.
"""

from __future__ import annotations

import logging
import threading
import time

from itk_gateway.live.publisher import LivePublisher
from itk_gateway.storage.files import JobFiles, S3Store
from itk_gateway.storage.store import JobStore

log = logging.getLogger(__name__)
# Sweeps run this often at most (and at least every tenth of the TTL, for short test TTLs).
SWEEP_INTERVAL_SEC = 600.0


def remove_orphans(store: JobStore, files: JobFiles) -> int:
    """Remove work folders and results of jobs the store does not hold (or no longer runs)."""
    known = store.known_ids()
    active = set(store.active_job_ids())
    removed = 0
    for work in sorted((files.data_dir / "jobs").iterdir()):
        if work.name not in active:
            files.remove_work_dir(work.name)
            removed += 1
    for result in sorted((files.data_dir / "results").iterdir()):
        # A video, or the portrait its pending quality report needs; anything else is a half-written file.
        job_id = result.name.removesuffix(result.suffix)
        if result.suffix not in (".mp4", ".reference") or job_id not in known:
            result.unlink(missing_ok=True)
            removed += 1
    if removed:
        log.info("removed %d leftover file(s) of jobs no longer running", removed)
    return removed


class Retention:
    def __init__(self, store: JobStore, files: JobFiles, s3: S3Store | None, ttl_hours: float,
                 live: LivePublisher | None = None) -> None:
        self.store = store
        self.files = files
        self.s3 = s3
        self.live = live
        self.ttl_sec = ttl_hours * 3600.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sweep(self, now: float | None = None) -> list[str]:
        """Delete every job that ended more than the TTL ago; return their ids."""
        if self.ttl_sec <= 0:
            return []
        expired = self.store.finished_before((now or time.time()) - self.ttl_sec)
        for job_id, s3_key in expired:
            self.files.remove_result(job_id)
            self.files.remove_work_dir(job_id)
            if self.live is not None:
                self.live.discard(job_id)
            if s3_key and self.s3 is not None:
                try:
                    self.s3.delete(s3_key)
                except Exception as exc:  # S3 away: try again on the next sweep
                    log.warning("job %s: could not delete s3 object %s yet: %s", job_id, s3_key, exc)
                    continue
            self.store.delete_job(job_id)
        if expired:
            log.info("retention: deleted %d job(s) that ended over %g h ago", len(expired), self.ttl_sec / 3600)
        return [job_id for job_id, _ in expired]

    def start(self) -> None:
        if self.ttl_sec <= 0:
            return
        interval = min(SWEEP_INTERVAL_SEC, max(0.5, self.ttl_sec / 10))

        def run() -> None:
            while not self._stop.wait(interval):
                try:
                    self.sweep()
                except Exception:
                    log.exception("retention sweep failed")

        self.sweep()
        self._thread = threading.Thread(target=run, name="retention", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
