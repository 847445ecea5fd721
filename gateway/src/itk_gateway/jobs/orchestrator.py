"""Starts, tracks and stops the runners of all active jobs, and resumes them after a restart."""

from __future__ import annotations

import logging
import threading
import time

from itk_gateway.errors import CreationFailedError
from itk_gateway.jobs.gate import AcceptGate
from itk_gateway.jobs.runner import Backends, JobRunner, RunSettings
from itk_gateway.metrics import GatewayMetrics
from itk_gateway.storage.files import JobFiles
from itk_gateway.storage.store import COMPLETED, FAILED, JobStore

log = logging.getLogger(__name__)


class Orchestrator:
    """Starts, tracks and stops the runners of all active jobs."""

    def __init__(self, store: JobStore, files: JobFiles, backends: Backends, settings: RunSettings,
                 metrics: GatewayMetrics) -> None:
        self.store = store
        self.files = files
        self.backends = backends
        self.settings = settings
        self.metrics = metrics
        self._runners: dict[str, JobRunner] = {}
        self._lock = threading.Lock()
        self._stopping = False

    def start_job(self, job_id: str, gate: AcceptGate | None = None) -> None:
        runner = JobRunner(job_id, self.store, self.files, self.backends, self.settings, self.metrics, gate,
                           self._forget)
        with self._lock:
            if self._stopping:
                raise CreationFailedError("the gateway is shutting down")
            self._runners[job_id] = runner
        runner.start()

    def _forget(self, job_id: str) -> None:
        with self._lock:
            self._runners.pop(job_id, None)

    def resume_all(self) -> list[str]:
        """Restart every job the store says is still active (after a gateway restart)."""
        resumed = []
        for job_id in self.store.active_job_ids():
            with self._lock:
                if job_id in self._runners:
                    continue
            if not self.files.audio(job_id).exists() or not self.files.image(job_id).exists():
                if self.files.result(job_id).exists():
                    # Stopped between cleaning up and recording the end: the work is done.
                    self.store.finish_job(job_id, COMPLETED, progress=100, has_video=1)
                    if self.backends.live is not None:
                        # Its live stream may lack the last segments, whose parts are gone.
                        self.backends.live.discard(job_id)
                else:
                    self.store.finish_job(job_id, FAILED, "the job's input files are gone; it cannot resume")
                continue
            log.info("job %s: resuming", job_id)
            self.start_job(job_id)
            resumed.append(job_id)
        return resumed

    def end_job(self, job_id: str, status: str, error: str) -> bool:
        """Cancel (or time out) a job; False when it had already ended."""
        with self._lock:
            runner = self._runners.get(job_id)
        if runner is not None:
            if not runner.end(status, error):
                return False
            # Its RPCs are cancelled, so it ends promptly; then the answer shows the files gone.
            runner.thread.join(timeout=10)
            self.store.finish_job(job_id, status, error)  # in case the runner is still busy
            return True
        if self.store.finish_job(job_id, status, error):
            self.files.remove_work_dir(job_id)
            return True
        return False

    def stop(self, timeout: float = 15.0) -> None:
        """Stop every runner without ending its job, so the next start resumes it."""
        with self._lock:
            self._stopping = True
            runners = list(self._runners.values())
        for runner in runners:
            runner.stop_for_restart()
        deadline = time.monotonic() + timeout
        for runner in runners:
            runner.thread.join(max(0.0, deadline - time.monotonic()))
