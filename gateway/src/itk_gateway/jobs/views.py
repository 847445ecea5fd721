"""A job as clients see it: the one definition of its shape and the one mapping from the store's
record to it.

REST, gRPC, server-sent events and webhooks all describe a job through JobViews, so they cannot
disagree about it. REST (`api/rest_models.py` builds JobResponse from these fields and `job_json`
writes them), gRPC (`api/grpc_api.py` fills `infinitetalk.v1.Job` field by field) and the Python
client (`itk_client.models.Job`) all follow JobView; tests/gateway/test_job_view.py fails when one
of them has a field it lacks or lacks one it has. Fields marked `internal` stay in the gateway.
`provider` keeps the Infinitetalk REST API's name: it is the generator pool the job runs on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import UTC, datetime
from typing import Any

from itk_gateway.jobs.eta import TimeLeft
from itk_gateway.live.publisher import LivePublisher
from itk_gateway.storage.files import S3Store
from itk_gateway.storage.store import CHUNK_DONE, COMPLETED, JobRecord, JobStore


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def described(doc: str, **extra: Any) -> Any:
    """A field's description, for the OpenAPI document (and the reader)."""
    return field(metadata={"doc": doc, **extra})


def internal(doc: str) -> Any:
    """A field the gateway needs that no API shows."""
    return field(metadata={"doc": doc, "internal": True})


@dataclass(frozen=True)
class LaneView:
    """One continuous stream of the job: its pieces continue each other's motion."""

    index: int = described("Lane number, from 0")
    start_sec: float = described("Where the lane starts in the recording")
    end_sec: float = described("Where the lane ends in the recording")
    chunk_count: int = described("Pieces the lane is cut into")
    chunks_done: int = described("Pieces rendered so far")


@dataclass(frozen=True)
class SeamView:
    """Where one lane ends and the next starts, cross-faded inside the pause (or shorter gap between
    words) it lies in."""

    time_sec: float = described("Where the seam lies in the recording")
    chunk_index: int = described("The first chunk of the lane after the seam")
    pause_start_sec: float = described("Start of the pause the seam lies in")
    pause_end_sec: float = described("End of the pause the seam lies in")
    fade_frames: int = described("Frames cross-faded on each side of the seam (0: a hard cut)")
    in_voiced_speech: bool = described("The recording has no gap between words where the seam could go, so it "
                                       "lies in voiced speech, as a hard cut")


@dataclass(frozen=True)
class SpeakerView:
    """One speaker of a two-person job and the face box used for them."""

    person: int = described("1 or 2")
    box: tuple[int, ...] = described("[x0, y0, x1, y1] in pixels of the uploaded image")


@dataclass(frozen=True)
class JobView:
    """GET /jobs/{id}: the seed's JobResponse plus progress detail."""

    id: str = described("The job's id")
    provider: str = described("The generator pool the job runs on (the seed API's name for it)")
    status: str = described("IN_QUEUE, RUNNING, COMPLETED, FAILED, CANCELLED or TIMED_OUT")
    progress: int = described("0-100, monotonic, following generated frames")
    error: str = described("Why the job failed; absent otherwise", omit_empty=True)
    video_url: str = described("A presigned URL when the video was pushed to S3", omit_empty=True)
    chunk_count: int = described("Pieces the recording is cut into (0 until split)")
    chunks_done: int = described("Pieces rendered so far")
    frames_total: int = described("Video frames of the whole job")
    frames_done: int = described("Video frames rendered so far")
    duration_sec: float = described("Length of the recording")
    seed: int = described("The seed used (a random one when the request sent none)")
    width: int = described("Video width in pixels")
    height: int = described("Video height in pixels")
    created_at: str = described("When the job was created (ISO 8601, UTC)")
    updated_at: str = described("When the job last changed (ISO 8601, UTC)")
    video_available: bool = described("Whether the finished video can be downloaded")
    push_to_s3: bool = internal("The result goes to S3 (a presigned URL instead of the file)")
    dry_run: bool = internal("Split and plan only; nothing is rendered")
    lane_count: int = described("Continuous streams the job was planned as (0 until split)")
    # The plan, once the split is done: continuous streams and the seams between them.
    lanes: tuple[LaneView, ...] = field(default=(), metadata={"doc": "The lanes (continuous streams)"})
    seams: tuple[SeamView, ...] = field(default=(), metadata={"doc": "The seams between lanes"})
    # Two people talking: each speaker's face box as used, person 1 first; empty for one speaker.
    speakers: tuple[SpeakerView, ...] = field(default=(), metadata={
        "doc": "Two people talking: each speaker and the face box used for them"})
    boxes_from: str = field(default="", metadata={
        "doc": "Where the speakers' boxes came from: request, or faces (detected in the portrait, left to right = "
               "person 1, 2)", "omit_empty": True})
    audio_type: str = field(default="", metadata={"doc": "Two people talking: para or add", "omit_empty": True})
    # JSON of the QualityReport message (protos/infinitetalk/v1/quality.proto, one home for its
    # shape); gRPC carries the message itself.
    quality: dict[str, Any] | None = field(default=None, metadata={
        "doc": "The quality report once the job completed (QualityReport of protos/infinitetalk/v1/quality.proto "
               "as JSON; `state` pending, ready, failed or off); null before", "message": "QualityReport"})

    @property
    def quality_pending(self) -> bool:
        return self.quality is not None and self.quality.get("state") == "pending"


def public_fields(view_class: type) -> list[Any]:
    """The fields every API shows, in order."""
    return [f for f in fields(view_class) if not f.metadata.get("internal")]


def view_as_dict(view: LaneView | SeamView | JobView) -> dict[str, Any]:
    """The public fields as JSON-ready values (lanes and seams as lists of objects); empty fields
    marked `omit_empty` are left out, as the seed API leaves out an empty error or video URL."""
    body: dict[str, Any] = {}
    for f in public_fields(type(view)):
        value = getattr(view, f.name)
        if f.metadata.get("omit_empty") and not value:
            continue
        body[f.name] = [view_as_dict(item) if is_dataclass(item) else item for item in value] \
            if isinstance(value, tuple) else value
    return body


class JobViews:
    """Turns job records into views, with their pieces and live segments."""

    def __init__(self, store: JobStore, s3: S3Store | None, live: LivePublisher | None) -> None:
        self.store = store
        self.s3 = s3
        self.live = live
        self.time_left = TimeLeft()

    def view(self, record: JobRecord) -> JobView:
        video_url = ""
        if record.status == COMPLETED and record.has_video and record.s3_key and self.s3 is not None:
            video_url = self.s3.presigned_url(record.s3_key)
        return JobView(
            id=record.id, provider=record.pool, status=record.status, progress=record.progress,
            error=record.error, video_url=video_url, chunk_count=record.chunk_count,
            chunks_done=record.chunks_done, frames_total=record.frames_total, frames_done=record.frames_done,
            duration_sec=record.duration_sec, seed=record.options.seed, width=record.options.width,
            height=record.options.height, created_at=_iso(record.created_at), updated_at=_iso(record.updated_at),
            video_available=record.status == COMPLETED and record.has_video,
            push_to_s3=record.options.push_to_s3, dry_run=record.options.dry_run,
            lane_count=len(record.plan.lanes),
            lanes=tuple(LaneView(lane.index, round(lane.start_sec, 3), round(lane.end_sec, 3), lane.chunk_count,
                                 record.lane_chunks_done.get(lane.index, 0)) for lane in record.plan.lanes),
            seams=tuple(SeamView(round(seam.time_sec, 3), seam.chunk_index, round(seam.pause_start_sec, 3),
                                 round(seam.pause_end_sec, 3), seam.fade_frames, seam.in_voiced_speech)
                        for seam in record.plan.seams),
            quality=json.loads(record.quality) if record.quality else None,
            speakers=tuple(SpeakerView(person, tuple(box)) for person, box in
                           enumerate(record.options.boxes, start=1)) if record.options.speakers >= 2 else (),
            boxes_from=record.options.boxes_from if record.options.speakers >= 2 else "",
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
        return {"pieces": pieces, "segments_ready": segments, "eta_sec": self.time_left(record)}


def changed(before: JobView, after: JobView) -> bool:
    # The presigned URL differs on every read; it is not a change of the job.
    return before.__dict__ | {"video_url": ""} != after.__dict__ | {"video_url": ""}
