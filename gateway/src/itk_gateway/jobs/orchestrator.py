"""Starts, tracks and stops the runners of the jobs this replica drives, and takes jobs over.

Every gateway replica has an id, unique to its process. A job is driven by the replica
that holds its lease (see storage/store.py): the one that created it, or the one that claimed
it after the previous driver stopped renewing. A background keeper, every JOB_POLL_SEC:

- checks the jobs this replica runs: a job that another replica cancelled (or deleted) is
  stopped here and its files removed; a job whose lease went to another replica is let go;
- renews this replica's leases every third of JOB_LEASE_SEC, and stops its runners itself when
  it could not renew for most of a lease (the database was unreachable), before another replica
  may take them over, so a job is never driven twice;
- claims a few jobs whose lease ran out (their driver died) and resumes them: finished chunks
  are reused from the store and the shared files, the rest is generated;
- sweeps ended jobs whose driver died before removing their files (a cancel written by another
  replica, say): their lease still names it after running out;
- claims completed jobs whose quality report was left pending (their driver stopped or died
  while computing it) and computes it (jobs/reports.py).

On SQLite (one replica by design) a lease found at start can only be a dead process's, so start
frees them all and resumes every active job at once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from itk_gateway.errors import CreationFailedError
from itk_gateway.jobs.gate import AcceptGate
from itk_gateway.jobs.reports import PendingReports
from itk_gateway.jobs.runner import Backends, JobRunner, RunSettings
from itk_gateway.jobs.runner.quality import QualityRequest
from itk_gateway.metrics import GatewayMetrics
from itk_gateway.storage.files import JobFiles
from itk_gateway.storage.store import ACTIVE_STATUSES, CANCELLED, COMPLETED, FAILED, JobStore

log = logging.getLogger(__name__)

QUALITY_SWEEP_SEC = 60.0
# Jobs one replica claims per keeper pass, so the orphans of a dead replica spread over the others.
CLAIM_BATCH = 4
# Without a successful renewal for this share of the lease, a replica stops its own runners.
SELF_FENCE_SHARE = 0.8


@dataclass
class LeaseSettings:
    lease_sec: float = 20.0
    poll_sec: float = 1.0


def new_replica_id() -> str:
    """Unique per process: a restarted container must not mistake a dead process's leases for its own."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Orchestrator:
    """Starts, tracks and stops the runners of the jobs this replica drives."""

    def __init__(self, store: JobStore, files: JobFiles, backends: Backends, settings: RunSettings,
                 metrics: GatewayMetrics, leases: LeaseSettings | None = None,
                 on_resume: Callable[[str], None] = lambda _job_id: None) -> None:
        self.store = store
        self.files = files
        self.backends = backends
        self.settings = settings
        self.metrics = metrics
        self.leases = leases or LeaseSettings()
        self.replica_id = new_replica_id()
        self.reports = PendingReports(store, files, backends, settings, metrics, self.replica_id)
        self._runners: dict[str, JobRunner] = {}
        self._lock = threading.Lock()
        self._stopping = False
        self._stop = threading.Event()
        self._keeper: threading.Thread | None = None
        self._renewed_at = time.monotonic()
        self._quality_swept_at = -QUALITY_SWEEP_SEC
        # Told of every job this replica resumes or takes over (the webhook notifier follows it).
        self.on_resume = on_resume

    # -- starting jobs -------------------------------------------------------------------

    def start_job(self, job_id: str, gate: AcceptGate | None = None,
                  prepare: Callable[[threading.Event], None] | None = None) -> None:
        """Run the job here; `prepare` (downloading its URL inputs) runs first in its runner."""
        runner = JobRunner(job_id, self.store, self.files, self.backends, self.settings, self.metrics, gate,
                           self._forget, driver=self.replica_id, prepare=prepare)
        with self._lock:
            if self._stopping:
                raise CreationFailedError("the gateway is shutting down")
            self._runners[job_id] = runner
        runner.start()

    def _forget(self, job_id: str) -> None:
        with self._lock:
            self._runners.pop(job_id, None)

    def driving(self) -> list[str]:
        """The jobs whose leases this replica renews: those it runs, and those whose quality report it computes."""
        with self._lock:
            running = list(self._runners)
        return running + self.reports.computing()

    def start(self) -> list[str]:
        """Resume or take over the jobs that wait for a driver, then keep leases in the background."""
        if self.store.single_replica:
            self.store.release_all_leases()
        resumed = self.claim_and_resume(limit=None if self.store.single_replica else CLAIM_BATCH)
        self._renewed_at = time.monotonic()
        self._keeper = threading.Thread(target=self._keep, name="lease-keeper", daemon=True)
        self._keeper.start()
        return resumed

    def claim_and_resume(self, limit: int | None = CLAIM_BATCH) -> list[str]:
        resumed = []
        while True:
            batch = self.store.claim_expired(self.replica_id, self.leases.lease_sec, limit or CLAIM_BATCH * 25)
            for job_id in batch:
                if self._resume(job_id):
                    resumed.append(job_id)
            if limit is not None or not batch:
                return resumed

    def _resume(self, job_id: str) -> bool:
        with self._lock:
            if job_id in self._runners or self._stopping:
                return False
        # Another replica may have written the inputs: bring them here first (a dubbing job's
        # source video too; chunk spans are cut from it again as needed).
        self.files.fetch(self.files.source_video(job_id))
        # A two-person job's second recording, and its mix when the split had made it.
        self.files.fetch(self.files.speaker_audio(job_id, 2))
        self.files.fetch(self.files.mix(job_id))
        if not (self.files.fetch(self.files.audio(job_id)) and self.files.fetch(self.files.image(job_id))):
            if self.files.has_result(job_id):
                # Stopped between cleaning up and recording the end: the work is done; its quality
                # report is computed here (the portrait was kept beside the result).
                pending = {"quality": QualityRequest.pending()} if self.settings.quality_report else {}
                self.store.finish_job(job_id, COMPLETED, progress=100, has_video=1, **pending)
                if self.backends.live is not None:
                    # Its live stream may lack the last segments, whose parts are gone.
                    self.backends.live.discard(job_id)
                if pending:
                    self.reports.start(job_id)
                else:
                    self.store.release_lease(job_id, self.replica_id)
                self.on_resume(job_id)  # its webhook receiver has not heard of the end yet
            else:
                self.store.finish_job(job_id, FAILED, "the job's input files are gone; it cannot resume")
            return False
        log.info("job %s: resuming (driven by %s)", job_id, self.replica_id)
        self.start_job(job_id)
        self.metrics.takeovers.inc()
        self.on_resume(job_id)
        return True

    # -- the lease keeper ----------------------------------------------------------------

    def _keep(self) -> None:
        while not self._stop.wait(self.leases.poll_sec):
            try:
                self.keep_once()
            except Exception as exc:  # the database is unreachable, say: try again next pass
                log.warning("lease keeper: %s", exc)
                self._fence_if_stale()

    def keep_once(self) -> None:
        if time.monotonic() - self._renewed_at >= self.leases.lease_sec / 3:
            self.store.renew_leases(self.replica_id, self.driving(), self.leases.lease_sec)
            self._renewed_at = time.monotonic()
        self._check_runners()
        if not self._stopping:
            self.claim_and_resume()
            self._sweep()

    def _sweep(self) -> None:
        # Reports given up after an hour need no second-by-second look (it reads every job row).
        if time.monotonic() - self._quality_swept_at >= QUALITY_SWEEP_SEC:
            self._quality_swept_at = time.monotonic()
            given_up = self.store.fail_stale_quality(self.settings.quality_timeout_sec)
            if given_up:
                log.warning("%d quality reports pending for over %.0f s given up", given_up,
                            self.settings.quality_timeout_sec)
            for job_id in self.store.claim_pending_reports(self.replica_id, self.leases.lease_sec, CLAIM_BATCH):
                self.reports.start(job_id)
        for job_id, status in self.store.claim_abandoned(self.replica_id, CLAIM_BATCH):
            log.info("job %s: %s, its driver gone; removing its files", job_id, status)
            self.files.remove_work_dir(job_id)
            if status != COMPLETED:
                self.files.remove_result(job_id)

    def _fence_if_stale(self) -> None:
        if time.monotonic() - self._renewed_at < self.leases.lease_sec * SELF_FENCE_SHARE:
            return
        with self._lock:
            runners = list(self._runners.values())
        for runner in runners:
            log.warning("job %s: lease not renewed for %.0f s; letting it go", runner.job_id,
                        time.monotonic() - self._renewed_at)
            runner.stop_for_restart()

    def _check_runners(self) -> None:
        with self._lock:
            runners = dict(self._runners)
        if not runners:
            return
        states = self.store.lease_states(list(runners))
        for job_id, runner in runners.items():
            state = states.get(job_id)
            if state is None:
                log.info("job %s: deleted; stopping it", job_id)
                runner.end(CANCELLED, "the job was deleted")
            elif state.status not in ACTIVE_STATUSES:
                if runner.end_status is not None:
                    continue  # ended here: finishing up (its quality report)
                # Cancelled (or timed out) through another replica: the status is already written.
                log.info("job %s: %s elsewhere; stopping it here", job_id, state.status)
                runner.end(state.status, "")
            elif state.driver != self.replica_id:
                log.warning("job %s: now driven by %s; letting it go", job_id, state.driver or "nobody")
                runner.stop_for_restart()

    # -- ending and stopping -------------------------------------------------------------

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
            # Another replica driving it sees the end within JOB_POLL_SEC, stops and removes the
            # files; a job nobody drives (its lease ran out) is cleaned up here.
            if not self.store.has_live_lease(job_id):
                self.files.remove_work_dir(job_id)
            return True
        return False

    def stop(self, timeout: float = 15.0) -> None:
        """Stop every runner without ending its job, and give the jobs up for another replica."""
        with self._lock:
            self._stopping = True
            runners = list(self._runners.values())
        self._stop.set()
        if self._keeper is not None:
            self._keeper.join(timeout=self.leases.poll_sec + 20)
        for runner in runners:
            runner.stop_for_restart()
        deadline = time.monotonic() + timeout
        for runner in runners:
            runner.thread.join(max(0.0, deadline - time.monotonic()))
        # Their leases are given up as each ends, so the next replica takes the reports up at once.
        self.reports.stop(max(0.0, deadline - time.monotonic()))
        for runner in runners:
            try:
                self.store.release_lease(runner.job_id, self.replica_id)
                log.info("job %s: released for another replica", runner.job_id)
            except Exception as exc:
                log.warning("job %s: could not release its lease (%s); it is taken over when it runs out",
                            runner.job_id, exc)
