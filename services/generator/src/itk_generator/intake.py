"""Reading and checking one Generate request stream: ChunkSpec first, then image and audio pieces.

Every problem is an `InvalidChunkError` whose message names the offending field, which the service
returns as INVALID_ARGUMENT.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from infinitetalk.v1 import generator_pb2
from itk_common.constants import SAMPLES_PER_FRAME, frames_for_samples
from itk_common.motion import MotionFormatError, decode_motion
from itk_common.video import count_video_frames
from itk_common.wav import WavFormatError, decode_wav

from .backend import ChunkJob, SamplingSettings
from .images import ImageDecodeError, decode_image

MAX_SIDE = 4096
MAX_IMAGE_BYTES = 32 * 1024 * 1024
# 16-bit mono at 16 kHz: 64 MiB is about 35 minutes, far more than any chunk the splitter makes.
MAX_AUDIO_BYTES = 64 * 1024 * 1024
# A chunk's span of source video, at 25 fps and the gateway's size cap.
MAX_SOURCE_VIDEO_BYTES = 512 * 1024 * 1024
# Nine float16 frames at 4096x4096 would be 864 MiB; at 720p (1280x720) they are 48 MiB.
MAX_MOTION_BYTES = 256 * 1024 * 1024
MAX_MOTION_FRAMES = 64


class InvalidChunkError(ValueError):
    """The request is malformed; the message names the field."""


def check_spec(spec: generator_pb2.ChunkSpec) -> None:
    if spec.frame_count <= 0:
        raise InvalidChunkError(f"spec.frame_count must be positive, got {spec.frame_count}")
    for field in ("width", "height"):
        value = getattr(spec, field)
        if not 1 <= value <= MAX_SIDE:
            raise InvalidChunkError(f"spec.{field} must be between 1 and {MAX_SIDE}, got {value}")
    if spec.chunk_index < 0:
        raise InvalidChunkError(f"spec.chunk_index must not be negative, got {spec.chunk_index}")
    # Preset and resolution names belong to the backend, which refuses unknown ones (BackendError).
    sampling = spec.sampling
    for field in ("steps", "shift", "text_guidance", "audio_guidance", "motion_frames"):
        if getattr(sampling, field) < 0:
            raise InvalidChunkError(f"spec.sampling.{field} must not be negative")
    for field in ("lane", "lane_first_frame", "audio_context_before", "audio_context_after"):
        if getattr(spec, field) < 0:
            raise InvalidChunkError(f"spec.{field} must not be negative, got {getattr(spec, field)}")


class _Blob:
    """One payload arriving as DataPieces; complete at the piece marked `last`."""

    def __init__(self, name: str, limit: int) -> None:
        self.name, self.limit = name, limit
        self.parts: list[bytes] = []
        self.size = 0
        self.complete = False

    def add(self, data: bytes, last: bool) -> None:
        if self.complete:
            raise InvalidChunkError(f"{self.name} piece arrived after the piece marked last")
        self.size += len(data)
        if self.size > self.limit:
            raise InvalidChunkError(f"{self.name} is larger than {self.limit // (1024 * 1024)} MiB")
        self.parts.append(data)
        self.complete = last

    def data(self) -> bytes:
        if not self.complete:
            raise InvalidChunkError(f"{self.name} is missing or incomplete (no piece marked last)")
        return b"".join(self.parts)


def read_spec(requests: Iterator[generator_pb2.GenerateRequest]) -> generator_pb2.ChunkSpec:
    first = next(requests, None)
    if first is None or first.WhichOneof("payload") != "spec":
        raise InvalidChunkError("spec must be the first message of the stream")
    check_spec(first.spec)
    return first.spec


def read_payload(requests: Iterator[generator_pb2.GenerateRequest],
                 with_motion: bool = False) -> tuple[bytes, bytes, bytes | None, bytes | None]:
    """Collect the image, the audio and (when the spec announced them) the motion frames, in any
    order, until all are complete; a source video, when there is one, comes before them."""
    blobs = {"image": _Blob("image", MAX_IMAGE_BYTES), "audio": _Blob("audio", MAX_AUDIO_BYTES),
             "source_video": _Blob("source_video", MAX_SOURCE_VIDEO_BYTES)}
    if with_motion:
        blobs["motion"] = _Blob("motion", MAX_MOTION_BYTES)
    while not all(blob.complete for name, blob in blobs.items() if name != "source_video"):
        request = next(requests, None)
        if request is None:
            break
        kind = request.WhichOneof("payload")
        if kind not in blobs:
            hint = " (motion pieces need spec.has_motion)" if kind == "motion" else ""
            raise InvalidChunkError(f"unexpected {kind or 'empty'} message after the spec{hint}")
        piece = getattr(request, kind)
        blobs[kind].add(piece.data, piece.last)
    source = blobs["source_video"]
    motion = blobs["motion"].data() if with_motion else None
    return blobs["image"].data(), blobs["audio"].data(), source.data() if source.parts else None, motion


def check_source_video(data: bytes, frame_count: int) -> None:
    """The source video must hold one 25 fps frame per chunk frame (counted without decoding)."""
    try:
        frames = count_video_frames(data)
    except ValueError as exc:
        raise InvalidChunkError(f"source_video: {exc}") from exc
    if frames != frame_count:
        raise InvalidChunkError(f"source_video has {frames} frames but spec.frame_count is {frame_count}")


def read_motion(data: bytes | None) -> np.ndarray | None:
    if data is None:
        return None
    try:
        frames = decode_motion(data)
    except MotionFormatError as exc:
        raise InvalidChunkError(f"motion: {exc}") from exc
    if len(frames) > MAX_MOTION_FRAMES:
        raise InvalidChunkError(f"motion: {len(frames)} frames, at most {MAX_MOTION_FRAMES}")
    return frames


def build_job(spec: generator_pb2.ChunkSpec, image: bytes, audio_wav: bytes,
              source_video: bytes | None = None, motion: bytes | None = None) -> ChunkJob:
    try:
        decode_image(image)
    except ImageDecodeError as exc:
        raise InvalidChunkError(f"image: {exc}") from exc
    try:
        samples = decode_wav(audio_wav)
    except WavFormatError as exc:
        raise InvalidChunkError(f"audio: {exc} (need 16 kHz mono pcm_s16le WAV)") from exc
    before, after = spec.audio_context_before, spec.audio_context_after
    own = len(samples) - before - after
    if own <= 0:
        raise InvalidChunkError(
            f"audio has {len(samples)} samples, no more than its context "
            f"(spec.audio_context_before {before} + spec.audio_context_after {after})")
    needed = frames_for_samples(own)
    if spec.frame_count != needed:
        raise InvalidChunkError(
            f"spec.frame_count is {spec.frame_count} but the audio's {own} samples (without context) make "
            f"{needed} frames (ceil(samples / {SAMPLES_PER_FRAME}))"
        )
    if source_video is not None:
        check_source_video(source_video, spec.frame_count)
    options = spec.sampling
    return ChunkJob(
        job_id=spec.job_id,
        chunk_index=spec.chunk_index,
        image=image,
        audio=samples[before : before + own],
        frame_count=spec.frame_count,
        width=spec.width,
        height=spec.height,
        prompt=spec.prompt,
        seed=spec.seed,
        sampling=SamplingSettings(
            preset=options.preset,
            steps=options.steps,
            shift=options.shift,
            text_guidance=options.text_guidance,
            audio_guidance=options.audio_guidance,
            motion_frames=options.motion_frames,
            teacache=options.teacache,
            color_correction=options.color_correction if options.HasField("color_correction") else True,
            resolution=options.resolution,
        ),
        force_offload=spec.force_offload,
        source_video=source_video,
        lane=spec.lane,
        lane_first_frame=spec.lane_first_frame,
        context_audio=samples if before or after else None,
        context_before=before,
        motion=read_motion(motion),
    )


def read_chunk(requests: Iterator[generator_pb2.GenerateRequest]) -> ChunkJob:
    spec = read_spec(requests)
    image, audio, source_video, motion = read_payload(requests, with_motion=spec.has_motion)
    return build_job(spec, image, audio, source_video, motion)
