"""The job's reference: a portrait, or a video to dub, recognised by the uploaded bytes.

A video (MP4/H.264, MOV, WebM, MKV; any frame rate, any rotation) is checked and normalised
once here, before the job is accepted, so a bad or truncated video is a validation error that
names the problem and leaves nothing behind. The normalised file (25 fps, upright, size-capped)
lives in the job's folder until the job ends; each chunk's span is cut from it when the chunk is
sent (`cut_chunk_source`). With no audio uploaded, the video's own sound track becomes the audio.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import av

from itk_common.source_video import (
    ExtendMode,
    VideoError,
    copy_audio_track,
    cut_span,
    looks_like_video,
    normalize,
    probe,
)
from itk_common.video import probe_video
from itk_gateway.errors import InvalidInputError
from itk_gateway.jobs.validation import SNIFF_BYTES, check_image
from itk_gateway.storage.files import JobFiles, tmp_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoLimits:
    max_duration_sec: float
    max_pixels: int
    max_side: int


def is_video_file(path: Path) -> bool:
    with path.open("rb") as handle:
        return looks_like_video(handle.read(SNIFF_BYTES))


def prepare_reference(name: str, image: Path, audio: Path, normalized: Path, limits: VideoLimits,
                      max_image_pixels: int) -> bool:
    """Check the reference at `image`; for a video, write its normalised copy to `normalized`
    and, when `audio` is empty, its sound track to `audio`. Returns whether it is a video."""
    if not is_video_file(image):
        check_image(name, image.read_bytes(), max_image_pixels)
        return False
    try:
        info = probe(image)
        if info.width * info.height > limits.max_pixels:
            raise InvalidInputError(
                f"{name}: {info.width}x{info.height} video exceeds {limits.max_pixels} pixels per frame")
        normalize(image, normalized, max_side=limits.max_side, max_duration_sec=limits.max_duration_sec)
    except VideoError as exc:
        raise InvalidInputError(f"{name}: {exc}") from exc
    if not audio.exists() or audio.stat().st_size == 0:
        if not info.has_audio:
            raise InvalidInputError(f"audio: required (the {name} video has no sound track to use instead)")
        try:
            copy_audio_track(image, audio)
        except Exception as exc:  # a broken audio stream in an otherwise decodable video
            raise InvalidInputError(f"audio: the {name} video's sound track cannot be read ({exc})") from exc
    return True


def check_audio_file(name: str, path: Path) -> None:
    """A fetched file must at least be a container with an audio stream (the splitter decodes it)."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise InvalidInputError(f"{name}: not audio (the file has no audio stream)")
    except av.FFmpegError as exc:
        raise InvalidInputError(f"{name}: not an audio file ({exc})") from exc


def cut_chunk_source(files: JobFiles, job_id: str, index: int, first_frame: int, frame_count: int,
                     extend: str) -> tuple[Path, Path]:
    """Chunk `index`'s span of the normalised source video and its first frame (cached on disk)."""
    span, poster = files.source_span(job_id, index), files.source_poster(job_id, index)
    if span.exists() and poster.exists():
        return span, poster
    normalized = files.source_video(job_id)
    source_frames = probe_video(normalized).frame_count
    partial_span, partial_poster = tmp_path(span), tmp_path(poster)
    try:
        cut_span(normalized, source_frames, first_frame, frame_count, ExtendMode(extend or "hold"),
                 partial_span, partial_poster)
        partial_poster.replace(poster)
        partial_span.replace(span)
    finally:
        partial_span.unlink(missing_ok=True)
        partial_poster.unlink(missing_ok=True)
    return span, poster
