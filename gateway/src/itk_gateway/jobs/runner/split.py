"""The split step: the saved upload streamed to the splitter, its pieces handed on as they are cut.

The splitter plans the lanes and cuts each into pieces (the chunks); each piece is recorded in
the store and given to the piece scheduler the moment its WAV is on disk, so generation starts
long before the split ends. The split is deterministic: a resumed job is split again with the
lane count recorded the first time, and its finished pieces still fit. An unreachable splitter
is retried SPLIT_ATTEMPTS times; a refusal of the audio while the creator still waits is a
validation error with no job left behind (see gate.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import grpc

from infinitetalk.v1 import splitter_pb2
from itk_common.constants import SAMPLES_PER_FRAME
from itk_gateway.dispatch.clients import ProtocolError, SplitChunk
from itk_gateway.errors import ApiError, CreationFailedError, InvalidInputError
from itk_gateway.jobs.runner.context import MAX_BACKOFF_SEC, JobContext
from itk_gateway.jobs.runner.lanes import split_options
from itk_gateway.jobs.runner.pieces import Piece, PieceScheduler, raise_generation_progress
from itk_gateway.storage.store import ChunkRecord, JobPlan, JobRecord, LaneInfo, SeamInfo

log = logging.getLogger(__name__)

SPLIT_ATTEMPTS = 5


class SplitStep:
    def __init__(self, ctx: JobContext, scheduler: PieceScheduler, refuse: Callable[[ApiError], None],
                 accepted: Callable[[], None]) -> None:
        self.ctx = ctx
        self.scheduler = scheduler
        # Refuse the job while its creator still waits (returns when too late); tell the creator
        # the splitter took the audio.
        self.refuse = refuse
        self.accepted = accepted
        self.frame_counts: dict[int, int] = {}
        self._submitted: set[int] = set()
        self._mix_published = False

    def run(self, job: JobRecord) -> list[ChunkRecord]:
        """Split the job, feeding the scheduler as pieces come; the job's chunks once planned."""
        ctx = self.ctx
        try:
            for attempt in range(1, SPLIT_ATTEMPTS + 1):
                try:
                    plan = self._split_once(job)
                    break
                except grpc.RpcError as exc:
                    ctx.check()
                    code, details = exc.code(), exc.details() or ""
                    if code == grpc.StatusCode.INVALID_ARGUMENT:
                        message = details if details.lower().startswith("audio") else f"audio: {details}"
                        self.refuse(InvalidInputError(message))
                        ctx.fail(f"audio rejected by the splitter: {details}")
                    self.refuse(CreationFailedError(f"splitter unavailable ({code.name}): {details}"))
                    if attempt == SPLIT_ATTEMPTS:
                        ctx.fail(f"splitting failed on {attempt} attempts: {code.name} {details}")
                    log.warning("job %s: split attempt %d failed (%s), retrying", ctx.job_id, attempt, code.name)
                    ctx.abort.wait(min(MAX_BACKOFF_SEC, 2.0 * attempt))
                    ctx.check()
                except ProtocolError as exc:
                    ctx.fail(f"splitter: {exc}")
            chunks = self._record_plan(plan)
            self.accepted()
            return chunks
        finally:
            self.scheduler.close()

    def _split_once(self, job: JobRecord) -> splitter_pb2.SplitPlan:
        ctx = self.ctx
        speakers = job.options.speakers
        # A two-person job: each speaker's recording in turn (or one stereo recording), and the
        # mix of the normalised tracks back, for the final video and the live stream.
        recordings = ([ctx.files.speaker_audio(ctx.job_id, person) for person in range(1, speakers + 1)]
                      if speakers >= 2 and not job.options.stereo_speakers else [ctx.files.audio(ctx.job_id)])
        mix = ctx.files.mix(ctx.job_id) if speakers >= 2 else None
        events = ctx.backends.splitter.split(
            recordings, split_options(ctx, job),
            lambda index: ctx.files.chunk_wav(ctx.job_id, index), ctx.calls, mix_path=mix,
        )
        try:
            for event in events:
                ctx.check()
                if mix is not None and not self._mix_published and mix.exists():
                    self._mix_published = True
                    ctx.files.publish(mix)
                    if ctx.backends.live is not None and not job.options.dry_run:
                        ctx.backends.live.start(ctx.job_id)
                if isinstance(event, SplitChunk):
                    self._on_chunk(job, event)
                else:
                    return event
        finally:
            events.close()
        raise ProtocolError("splitter stream ended without a plan")

    def _on_chunk(self, job: JobRecord, event: SplitChunk) -> None:
        ctx, span = self.ctx, event.span
        ctx.store.record_chunk(ChunkRecord(
            ctx.job_id, span.index, span.start_sample, span.end_sample, span.frame_count,
            lane=span.lane, lane_first_frame=span.lane_first_frame,
            context_before=span.start_sample - span.wav_start_sample,
            context_after=span.wav_end_sample - span.end_sample,
        ))
        self.frame_counts[span.index] = span.frame_count
        self.accepted()
        if job.options.dry_run or span.index in self._submitted:
            return
        self._submitted.add(span.index)
        self.scheduler.add(job, span.lane, Piece(span.index, span.frame_count, event.wav_path,
                                                 span.start_sample // SAMPLES_PER_FRAME))

    def _record_plan(self, plan: splitter_pb2.SplitPlan) -> list[ChunkRecord]:
        ctx = self.ctx
        if len(plan.chunks) != len(self.frame_counts) or not plan.chunks:
            ctx.fail(f"splitter plan lists {len(plan.chunks)} chunks but sent {len(self.frame_counts)}")
        ctx.store.drop_chunks_from(ctx.job_id, len(plan.chunks))
        rate = plan.sample_rate or 16000
        lanes = JobPlan(
            lanes=[LaneInfo(lane.index, lane.start_sample / rate, lane.end_sample / rate, lane.first_chunk,
                            lane.chunk_count) for lane in plan.lanes],
            seams=[SeamInfo(seam.chunk_index, seam.time_sec, seam.pause_start_sec, seam.pause_end_sec,
                            seam.fade_frames, seam.in_voiced_speech) for seam in plan.seams],
        )
        ctx.store.update_job(
            ctx.job_id, chunk_count=len(plan.chunks), frames_total=plan.total_frames,
            duration_sec=plan.duration_sec, split_done=1, plan=lanes.to_json(),
        )
        raise_generation_progress(ctx)
        return ctx.store.chunks(ctx.job_id)
