"""After a job completed: its quality report, computed by the stitcher and stored on the job.

What the report needs from the work folder (the piece boundaries and seams in frames, the portrait)
is taken before the folder goes, then the job is marked COMPLETED with the report pending, then
the stitcher's Assess RPC computes it from the finished MP4. The job stays COMPLETED whatever
happens here: a failure is recorded on the report.
"""

from __future__ import annotations

import logging
import time

import grpc

from infinitetalk.v1 import stitcher_pb2
from itk_common.quality.report import quality_text, report_state
from itk_gateway.jobs.runner.context import JobContext

log = logging.getLogger(__name__)


class QualityRequest:
    """The report's inputs, read while the job's work folder still exists."""

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
        # The portrait; a dubbed video's first frame is its own reference (None).
        image = ctx.files.image(job_id)
        self.reference = None
        if image.exists() and not ctx.files.source_video(job_id).exists():
            self.reference = image.read_bytes()

    @staticmethod
    def pending() -> str:
        return quality_text(report_state("pending"))

    def run(self) -> None:
        """Compute and store the report (the job is already COMPLETED)."""
        ctx = self.ctx
        started = time.monotonic()
        try:
            report = ctx.backends.stitcher.assess(self.header, ctx.files.result(ctx.job_id), self.reference,
                                                  ctx.calls, timeout=ctx.settings.quality_timeout_sec)
        except grpc.RpcError as exc:
            stopped = ctx.abort.is_set() or exc.code() == grpc.StatusCode.CANCELLED
            reason = "the gateway stopped before it was done" if stopped else f"{exc.code().name}: {exc.details()}"
            log.warning("job %s: no quality report: %s", ctx.job_id, reason)
            report = report_state("failed", reason)
        except OSError as exc:  # the video was deleted meanwhile
            report = report_state("failed", f"the video is gone: {exc.strerror or exc}")
        ctx.store.update_job(ctx.job_id, quality=quality_text(report))
        if report.state == "ready":
            ctx.metrics.observe_quality(report, time.monotonic() - started)
