"""Running one job: split into lanes, generate each lane's pieces in turn on the pool, stitch.

One JobRunner thread per active job. It decides how many lanes (continuous streams) the job gets,
about one per generator it can use, and streams the saved upload to the splitter, which plans
the lanes and cuts each into pieces (the chunks). Each lane runs on a per-job worker pool
(MAX_CONCURRENT_CHUNKS wide): its first piece starts the moment its WAV is on disk, and every
later piece is sent with the motion frames its predecessor returned, so the lane renders as one
stream. A worker takes a slot on the provider's EndpointPool for each piece. Finished parts go to
the stitcher as they finish, in whatever order, with the seams between lanes to cross-fade.
Everything needed to resume is in the store and in the job's files (published to the shared blob
store when there is one): after a restart, or on another replica that took the job over, the
saved upload is split again with the lane count recorded the first time (the split is
deterministic), pieces whose part and motion frames exist are not generated again, and a lane
goes on from its first unfinished piece. The runner's final writes are fenced by its replica's
lease.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc

from infinitetalk.v1 import common_pb2, generator_pb2, splitter_pb2, stitcher_pb2
from itk_common.constants import FPS, SAMPLES_PER_FRAME
from itk_common.source_video import VideoError
from itk_gateway.dispatch.clients import (
    CallSet,
    ProtocolError,
    SplitChunk,
    SplitterClient,
    StitcherClient,
    generate_chunk,
)
from itk_gateway.dispatch.pool import AcquireCancelledError, Endpoint, EndpointPool, NoEndpointError
from itk_gateway.errors import ApiError, CreationFailedError, InvalidInputError
from itk_gateway.jobs.gate import AcceptGate
from itk_gateway.jobs.reference import cut_chunk_source
from itk_gateway.jobs.speakers import chunk_persons
from itk_gateway.live.publisher import LivePublisher
from itk_gateway.metrics import GatewayMetrics
from itk_gateway.storage.database import DatabaseUnavailableError
from itk_gateway.storage.files import JobFiles, S3Store
from itk_gateway.storage.store import (
    CHUNK_DONE,
    CHUNK_PENDING,
    CHUNK_RUNNING,
    COMPLETED,
    FAILED,
    IN_QUEUE,
    RUNNING,
    TIMED_OUT,
    ChunkRecord,
    JobPlan,
    JobRecord,
    JobStore,
    LaneInfo,
    SeamInfo,
)

log = logging.getLogger(__name__)

# Share of the progress bar that generation fills; stitching and upload take the rest.
GENERATION_SHARE = 95
STITCHED_PROGRESS = 99
SPLIT_ATTEMPTS = 5
# Stitch failures the stitcher reports itself (INTERNAL, a broken answer) allowed per job; an
# unreachable stitcher is waited for instead (STITCHER_WAIT_SEC), finished parts being kept.
STITCH_ATTEMPTS = 3
STITCH_TRANSIENT = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED,
                    grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED, grpc.StatusCode.UNKNOWN)
MAX_BACKOFF_SEC = 30.0
# A busy generator's refusals allowed per failure allowed (see _generate_with_retries).
REFUSALS_PER_ATTEMPT = 5
# The stored lane count of a job planned as independent chunks (0 in the store means "not planned yet").
INDEPENDENT_CHUNKS = -1


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
    min_lane_sec: float = 30.0
    clip_frames: int = 81
    audio_context_sec: float = 2.0
    seam_fade_sec: float = 0.4


class FinishedParts:
    """Indices of chunks whose part is on disk, in the order they finished.

    Nothing is ever taken out: each stitch attempt reads it from the start with a cursor of its
    own. (A shared queue lost parts: a failed attempt's reader, still running in grpc's request
    thread, took the parts put back for the retry, which then waited for ever at 95 %.)
    """

    def __init__(self) -> None:
        self._order: list[int] = []
        self._known: set[int] = set()
        self._changed = threading.Condition()

    def add(self, index: int) -> None:
        with self._changed:
            if index not in self._known:
                self._known.add(index)
                self._order.append(index)
                self._changed.notify_all()

    def after(self, seen: int, timeout: float) -> list[int]:
        """The indices beyond the first `seen`, waiting up to `timeout` for one when there is none."""
        with self._changed:
            self._changed.wait_for(lambda: len(self._order) > seen, timeout)
            return self._order[seen:]


@dataclass(frozen=True)
class Piece:
    """One chunk of a lane, ready to generate once the piece before it is done."""

    index: int
    frame_count: int
    wav: Path


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


class JobEndedError(Exception):
    """Raised inside a runner once the job was failed, cancelled, timed out or the gateway stops."""


class JobRunner:
    def __init__(self, job_id: str, store: JobStore, files: JobFiles, backends: Backends,
                 settings: RunSettings, metrics: GatewayMetrics, gate: AcceptGate | None,
                 on_exit: Callable[[str], None], driver: str | None = None) -> None:
        self.job_id = job_id
        self.driver = driver
        self.store = store
        self.files = files
        self.backends = backends
        self.settings = settings
        self.metrics = metrics
        self.gate = gate
        self.on_exit = on_exit
        self.calls = CallSet()
        self.abort = self.calls.cancelled
        self._end_lock = threading.Lock()
        self.end_status: str | None = None  # a final status, or None when stopping for a restart
        self.end_error = ""
        self.stopping = False
        self.parts = FinishedParts()
        self.frame_counts: dict[int, int] = {}
        self.first_frames: dict[int, int] = {}
        self.lanes: dict[int, LaneQueue] = {}
        self._mix_published = False
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

    def _check(self) -> None:
        if self.abort.is_set():
            raise JobEndedError()

    # -- the job -------------------------------------------------------------------------

    def _run(self) -> None:
        job = self.store.get_job(self.job_id)
        try:
            if job is None:
                return
            self._arm_timeout(job)
            self.files.create_work_dir(self.job_id)
            # A multi-person job's live stream carries the mix, which the split brings.
            if self.backends.live is not None and not job.options.dry_run and job.options.speakers < 2:
                self.backends.live.start(self.job_id)
            self._execute(job)
        except JobEndedError:
            pass
        except DatabaseUnavailableError as exc:
            self._lost_database(exc)
        except Exception as exc:
            log.exception("job %s: unexpected error", self.job_id)
            self.end(FAILED, f"internal error: {exc}")
        finally:
            if self._timer is not None:
                self._timer.cancel()
            self._finish()
            self.on_exit(self.job_id)

    def _arm_timeout(self, job: JobRecord) -> None:
        if self.settings.job_timeout_sec <= 0:
            return
        remaining = job.created_at + self.settings.job_timeout_sec - time.time()
        message = f"job exceeded JOB_TIMEOUT_SEC={self.settings.job_timeout_sec:g}"
        self._timer = threading.Timer(max(0.0, remaining), self.end, (TIMED_OUT, message))
        self._timer.daemon = True
        self._timer.start()

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

    def _execute(self, job: JobRecord) -> None:
        chunks = self._split_and_dispatch(job)
        if job.options.dry_run:
            self._complete(job, has_video=False)
            return
        self._stitch(job, chunks)

    def _refuse(self, error: ApiError) -> None:
        """Refuse the job while its creator still waits: leave no trace of it. Returns when too late."""
        if self.gate is None or not self.gate.claim_rejection():
            return
        self.calls.cancel_all()
        self.files.remove_work_dir(self.job_id)
        self.store.delete_job(self.job_id)
        self.gate.reject(error)
        raise JobEndedError()

    # -- split and dispatch --------------------------------------------------------------

    def _lane_count(self, job: JobRecord) -> int:
        """The lanes to plan: what the job asked for, else one per generator slot it can use now
        (free pool capacity, less what other jobs wait for), within MAX_CONCURRENT_CHUNKS. On a
        pool whose generators cannot continue motion (remote providers) 0: independent chunks cut
        at pauses, all in parallel. A resumed job keeps the choice it was first planned with (the
        store says INDEPENDENT_CHUNKS for 0), so its finished pieces still fit."""
        if job.lane_count:
            return max(0, job.lane_count)
        pool = self.backends.pools[job.provider]
        if job.options.lanes > 0:
            count = job.options.lanes
        elif not pool.continues_motion():
            count = 0
        else:
            count = max(1, min(pool.free_slots(), self.settings.max_concurrent_chunks))
        self.store.update_job(self.job_id, lane_count=count or INDEPENDENT_CHUNKS)
        job.lane_count = count or INDEPENDENT_CHUNKS
        return count

    def _split_options(self, job: JobRecord) -> splitter_pb2.SplitOptions:
        target = job.options.chunk_target_sec or self.settings.chunk_target_sec
        return splitter_pb2.SplitOptions(
            chunk_target_sec=target, lane_count=self._lane_count(job), min_lane_sec=self.settings.min_lane_sec,
            clip_frames=self.settings.clip_frames, motion_frames=int(job.options.sampling.get("motion_frames", 0)),
            audio_context_sec=self.settings.audio_context_sec, seam_fade_sec=self.settings.seam_fade_sec,
            track_count=job.options.speakers, channels_as_tracks=job.options.stereo_speakers,
            audio_type=job.options.audio_type,
        )

    def _split_and_dispatch(self, job: JobRecord) -> list[ChunkRecord]:
        workers = ThreadPoolExecutor(self.settings.max_concurrent_chunks, thread_name_prefix=f"{self.job_id}-c")
        submitted: set[int] = set()
        try:
            for attempt in range(1, SPLIT_ATTEMPTS + 1):
                try:
                    plan = self._split_once(job, workers, submitted)
                    break
                except grpc.RpcError as exc:
                    self._check()
                    code, details = exc.code(), exc.details() or ""
                    if code == grpc.StatusCode.INVALID_ARGUMENT:
                        message = details if details.lower().startswith("audio") else f"audio: {details}"
                        self._refuse(InvalidInputError(message))
                        self.end(FAILED, f"audio rejected by the splitter: {details}")
                        raise JobEndedError() from exc
                    self._refuse(CreationFailedError(f"splitter unavailable ({code.name}): {details}"))
                    if attempt == SPLIT_ATTEMPTS:
                        self.end(FAILED, f"splitting failed on {attempt} attempts: {code.name} {details}")
                        raise JobEndedError() from exc
                    log.warning("job %s: split attempt %d failed (%s), retrying", self.job_id, attempt, code.name)
                    self.abort.wait(min(MAX_BACKOFF_SEC, 2.0 * attempt))
                    self._check()
                except ProtocolError as exc:
                    self.end(FAILED, f"splitter: {exc}")
                    raise JobEndedError() from exc
            chunks = self._record_plan(plan)
            if self.gate is not None:
                self.gate.accept()
            return chunks
        finally:
            # Every lane is complete once the plan is in (or the split gave up).
            for lane in self.lanes.values():
                lane.close()
            # Workers keep running while we stitch; shutdown(wait=False) only stops new submissions.
            workers.shutdown(wait=False)

    def _split_once(self, job: JobRecord, workers: ThreadPoolExecutor,
                    submitted: set[int]) -> splitter_pb2.SplitPlan:
        speakers = job.options.speakers
        recordings = ([self.files.speaker_audio(self.job_id, person) for person in range(1, speakers + 1)]
                      if speakers >= 2 and not job.options.stereo_speakers else [self.files.audio(self.job_id)])
        mix = self.files.mix(self.job_id) if speakers >= 2 else None
        events = self.backends.splitter.split(
            recordings, self._split_options(job),
            lambda index: self.files.chunk_wav(self.job_id, index), self.calls, mix_path=mix,
        )
        try:
            for event in events:
                self._check()
                if mix is not None and mix.exists() and not self._mix_published:
                    self._mix_published = True
                    self.files.publish(mix)
                    if self.backends.live is not None and not job.options.dry_run:
                        self.backends.live.start(self.job_id)
                if isinstance(event, SplitChunk):
                    self._on_chunk(job, event, workers, submitted)
                else:
                    return event
        finally:
            events.close()
        raise ProtocolError("splitter stream ended without a plan")

    def _on_chunk(self, job: JobRecord, event: SplitChunk, workers: ThreadPoolExecutor,
                  submitted: set[int]) -> None:
        span = event.span
        self.store.record_chunk(ChunkRecord(
            self.job_id, span.index, span.start_sample, span.end_sample, span.frame_count,
            lane=span.lane, lane_first_frame=span.lane_first_frame,
            context_before=span.start_sample - span.wav_start_sample,
            context_after=span.wav_end_sample - span.end_sample,
        ))
        self.frame_counts[span.index] = span.frame_count
        self.first_frames[span.index] = span.start_sample // SAMPLES_PER_FRAME
        if self.gate is not None:
            self.gate.accept()
        if job.options.dry_run or span.index in submitted:
            return
        submitted.add(span.index)
        # Chunks arrive in order, lane after lane: a new lane completes the ones before it.
        for number, lane in self.lanes.items():
            if number < span.lane:
                lane.close()
        lane = self.lanes.get(span.lane)
        if lane is None:
            lane = self.lanes[span.lane] = LaneQueue()
            workers.submit(self._lane_worker, job, span.lane, lane)
        lane.put(Piece(span.index, span.frame_count, event.wav_path))

    def _record_plan(self, plan: splitter_pb2.SplitPlan) -> list[ChunkRecord]:
        if len(plan.chunks) != len(self.frame_counts) or not plan.chunks:
            self.end(FAILED, f"splitter plan lists {len(plan.chunks)} chunks but sent {len(self.frame_counts)}")
            raise JobEndedError()
        self.store.drop_chunks_from(self.job_id, len(plan.chunks))
        rate = plan.sample_rate or 16000
        lanes = JobPlan(
            lanes=[LaneInfo(lane.index, lane.start_sample / rate, lane.end_sample / rate, lane.first_chunk,
                            lane.chunk_count) for lane in plan.lanes],
            seams=[SeamInfo(seam.chunk_index, seam.time_sec, seam.pause_start_sec, seam.pause_end_sec,
                            seam.fade_frames) for seam in plan.seams],
        )
        self.store.update_job(
            self.job_id, chunk_count=len(plan.chunks), frames_total=plan.total_frames,
            duration_sec=plan.duration_sec, split_done=1, plan=lanes.to_json(),
        )
        self._update_progress()
        return self.store.chunks(self.job_id)

    # -- one lane, piece after piece -----------------------------------------------------

    def _next_piece(self, lane: LaneQueue) -> Piece | None:
        while True:
            self._check()
            try:
                return lane.items.get(timeout=0.25)
            except queue.Empty:
                continue

    def _reusable(self, index: int) -> bool:
        """A piece finished earlier (before a restart or a split retry): its part is on disk, and
        so are its motion frames when it returned any."""
        record = next((c for c in self.store.chunks(self.job_id) if c.idx == index), None)
        if record is None or record.status != CHUNK_DONE:
            return False
        return self.files.fetch(self.files.part(self.job_id, index)) and (
            record.motion_frames == 0 or self.files.fetch(self.files.motion(self.job_id, index)))

    def _lane_worker(self, job: JobRecord, lane_index: int, lane: LaneQueue) -> None:
        """Generate a lane's pieces in order, each from the motion frames of the one before."""
        motion: Path | None = None
        try:
            while (piece := self._next_piece(lane)) is not None:
                if self._reusable(piece.index):
                    log.info("job %s: chunk %d already generated, reusing it", self.job_id, piece.index)
                else:
                    self.store.update_chunk(self.job_id, piece.index, status=CHUNK_PENDING, frames_done=0)
                    self.metrics.chunks.add_pending(1)
                    try:
                        self._generate_with_retries(job, piece.index, piece.frame_count, piece.wav, motion)
                    finally:
                        self.metrics.chunks.add_pending(-1)
                self.parts.add(piece.index)
                self._publish_parts()
                saved = self.files.motion(self.job_id, piece.index)
                motion = saved if saved.exists() else None
        except JobEndedError:
            pass
        except DatabaseUnavailableError as exc:
            self._lost_database(exc)
        except Exception as exc:
            log.exception("job %s: lane %d crashed", self.job_id, lane_index)
            self.end(FAILED, f"lane {lane_index}: internal error: {exc}")

    # -- one chunk on the pool -----------------------------------------------------------

    def _generate_with_retries(self, job: JobRecord, index: int, frame_count: int, wav: Path,
                               motion: Path | None = None) -> None:
        """Run the chunk on the pool until it succeeds or its attempts run out.

        A broken stream or an unavailable endpoint costs one of GENERATOR_MAX_ATTEMPTS; a busy
        endpoint's refusal (RESOURCE_EXHAUSTED, when another client filled it) costs a fifth of
        one, since the generator is healthy and a slot frees soon.
        """
        pool = self.backends.pools[job.provider]
        # Cut before taking a generator's slot, so no GPU waits for it.
        reference = self._reference(job, index, frame_count)
        tried: list[str] = []
        failures = refusals = 0
        while True:
            self._check()
            try:
                # Older jobs first; within a job the longest chunk first, so the last chunks to
                # start are the short ones and the generators finish together.
                endpoint = pool.acquire(avoid=tried, cancelled=self.abort,
                                        priority=(job.created_at, index), persons=max(1, job.options.speakers))
            except AcquireCancelledError as exc:
                raise JobEndedError() from exc
            except NoEndpointError as exc:
                self.end(FAILED, f"chunk {index}: {exc}")
                raise JobEndedError() from exc
            outcome = self._try_endpoint(job, index, frame_count, wav, reference, motion, pool, endpoint,
                                         failures + refusals + 1)
            if outcome is None:
                return
            reason, refused = outcome
            tried.append(endpoint.address)
            if refused:
                refusals += 1
            else:
                failures += 1
            attempts = failures + refusals
            if failures >= self.settings.max_attempts or refusals >= REFUSALS_PER_ATTEMPT * self.settings.max_attempts:
                self.end(FAILED, f"chunk {index} failed on {attempts} attempts: {reason}")
                raise JobEndedError()
            log.warning("job %s: chunk %d attempt %d: %s; retrying", self.job_id, index, attempts, reason)
            exponent = failures - 1 if not refused else min(refusals, 5) - 3
            backoff = min(MAX_BACKOFF_SEC, self.settings.retry_backoff_sec * 2.0**exponent)
            self.abort.wait(backoff * random.uniform(0.8, 1.2))

    def _try_endpoint(self, job: JobRecord, index: int, frame_count: int, wav: Path,
                      reference: tuple[Path, Path | None], motion: Path | None, pool: EndpointPool,
                      endpoint: Endpoint, attempt: int) -> tuple[str, bool] | None:
        """One attempt; None on success, else (why it failed, whether it was a busy refusal)."""
        self.store.update_chunk(self.job_id, index, status=CHUNK_RUNNING, endpoint=endpoint.address,
                                attempts=attempt, frames_done=0)
        self.store.promote(self.job_id, IN_QUEUE, RUNNING)
        self.metrics.chunks.add_pending(-1)
        self.metrics.chunks.add_running(1)
        started = time.monotonic()
        try:
            image, source = reference
            summary = generate_chunk(
                endpoint.generator, self._chunk_spec(job, index, frame_count),
                image, wav, self.files.part(self.job_id, index),
                lambda progress: self._on_progress(index, frame_count, progress), self.calls, source,
                motion_in=motion, motion_out=self.files.motion(self.job_id, index),
            )
        except grpc.RpcError as exc:
            self._check()
            code, details = exc.code(), exc.details() or ""
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                self.end(FAILED, f"chunk {index} rejected by generator {endpoint.address}: {details}")
                raise JobEndedError() from exc
            self.store.update_chunk(self.job_id, index, status=CHUNK_PENDING, frames_done=0)
            if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                pool.mark_busy(endpoint)
                return f"generator {endpoint.address} refused (busy: {details})", True
            pool.mark_failed(endpoint, code.name)
            unavailable = "unavailable" if code == grpc.StatusCode.UNAVAILABLE else f"failed ({code.name})"
            return f"generator {endpoint.address} {unavailable}: {details}", False
        except ProtocolError as exc:
            self._check()
            pool.mark_failed(endpoint, str(exc))
            self.store.update_chunk(self.job_id, index, status=CHUNK_PENDING, frames_done=0)
            return f"generator {endpoint.address}: {exc}", False
        finally:
            pool.release(endpoint)
            self.metrics.chunks.add_running(-1)
            self.metrics.chunks.add_pending(1)
        if summary.frame_count != frame_count:
            self.files.part(self.job_id, index).unlink(missing_ok=True)
            return f"generator {endpoint.address} made {summary.frame_count} frames, planned {frame_count}", False
        self.metrics.chunk_seconds.observe(time.monotonic() - started)
        self.metrics.video_seconds.inc(frame_count / FPS)
        # Shared before it is marked done: a replica taking the job over must find every done part
        # and the motion frames the lane continues from.
        self.files.publish(self.files.part(self.job_id, index))
        if summary.motion_frames:
            self.files.publish(self.files.motion(self.job_id, index))
        self.store.update_chunk(self.job_id, index, status=CHUNK_DONE, frames_done=frame_count,
                                part_width=summary.width, part_height=summary.height,
                                motion_frames=summary.motion_frames)
        self._update_progress()
        return None

    def _publish_parts(self) -> None:
        """Let the live stream take the finished parts (in its own thread: it waits for order)."""
        if self.backends.live is not None:
            threading.Thread(target=self.backends.live.part_ready, args=(self.job_id,),
                             name=f"{self.job_id}-live", daemon=True).start()

    def _reference(self, job: JobRecord, index: int, frame_count: int) -> tuple[Path, Path | None]:
        """The image to send, and for a video reference the chunk's own span of the source video
        (its first frame is then the image), so every chunk moves as the source does over its time."""
        if not self.files.source_video(self.job_id).exists():
            return self.files.image(self.job_id), None
        try:
            span, poster = cut_chunk_source(self.files, self.job_id, index, self.first_frames[index], frame_count,
                                            job.options.video_extend)
        except (VideoError, OSError) as exc:
            self.end(FAILED, f"chunk {index}: cutting its span of the source video failed: {exc}")
            raise JobEndedError() from exc
        return poster, span

    def _chunk_spec(self, job: JobRecord, index: int, frame_count: int) -> generator_pb2.ChunkSpec:
        options = job.options
        chunk = next(c for c in self.store.chunks(self.job_id) if c.idx == index)
        return generator_pb2.ChunkSpec(
            job_id=self.job_id, chunk_index=index, width=options.width, height=options.height,
            prompt=options.prompt, seed=options.seed, frame_count=frame_count,
            force_offload=options.force_offload, sampling=common_pb2.SamplingOptions(**options.sampling),
            lane=chunk.lane, lane_first_frame=chunk.lane_first_frame,
            audio_context_before=chunk.context_before, audio_context_after=chunk.context_after,
            persons=chunk_persons(options),
        )

    def _on_progress(self, index: int, frame_count: int, progress: generator_pb2.Progress) -> None:
        self.store.update_chunk(self.job_id, index, frames_done=min(max(progress.frames_done, 0), frame_count))
        self._update_progress()

    def _update_progress(self) -> None:
        job = self.store.get_job(self.job_id)
        if job is None or not job.split_done or job.frames_total <= 0:
            return
        share = GENERATION_SHARE * min(job.frames_done, job.frames_total) // job.frames_total
        self.store.raise_progress(self.job_id, int(share))

    # -- stitch and deliver --------------------------------------------------------------

    def _next_parts(self, count: int, first: int, attempt_over: threading.Event) -> Iterator[tuple[int, Path]]:
        sent = {first}
        yield first, self.files.part(self.job_id, first)
        seen = 0
        while len(sent) < count:
            if self.abort.is_set() or attempt_over.is_set():
                # Raising here would be swallowed by grpc; the call is cancelled or over anyway.
                return
            fresh = self.parts.after(seen, 0.25)
            seen += len(fresh)
            for index in fresh:
                if index not in sent:
                    sent.add(index)
                    yield index, self.files.part(self.job_id, index)

    def _wait_first_part(self) -> int:
        while True:
            self._check()
            ready = self.parts.after(0, 0.25)
            if ready:
                return ready[0]

    def _stitcher_deadline(self, job: JobRecord, away_since: float) -> float | None:
        """When to stop waiting for an unreachable stitcher (time.time()), None for never."""
        limits = []
        if self.settings.stitcher_wait_sec > 0:
            limits.append(away_since + self.settings.stitcher_wait_sec)
        if self.settings.job_timeout_sec > 0:
            limits.append(job.created_at + self.settings.job_timeout_sec)
        return min(limits) if limits else None

    def _stitch(self, job: JobRecord, chunks: list[ChunkRecord]) -> None:
        """Stitch once every part is there; retry while the stitcher is away, keeping the parts."""
        count = len(chunks)
        result = self.files.result(self.job_id)
        failures = 0  # errors the stitcher itself reported
        away_since: float | None = None
        attempt = 0
        while True:
            attempt += 1
            first = self._wait_first_part()
            dims = {c.idx: (c.part_width, c.part_height) for c in self.store.chunks(self.job_id)}
            width, height = dims[first]
            plan = self.store.get_job(self.job_id)
            seams = plan.plan.seams if plan is not None else []
            header = stitcher_pb2.StitchHeader(
                job_id=self.job_id, chunk_count=count, fps=FPS, width=width, height=height,
                frame_counts=[c.frame_count for c in chunks],
                seams=[stitcher_pb2.SeamFade(chunk_index=seam.chunk_index, fade_frames=seam.fade_frames)
                       for seam in seams if seam.fade_frames > 0],
            )
            attempt_over = threading.Event()
            try:
                self.backends.stitcher.stitch(
                    header, self.files.sound(self.job_id), self._next_parts(count, first, attempt_over), result,
                    self.calls,
                )
                break
            except grpc.RpcError as exc:
                self._check()
                code, details = exc.code(), exc.details() or ""
                reason = f"{code.name}: {details}"
                if code == grpc.StatusCode.INVALID_ARGUMENT:
                    self.end(FAILED, f"stitching failed: {reason}")
                    raise JobEndedError() from exc
                transient = code in STITCH_TRANSIENT
            except ProtocolError as exc:
                self._check()
                reason, transient = str(exc), False
            finally:
                attempt_over.set()
            if transient:
                away_since = away_since or time.time()
                deadline = self._stitcher_deadline(job, away_since)
                if deadline is not None and time.time() >= deadline:
                    self.end(FAILED, f"stitching failed: the stitcher was unreachable for "
                                     f"{time.time() - away_since:.0f} s ({reason})")
                    raise JobEndedError()
            else:
                away_since = None
                failures += 1
                if failures >= STITCH_ATTEMPTS:
                    self.end(FAILED, f"stitching failed on {failures} attempts: {reason}")
                    raise JobEndedError()
            backoff = min(MAX_BACKOFF_SEC, self.settings.retry_backoff_sec * 2.0 ** min(attempt - 1, 5))
            log.warning("job %s: stitch attempt %d failed (%s); retrying in %.1f s", self.job_id, attempt,
                        reason, backoff)
            self.abort.wait(backoff)
            self._check()
        self.store.raise_progress(self.job_id, STITCHED_PROGRESS)
        self._complete(job, has_video=True)

    def _complete(self, job: JobRecord, has_video: bool) -> None:
        s3_key = ""
        if has_video and job.options.push_to_s3:
            s3 = self.backends.s3
            if s3 is None:
                self.end(FAILED, "push_to_s3 requested but S3 is not configured")
                raise JobEndedError()
            s3_key = s3.key_for(self.job_id)
            try:
                s3.upload(self.files.result(self.job_id), s3_key)
            except Exception as exc:
                self.end(FAILED, f"upload to S3 failed: {exc}")
                raise JobEndedError() from exc
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
        # The inputs go before the status says COMPLETED; a crash in between is caught when the
        # job is resumed (Orchestrator._resume), which completes a job whose result is there.
        self.files.remove_work_dir(self.job_id)
        if self.store.finish_job(self.job_id, COMPLETED, driver=self.driver, progress=100,
                                 has_video=int(has_video), s3_key=s3_key):
            log.info("job %s: COMPLETED", self.job_id)
        if s3_key:
            self.files.remove_result(self.job_id)
        elif self.files.shared is not None:
            self.files.remove_local_result(self.job_id)  # served from the shared store
