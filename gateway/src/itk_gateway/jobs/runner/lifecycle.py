"""One job's life on this replica: start, the steps, its deadline, its end and the clean-up.

One JobRunner thread per active job runs the steps in turn: the split (split.py) feeds the
piece scheduler (pieces.py) as pieces are cut, and the stitch (stitch.py) takes the parts as
they finish; then the result is delivered (published to the shared store, or pushed to S3), and
once the job is COMPLETED its quality report is computed (quality.py).
Everything needed to resume is in the store and in the job's files (published to the shared
blob store when there is one): after a restart, or on another replica that took the job over,
the saved upload is split again with the lane count recorded the first time, pieces whose part
and motion frames exist are not generated again, and a lane goes on from its first unfinished
piece.

Ending: the first reason wins (`end`: failed, cancelled, timed out by JOB_TIMEOUT_SEC); stopping
for a restart (`stop_for_restart`: the gateway stops, the lease went elsewhere, the database
stayed unreachable) leaves the job resumable. Either way every RPC of the job is cancelled and
the runner cleans up once: files first, then the final status, fenced by this replica's lease,
then the lease itself is released.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from itk_gateway.dispatch.clients import CallSet
from itk_gateway.errors import ApiError
from itk_gateway.jobs.gate import AcceptGate
from itk_gateway.jobs.runner.context import Backends, JobContext, JobEndedError, RunSettings
from itk_gateway.jobs.runner.pieces import PieceScheduler
from itk_gateway.jobs.runner.quality import QualityRequest
from itk_gateway.jobs.runner.split import SplitStep
from itk_gateway.jobs.runner.stitch import FinishedParts, StitchStep
from itk_gateway.metrics import GatewayMetrics
from itk_gateway.storage.database import DatabaseUnavailableError
from itk_gateway.storage.files import JobFiles
from itk_gateway.storage.space import is_storage_full
from itk_gateway.storage.store import COMPLETED, FAILED, TIMED_OUT, JobRecord, JobStore

log = logging.getLogger(__name__)

STITCHED_PROGRESS = 99


class JobRunner:
    def __init__(self, job_id: str, store: JobStore, files: JobFiles, backends: Backends,
                 settings: RunSettings, metrics: GatewayMetrics, gate: AcceptGate | None,
                 on_exit: Callable[[str], None], driver: str | None = None,
                 prepare: Callable[[threading.Event], None] | None = None) -> None:
        self.job_id = job_id
        self.driver = driver
        self.store = store
        self.files = files
        self.backends = backends
        self.settings = settings
        self.gate = gate
        self.on_exit = on_exit
        # Brings the job's inputs in (URL downloads) before the split; None when they are there.
        self.prepare = prepare
        self.calls = CallSet()
        self.ctx = JobContext(job_id, store, files, backends, settings, metrics, self.calls, self.end)
        self._end_lock = threading.Lock()
        self.end_status: str | None = None  # a final status, or None when stopping for a restart
        self.end_error = ""
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name=f"job-{job_id}", daemon=True)
        self._timer: threading.Timer | None = None

    # -- control from outside ------------------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def end(self, status: str, error: str) -> bool:
        """Stop the job with a final status; the first reason wins (True if this one did)."""
        with self._end_lock:
            if self.end_status is not None or self.stopping:
                return False
            self.end_status, self.end_error = status, error
        self.calls.cancel_all()
        return True

    def stop_for_restart(self) -> None:
        with self._end_lock:
            if self.end_status is None:
                self.stopping = True
        self.calls.cancel_all()

    def _lost_database(self, exc: DatabaseUnavailableError) -> None:
        """The database stayed unreachable: nothing about the job is wrong, so leave it resumable
        (its lease is no longer renewed, and whichever replica claims it next goes on with it)."""
        log.warning("job %s: stopping, %s", self.job_id, exc)
        self.stop_for_restart()

    # -- the job -------------------------------------------------------------------------

    def _run(self) -> None:
        job = self.store.get_job(self.job_id)
        try:
            if job is None:
                return
            self._arm_timeout(job)
            self.files.create_work_dir(self.job_id)
            if self.prepare is not None:
                self._prepare()
                job = self.store.get_job(self.job_id)  # its options may be completed from the inputs
                if job is None:
                    return
            # A two-person job's live stream carries the mix of the tracks, which the split brings.
            if self.backends.live is not None and not job.options.dry_run and job.options.speakers < 2:
                self.backends.live.start(self.job_id)
            self._execute(job)
        except JobEndedError:
            pass
        except DatabaseUnavailableError as exc:
            self._lost_database(exc)
        except Exception as exc:
            if is_storage_full(exc):
                self.end(FAILED, f"the gateway's storage is full: {exc}")
            else:
                log.exception("job %s: unexpected error", self.job_id)
                self.end(FAILED, f"internal error: {exc}")
        finally:
            if self._timer is not None:
                self._timer.cancel()
            try:
                self._finish()
            except Exception:
                # Not recorded (the database or the volume failing): the job stays active with
                # a lease no longer renewed, so it is claimed and resumed, never left hanging.
                log.exception("job %s: cleaning up failed; left for a resume", self.job_id)
            finally:
                self.on_exit(self.job_id)

    def _arm_timeout(self, job: JobRecord) -> None:
        if self.settings.job_timeout_sec <= 0:
            return
        remaining = job.created_at + self.settings.job_timeout_sec - time.time()
        message = f"job exceeded JOB_TIMEOUT_SEC={self.settings.job_timeout_sec:g}"
        self._timer = threading.Timer(max(0.0, remaining), self.end, (TIMED_OUT, message))
        self._timer.daemon = True
        self._timer.start()

    def _prepare(self) -> None:
        """Download the inputs; a bad one is refused while the creator waits, else fails the job."""
        if self.prepare is None:
            return
        try:
            self.prepare(self.ctx.abort)
        except ApiError as exc:
            self.ctx.check()
            self._refuse(exc)
            self.ctx.fail(exc.message)

    def _execute(self, job: JobRecord) -> None:
        parts = FinishedParts()
        scheduler = PieceScheduler(self.ctx, parts, self._lost_database)
        chunks = SplitStep(self.ctx, scheduler, self._refuse, self._accepted).run(job)
        if job.options.dry_run:
            self._complete(job, has_video=False)
            return
        self._when_room("stitching", lambda: StitchStep(self.ctx, parts).run(job, chunks))
        self.store.raise_progress(self.job_id, STITCHED_PROGRESS)
        self._complete(job, has_video=True)

    def _when_room(self, what: str, step: Callable[[], None]) -> None:
        """Run the step; when the volume is full, wait for room and run it again."""
        while True:
            try:
                step()
                return
            except JobEndedError:
                raise
            except Exception as exc:
                if not is_storage_full(exc):
                    raise
                self.ctx.wait_for_space(what, exc)

    def _accepted(self) -> None:
        if self.gate is not None:
            self.gate.accept()

    def _refuse(self, error: ApiError) -> None:
        """Refuse the job while its creator still waits: leave no trace of it. Returns when too late."""
        if self.gate is None or not self.gate.claim_rejection():
            return
        self.calls.cancel_all()
        self.files.remove_work_dir(self.job_id)
        self.store.delete_job(self.job_id)
        self.gate.reject(error)
        raise JobEndedError()

    # -- the end ---------------------------------------------------------------------------

    def _complete(self, job: JobRecord, has_video: bool) -> None:
        s3_key = ""
        s3 = self.backends.s3
        # Validation refuses push_to_s3 where S3 is not configured.
        if has_video and job.options.push_to_s3 and s3 is not None:
            s3_key = s3.key_for(self.job_id)
            try:
                s3.upload(self.files.result(self.job_id), s3_key)
            except Exception as exc:
                self.ctx.fail(f"upload to S3 failed: {exc}")
        elif has_video:
            self.files.publish(self.files.result(self.job_id))
        if self.driver is not None:
            state = self.store.lease_states([self.job_id]).get(self.job_id)
            if state is not None and state.driver != self.driver:
                # Taken over meanwhile (this replica missed its renewals): the new driver finishes it.
                self.stop_for_restart()
                raise JobEndedError()
        with self._end_lock:
            if self.end_status is not None or self.stopping:
                raise JobEndedError()
            self.end_status = COMPLETED
        if has_video and self.backends.live is not None:
            # The last segments come from the parts, which go with the work folder.
            self.backends.live.complete(self.job_id)
        quality = QualityRequest(self.ctx) if has_video and self.settings.quality_report else None
        if quality is not None:
            quality.keep_reference()
        # The inputs go before the status says COMPLETED; a crash in between is caught when the
        # job is resumed (Orchestrator._resume), which completes a job whose result is there.
        self.files.remove_work_dir(self.job_id)
        pending = {"quality": QualityRequest.pending()} if quality is not None else {}
        if self.store.finish_job(self.job_id, COMPLETED, driver=self.driver, progress=100,
                                 has_video=int(has_video), s3_key=s3_key, **pending):
            log.info("job %s: COMPLETED", self.job_id)
            if quality is not None:
                # Off the job's path: it is COMPLETED already; the result is still here. Stopped
                # first, the report stays pending for the next replica (jobs/reports.py).
                quality.run()
        if s3_key:
            self.files.remove_result(self.job_id)
        elif self.files.shared is not None:
            self.files.remove_local_result(self.job_id)  # served from the shared store

    def _finish(self) -> None:
        live = self.backends.live
        if self.stopping and self.end_status is None:
            log.info("job %s: left resumable", self.job_id)
            if live is not None:
                live.stop(self.job_id)
            if self.files.shared is not None:
                # Whoever resumes it reads the shared copies; this replica's are no longer needed.
                self.files.remove_local_work_dir(self.job_id)
            return
        if live is not None and self.end_status != COMPLETED:
            live.discard(self.job_id)
        if self.gate is not None and self.gate.error is not None:
            return  # refused at creation: the job and its files are already gone
        # Files go first, so whoever sees the final status also sees them gone.
        self.files.remove_work_dir(self.job_id)
        if self.end_status not in (None, COMPLETED) and self.store.finish_job(
            self.job_id, self.end_status, self.end_error, driver=self.driver
        ):
            log.info("job %s: %s %s", self.job_id, self.end_status, self.end_error)
        if self.gate is not None:
            self.gate.accept()
        job = self.store.get_job(self.job_id)
        if job is not None and job.status != COMPLETED:
            self.files.remove_result(self.job_id)
        if self.driver is not None:
            # Cleaned up: nothing is left for another replica to do (see Orchestrator._sweep).
            self.store.release_lease(self.job_id, self.driver)
