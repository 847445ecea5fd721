"""After a job completed: its quality report, computed by the stitcher and stored on the job.

The portrait is kept beside the result before the work folder goes, then the job is marked
COMPLETED with the report pending, then the stitcher's Assess RPC computes it from the finished
MP4. The job stays COMPLETED whatever happens here: a failure is recorded on the report. A report
left pending by a gateway that stopped or died is taken up by the next replica to claim it
(jobs/reports.py), from the same inputs.
"""

from __future__ import annotations

import logging
import os
import time

import grpc

from infinitetalk.v1 import stitcher_pb2
from itk_common.quality.report import quality_text, report_state
from itk_gateway.jobs.runner.context import JobContext
from itk_gateway.storage.files import tmp_path

log = logging.getLogger(__name__)


class QualityRequest:
    """The report's inputs: the piece boundaries and seams (from the store, which keeps a job's
    chunks and plan after it ends) and the portrait kept beside the result (`keep_reference`)."""

    def __init__(self, ctx: JobContext) -> None:
        self.ctx = ctx
        job_id = ctx.job_id
        chunks = sorted(ctx.store.chunks(job_id), key=lambda chunk: chunk.idx)
        firsts, frame = {}, 0
        for chunk in chunks:
            firsts[chunk.idx] = frame
            frame += chunk.frame_count
        job = ctx.store.get_job(job_id)
        seams = job.plan.seams if job is not None else []
        self.header = stitcher_pb2.AssessHeader(
            job_id=job_id, boundary_frames=[firsts[c.idx] for c in chunks if firsts[c.idx] > 0],
            seam_frames=[firsts[seam.chunk_index] for seam in seams if seam.chunk_index in firsts],
            fade_frames=max((seam.fade_frames for seam in seams), default=0),
        )
        self.portrait: bytes | None = None  # set by keep_reference on the replica that completed the job

    def keep_reference(self) -> None:
        """Before the work folder goes: the portrait beside the result, for whoever computes the
        report (this runner holds it in memory too, should the copy fail on a full volume). A
        dubbed video has none: its own first frame is the reference."""
        files, job_id = self.ctx.files, self.ctx.job_id
        image = files.image(job_id)
        if not image.exists() or files.source_video(job_id).exists():
            return
        self.portrait = image.read_bytes()
        target = files.quality_reference(job_id)
        partial = tmp_path(target)
        try:
            partial.write_bytes(self.portrait)
            os.replace(partial, target)
            files.publish(target)
        except Exception as exc:  # a full volume, the blob store away: the job is done regardless
            partial.unlink(missing_ok=True)
            log.warning("job %s: could not keep the portrait for its quality report (%s)", job_id, exc)

    @staticmethod
    def pending() -> str:
        return quality_text(report_state("pending"))

    def run(self) -> bool:
        """Compute and store the report (the job is already COMPLETED). False when the gateway
        stopped first: the report stays pending, for the replica that takes it up next."""
        ctx, files, job_id = self.ctx, self.ctx.files, self.ctx.job_id
        started = time.monotonic()
        reference_path = files.quality_reference(job_id)
        reference = reference_path.read_bytes() if files.fetch(reference_path) else self.portrait
        result = files.result(job_id)
        fetched = not result.exists() and files.fetch(result)  # computed on another replica than the job
        try:
            if not result.exists():
                raise FileNotFoundError(f"no {result.name} on this gateway or in the shared store")
            report = ctx.backends.stitcher.assess(self.header, result, reference, ctx.calls,
                                                  timeout=ctx.settings.quality_timeout_sec)
        except (grpc.RpcError, grpc.FutureCancelledError) as exc:
            if ctx.abort.is_set():  # the call was cancelled because the gateway stops
                log.info("job %s: the gateway stops; its quality report is left pending", job_id)
                return False
            reason = (f"{exc.code().name}: {exc.details()}" if isinstance(exc, grpc.RpcError)
                      else "the stitcher's call was cancelled")
            log.warning("job %s: no quality report: %s", job_id, reason)
            report = report_state("failed", reason)
        except OSError as exc:  # the video was deleted meanwhile
            report = report_state("failed", f"the video is gone: {exc.strerror or exc}")
        finally:
            if fetched:
                files.remove_local_result(job_id)
        ctx.store.update_job(job_id, quality=quality_text(report))
        files.remove_quality_reference(job_id)
        if report.state == "ready":
            ctx.metrics.observe_quality(report, time.monotonic() - started)
        return True
