"""The piece scheduler: each lane's pieces rendered in order on the pool, with the retry policy.

Each lane runs on a per-job worker pool (MAX_CONCURRENT_CHUNKS wide): its first piece starts the
moment its WAV is on disk, and every later piece is sent with the motion frames its predecessor
returned, so the lane renders as one stream. A worker takes a slot on the job's
EndpointPool for each attempt at a piece. A piece finished earlier (before a restart, or by the
replica that drove the job before) is reused when its part and motion frames are there.

Retry policy: a broken stream or an unavailable endpoint costs one of GENERATOR_MAX_ATTEMPTS; a
busy endpoint's refusal (RESOURCE_EXHAUSTED, when another client filled it) costs a fifth of
one, since the generator is healthy and a slot frees soon; the generator refusing the piece as
bad input (INVALID_ARGUMENT) fails the job at once.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc

from infinitetalk.v1 import common_pb2, generator_pb2
from itk_common.constants import FPS
from itk_common.source_video import VideoError
from itk_gateway.dispatch.clients import ProtocolError, generate_chunk
from itk_gateway.dispatch.pool import AcquireCancelledError, Endpoint, EndpointPool, NoEndpointError
from itk_gateway.jobs.reference import cut_chunk_source
from itk_gateway.jobs.runner.context import MAX_BACKOFF_SEC, JobContext, JobEndedError
from itk_gateway.jobs.runner.stitch import FinishedParts
from itk_gateway.jobs.speakers import chunk_persons
from itk_gateway.storage.database import DatabaseUnavailableError
from itk_gateway.storage.store import CHUNK_DONE, CHUNK_PENDING, CHUNK_RUNNING, FAILED, IN_QUEUE, RUNNING, JobRecord

log = logging.getLogger(__name__)

# Share of the progress bar that generation fills; stitching and upload take the rest.
GENERATION_SHARE = 95
# A busy generator's refusals allowed per failure allowed.
REFUSALS_PER_ATTEMPT = 5


@dataclass(frozen=True)
class Piece:
    """One chunk of a lane, ready to generate once the piece before it is done."""

    index: int
    frame_count: int
    wav: Path
    first_frame: int  # in the whole recording, where a video reference's span starts


class LaneQueue:
    """The pieces of one lane in order, as the splitter cuts them; None once the lane is complete."""

    def __init__(self) -> None:
        self.items: queue.Queue[Piece | None] = queue.Queue()
        self.closed = False

    def put(self, piece: Piece) -> None:
        self.items.put(piece)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.items.put(None)


def raise_generation_progress(ctx: JobContext) -> None:
    """The job's progress from its frames generated so far (up to GENERATION_SHARE)."""
    job = ctx.store.get_job(ctx.job_id)
    if job is None or not job.split_done or job.frames_total <= 0:
        return
    share = GENERATION_SHARE * min(job.frames_done, job.frames_total) // job.frames_total
    ctx.store.raise_progress(ctx.job_id, int(share))


class PieceScheduler:
    """Runs one job's lanes: a worker per lane, pieces in order, each piece retried on the pool."""

    def __init__(self, ctx: JobContext, parts: FinishedParts,
                 on_lost_database: Callable[[DatabaseUnavailableError], None]) -> None:
        self.ctx = ctx
        self.parts = parts
        self.on_lost_database = on_lost_database
        self.lanes: dict[int, LaneQueue] = {}
        self._workers = ThreadPoolExecutor(ctx.settings.max_concurrent_chunks, thread_name_prefix=f"{ctx.job_id}-c")

    # -- fed by the split ----------------------------------------------------------------

    def add(self, job: JobRecord, lane_index: int, piece: Piece) -> None:
        """A piece the splitter cut. Pieces arrive in order, lane after lane: a new lane
        completes the ones before it."""
        for number, lane in self.lanes.items():
            if number < lane_index:
                lane.close()
        lane = self.lanes.get(lane_index)
        if lane is None:
            lane = self.lanes[lane_index] = LaneQueue()
            self._workers.submit(self._lane_worker, job, lane_index, lane)
        lane.put(piece)

    def close(self) -> None:
        """Every lane is complete (the plan is in, or the split gave up). The workers go on with
        what they have; shutdown(wait=False) only stops new submissions."""
        for lane in self.lanes.values():
            lane.close()
        self._workers.shutdown(wait=False)

    # -- one lane, piece after piece -----------------------------------------------------

    def _next_piece(self, lane: LaneQueue) -> Piece | None:
        while True:
            self.ctx.check()
            try:
                return lane.items.get(timeout=0.25)
            except queue.Empty:
                continue

    def _reusable(self, index: int) -> bool:
        """A piece finished earlier (before a restart or a split retry): its part is on disk, and
        so are its motion frames when it returned any."""
        ctx = self.ctx
        record = next((c for c in ctx.store.chunks(ctx.job_id) if c.idx == index), None)
        if record is None or record.status != CHUNK_DONE:
            return False
        return ctx.files.fetch(ctx.files.part(ctx.job_id, index)) and (
            record.motion_frames == 0 or ctx.files.fetch(ctx.files.motion(ctx.job_id, index)))

    def _lane_worker(self, job: JobRecord, lane_index: int, lane: LaneQueue) -> None:
        """Generate a lane's pieces in order, each from the motion frames of the one before."""
        ctx = self.ctx
        motion: Path | None = None
        try:
            while (piece := self._next_piece(lane)) is not None:
                if self._reusable(piece.index):
                    log.info("job %s: chunk %d already generated, reusing it", ctx.job_id, piece.index)
                else:
                    ctx.store.update_chunk(ctx.job_id, piece.index, status=CHUNK_PENDING, frames_done=0)
                    ctx.metrics.chunks.add_pending(1)
                    try:
                        self._generate_with_retries(job, piece, motion)
                    finally:
                        ctx.metrics.chunks.add_pending(-1)
                self.parts.add(piece.index)
                self._publish_parts()
                saved = ctx.files.motion(ctx.job_id, piece.index)
                motion = saved if saved.exists() else None
        except JobEndedError:
            pass
        except DatabaseUnavailableError as exc:
            self.on_lost_database(exc)
        except Exception as exc:
            log.exception("job %s: lane %d crashed", ctx.job_id, lane_index)
            ctx.end(FAILED, f"lane {lane_index}: internal error: {exc}")

    def _publish_parts(self) -> None:
        """Let the live stream take the finished parts (in its own thread: it waits for order)."""
        live = self.ctx.backends.live
        if live is not None:
            threading.Thread(target=live.part_ready, args=(self.ctx.job_id,),
                             name=f"{self.ctx.job_id}-live", daemon=True).start()

    # -- one piece on the pool -----------------------------------------------------------

    def _generate_with_retries(self, job: JobRecord, piece: Piece, motion: Path | None = None) -> None:
        """Run the piece on the pool until it succeeds or its attempts run out (see the module)."""
        ctx = self.ctx
        pool = ctx.backends.pools[job.pool]
        # Cut before taking a generator's slot, so no GPU waits for it.
        reference = self._reference(job, piece)
        tried: list[str] = []
        failures = refusals = 0
        while True:
            ctx.check()
            try:
                # Older jobs first; within a job the longest chunk first, so the last chunks to
                # start are the short ones and the generators finish together.
                endpoint = pool.acquire(avoid=tried, cancelled=ctx.abort, priority=(job.created_at, piece.index),
                                        persons=max(1, job.options.speakers))
            except AcquireCancelledError as exc:
                raise JobEndedError() from exc
            except NoEndpointError as exc:
                ctx.fail(f"chunk {piece.index}: {exc}")
            outcome = self._try_endpoint(job, piece, reference, motion, pool, endpoint, failures + refusals + 1)
            if outcome is None:
                return
            reason, refused = outcome
            tried.append(endpoint.address)
            if refused:
                refusals += 1
            else:
                failures += 1
            attempts = failures + refusals
            if failures >= ctx.settings.max_attempts or refusals >= REFUSALS_PER_ATTEMPT * ctx.settings.max_attempts:
                ctx.fail(f"chunk {piece.index} failed on {attempts} attempts: {reason}")
            log.warning("job %s: chunk %d attempt %d: %s; retrying", ctx.job_id, piece.index, attempts, reason)
            exponent = failures - 1 if not refused else min(refusals, 5) - 3
            backoff = min(MAX_BACKOFF_SEC, ctx.settings.retry_backoff_sec * 2.0**exponent)
            ctx.abort.wait(backoff * random.uniform(0.8, 1.2))

    def _try_endpoint(self, job: JobRecord, piece: Piece, reference: tuple[Path, Path | None],
                      motion: Path | None, pool: EndpointPool, endpoint: Endpoint,
                      attempt: int) -> tuple[str, bool] | None:
        """One attempt; None on success, else (why it failed, whether it was a busy refusal)."""
        ctx, index, frame_count = self.ctx, piece.index, piece.frame_count
        ctx.store.update_chunk(ctx.job_id, index, status=CHUNK_RUNNING, endpoint=endpoint.address,
                               attempts=attempt, frames_done=0)
        ctx.store.promote(ctx.job_id, IN_QUEUE, RUNNING)
        ctx.metrics.chunks.add_pending(-1)
        ctx.metrics.chunks.add_running(1)
        started = time.monotonic()
        try:
            image, source = reference
            summary = generate_chunk(
                endpoint.generator, self._chunk_spec(job, index, frame_count),
                image, piece.wav, ctx.files.part(ctx.job_id, index),
                lambda progress: self._on_progress(index, frame_count, progress), ctx.calls, source,
                motion_in=motion, motion_out=ctx.files.motion(ctx.job_id, index),
            )
        except grpc.RpcError as exc:
            ctx.check()
            code, details = exc.code(), exc.details() or ""
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                ctx.fail(f"chunk {index} rejected by generator {endpoint.address}: {details}")
            ctx.store.update_chunk(ctx.job_id, index, status=CHUNK_PENDING, frames_done=0)
            if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                pool.mark_busy(endpoint)
                return f"generator {endpoint.address} refused (busy: {details})", True
            pool.mark_failed(endpoint, code.name)
            unavailable = "unavailable" if code == grpc.StatusCode.UNAVAILABLE else f"failed ({code.name})"
            return f"generator {endpoint.address} {unavailable}: {details}", False
        except ProtocolError as exc:
            ctx.check()
            pool.mark_failed(endpoint, str(exc))
            ctx.store.update_chunk(ctx.job_id, index, status=CHUNK_PENDING, frames_done=0)
            return f"generator {endpoint.address}: {exc}", False
        finally:
            pool.release(endpoint)
            ctx.metrics.chunks.add_running(-1)
            ctx.metrics.chunks.add_pending(1)
        if summary.frame_count != frame_count:
            ctx.files.part(ctx.job_id, index).unlink(missing_ok=True)
            return f"generator {endpoint.address} made {summary.frame_count} frames, planned {frame_count}", False
        ctx.metrics.chunk_seconds.observe(time.monotonic() - started)
        ctx.metrics.video_seconds.inc(frame_count / FPS)
        # Shared before it is marked done: a replica taking the job over must find every done part
        # and the motion frames the lane continues from.
        ctx.files.publish(ctx.files.part(ctx.job_id, index))
        if summary.motion_frames:
            ctx.files.publish(ctx.files.motion(ctx.job_id, index))
        ctx.store.update_chunk(ctx.job_id, index, status=CHUNK_DONE, frames_done=frame_count,
                               part_width=summary.width, part_height=summary.height,
                               motion_frames=summary.motion_frames)
        raise_generation_progress(ctx)
        return None

    def _reference(self, job: JobRecord, piece: Piece) -> tuple[Path, Path | None]:
        """The image to send, and for a video reference the chunk's own span of the source video
        (its first frame is then the image), so every chunk moves as the source does over its time."""
        files, job_id = self.ctx.files, self.ctx.job_id
        if not files.source_video(job_id).exists():
            return files.image(job_id), None
        try:
            span, poster = cut_chunk_source(files, job_id, piece.index, piece.first_frame, piece.frame_count,
                                            job.options.video_extend)
        except (VideoError, OSError) as exc:
            self.ctx.fail(f"chunk {piece.index}: cutting its span of the source video failed: {exc}")
        return poster, span

    def _chunk_spec(self, job: JobRecord, index: int, frame_count: int) -> generator_pb2.ChunkSpec:
        options = job.options
        chunk = next(c for c in self.ctx.store.chunks(self.ctx.job_id) if c.idx == index)
        return generator_pb2.ChunkSpec(
            job_id=self.ctx.job_id, chunk_index=index, width=options.width, height=options.height,
            prompt=options.prompt, seed=options.seed, frame_count=frame_count,
            force_offload=options.force_offload, sampling=common_pb2.SamplingOptions(**options.sampling),
            lane=chunk.lane, lane_first_frame=chunk.lane_first_frame,
            audio_context_before=chunk.context_before, audio_context_after=chunk.context_after,
            persons=chunk_persons(options),
        )

    def _on_progress(self, index: int, frame_count: int, progress: generator_pb2.Progress) -> None:
        self.ctx.store.update_chunk(self.ctx.job_id, index,
                                    frames_done=min(max(progress.frames_done, 0), frame_count))
        raise_generation_progress(self.ctx)
