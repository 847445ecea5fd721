"""Quality reports that the replica completing their job did not finish, computed here.

A completed job's report is computed by the runner that completed it (runner/quality.py). When
that replica stops first (the report is left pending and the lease given up), or dies (its lease
runs out), or a job is found finished at resume with no report yet, the orchestrator claims the
job (`JobStore.claim_pending_reports`) and hands it here: one thread per report computes it from
the same inputs (the result, the portrait kept beside it, the chunks and plan in the store), while
the orchestrator renews its lease, so no other replica computes it at the same time.
"""

from __future__ import annotations

import logging
import threading

from itk_gateway.dispatch.clients import CallSet
from itk_gateway.jobs.runner.context import Backends, JobContext, RunSettings
from itk_gateway.jobs.runner.quality import QualityRequest
from itk_gateway.metrics import GatewayMetrics
from itk_gateway.storage.files import JobFiles
from itk_gateway.storage.store import JobStore

log = logging.getLogger(__name__)


class PendingReports:
    def __init__(self, store: JobStore, files: JobFiles, backends: Backends, settings: RunSettings,
                 metrics: GatewayMetrics, driver: str) -> None:
        self.store = store
        self.files = files
        self.backends = backends
        self.settings = settings
        self.metrics = metrics
        self.driver = driver
        self._calls: dict[str, CallSet] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def computing(self) -> list[str]:
        """The jobs whose reports are being computed here (their leases are renewed)."""
        with self._lock:
            return list(self._calls)

    def start(self, job_id: str) -> None:
        """Compute the report of `job_id`, whose lease this replica holds."""
        calls = CallSet()
        # The job has ended: there is nothing left to end, so `end` does nothing.
        ctx = JobContext(job_id, self.store, self.files, self.backends, self.settings, self.metrics, calls,
                         lambda _status, _error: False)
        thread = threading.Thread(target=self._run, args=(ctx,), name=f"quality-{job_id}", daemon=True)
        with self._lock:
            if job_id in self._calls:
                return
            self._calls[job_id] = calls
            self._threads[job_id] = thread
        log.info("job %s: computing the quality report it was left without", job_id)
        thread.start()

    def _run(self, ctx: JobContext) -> None:
        try:
            QualityRequest(ctx).run()
        except Exception:  # the database, say: the report stays pending and is claimed again later
            log.exception("job %s: the quality report failed here", ctx.job_id)
        finally:
            with self._lock:
                self._calls.pop(ctx.job_id, None)
                self._threads.pop(ctx.job_id, None)
            try:
                self.store.release_lease(ctx.job_id, self.driver)
            except Exception as exc:
                log.warning("job %s: could not release its lease (%s); it runs out", ctx.job_id, exc)

    def stop(self, timeout: float) -> None:
        """Cancel the reports in progress; each is left pending for the next replica."""
        with self._lock:
            calls = list(self._calls.values())
            threads = list(self._threads.values())
        for call_set in calls:
            call_set.cancel_all()
        for thread in threads:
            thread.join(timeout)
