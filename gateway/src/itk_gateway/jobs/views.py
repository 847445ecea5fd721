"""A job as clients see it: the one mapping from the store's record to what every API shows.

REST, gRPC, server-sent events and webhooks all describe a job through JobViews, so they cannot
disagree about it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from itk_gateway.live.publisher import LivePublisher
from itk_gateway.storage.files import S3Store
from itk_gateway.storage.store import CHUNK_DONE, COMPLETED, JobRecord, JobStore


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class JobView:
    """A job as clients see it."""

    id: str
    provider: str
    status: str
    progress: int
    error: str
    video_url: str
    chunk_count: int
    chunks_done: int
    frames_total: int
    frames_done: int
    duration_sec: float
    seed: int
    width: int
    height: int
    created_at: str
    updated_at: str
    video_available: bool
    push_to_s3: bool
    dry_run: bool
    # The plan, once the split is done: continuous streams and the seams between them.
    lanes: tuple[LaneView, ...] = ()
    seams: tuple[SeamView, ...] = ()
    # Two people talking: each speaker's face box as used ([x0, y0, x1, y1] pixels of the image,
    # person 1 first) and where the boxes came from ("request" or "faces": detected); empty for one.
    speakers: tuple[SpeakerView, ...] = ()
    boxes_from: str = ""
    audio_type: str = ""


@dataclass(frozen=True)
class SpeakerView:
    person: int
    box: tuple[int, ...]


@dataclass(frozen=True)
class LaneView:
    index: int
    start_sec: float
    end_sec: float
    chunk_count: int
    chunks_done: int


@dataclass(frozen=True)
class SeamView:
    time_sec: float
    chunk_index: int  # the first chunk of the lane after the seam
    pause_start_sec: float
    pause_end_sec: float
    fade_frames: int


class JobViews:
    """Turns job records into views, with their pieces and live segments."""

    def __init__(self, store: JobStore, s3: S3Store | None, live: LivePublisher | None) -> None:
        self.store = store
        self.s3 = s3
        self.live = live

    def view(self, record: JobRecord) -> JobView:
        video_url = ""
        if record.status == COMPLETED and record.has_video and record.s3_key and self.s3 is not None:
            video_url = self.s3.presigned_url(record.s3_key)
        return JobView(
            id=record.id, provider=record.provider, status=record.status, progress=record.progress,
            error=record.error, video_url=video_url, chunk_count=record.chunk_count,
            chunks_done=record.chunks_done, frames_total=record.frames_total, frames_done=record.frames_done,
            duration_sec=record.duration_sec, seed=record.options.seed, width=record.options.width,
            height=record.options.height, created_at=_iso(record.created_at), updated_at=_iso(record.updated_at),
            video_available=record.status == COMPLETED and record.has_video,
            push_to_s3=record.options.push_to_s3, dry_run=record.options.dry_run,
            lanes=tuple(LaneView(lane.index, round(lane.start_sec, 3), round(lane.end_sec, 3), lane.chunk_count,
                                 record.lane_chunks_done.get(lane.index, 0)) for lane in record.plan.lanes),
            seams=tuple(SeamView(round(seam.time_sec, 3), seam.chunk_index, round(seam.pause_start_sec, 3),
                                 round(seam.pause_end_sec, 3), seam.fade_frames) for seam in record.plan.seams),
            speakers=tuple(SpeakerView(person, tuple(box)) for person, box in
                           enumerate(record.options.boxes, start=1)) if record.options.speakers >= 2 else (),
            boxes_from=record.options.boxes_from,
            audio_type=(record.options.audio_type or "para") if record.options.speakers >= 2 else "",
        )

    def progress_of(self, record: JobRecord) -> dict:
        """The job's pieces (chunks, each with the lane it belongs to), live segments ready and an
        estimate of the time left."""
        chunks = self.store.chunks(record.id)
        # Pieces left unfinished by a job that ended (failed, cancelled) are "stopped", not still running.
        stopped = record.finished and record.status != COMPLETED
        pieces = [{"index": c.idx, "lane": c.lane,
                   "status": "stopped" if stopped and c.status != CHUNK_DONE else c.status,
                   "frames_done": c.frames_done, "frames": c.frame_count, "endpoint": c.endpoint,
                   "attempts": c.attempts} for c in chunks]
        segments = len(self.live.manifest(record.id).segments) if self.live is not None else 0
        return {"pieces": pieces, "segments_ready": segments, "eta_sec": _time_left(record)}


def _time_left(record: JobRecord) -> float | None:
    """Seconds until the job is done at the rate frames have been generated so far (None when
    there is no rate yet or the job ended)."""
    if record.finished or not record.split_done or record.frames_done <= 0 or record.frames_total <= 0:
        return None
    elapsed = max(0.0, time.time() - record.created_at)
    left = record.frames_total - min(record.frames_done, record.frames_total)
    return round(elapsed * left / record.frames_done, 1)


def changed(before: JobView, after: JobView) -> bool:
    # The presigned URL differs on every read; it is not a change of the job.
    return before.__dict__ | {"video_url": ""} != after.__dict__ | {"video_url": ""}
