"""The job as clients see it: the one definition of its shape.

REST (`api/rest_models.py` builds JobResponse from these fields and `job_json` writes them), gRPC
(`api/grpc_api.py` fills `infinitetalk.v1.Job` field by field) and the Python client
(`itk_client.models.Job`) all follow it; tests/gateway/test_job_view.py fails when one of them
has a field this model lacks or lacks one it has. Fields marked `internal` stay in the gateway.

`provider` keeps the seed API's name: it is the generator pool the job runs on.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


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
    """Where one lane ends and the next starts, cross-faded inside the pause it lies in."""

    time_sec: float = described("Where the seam lies in the recording")
    chunk_index: int = described("The first chunk of the lane after the seam")
    pause_start_sec: float = described("Start of the pause the seam lies in")
    pause_end_sec: float = described("End of the pause the seam lies in")
    fade_frames: int = described("Frames cross-faded on each side of the seam (0: a hard cut)")


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
        body[f.name] = [view_as_dict(item) for item in value] if isinstance(value, tuple) else value
    return body
