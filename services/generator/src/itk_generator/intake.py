"""Reading and checking one Generate request stream: ChunkSpec first, then image and audio pieces.

Every problem is an `InvalidChunkError` whose message names the offending field, which the service
returns as INVALID_ARGUMENT.
"""

from __future__ import annotations

from collections.abc import Iterator

from infinitetalk.v1 import generator_pb2
from itk_common.constants import SAMPLES_PER_FRAME, frames_for_samples
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


def read_payload(requests: Iterator[generator_pb2.GenerateRequest]) -> tuple[bytes, bytes, bytes | None]:
    """Collect the image and the audio, in any order, until both are complete; a source video,
    when there is one, comes before them."""
    blobs = {"image": _Blob("image", MAX_IMAGE_BYTES), "audio": _Blob("audio", MAX_AUDIO_BYTES),
             "source_video": _Blob("source_video", MAX_SOURCE_VIDEO_BYTES)}
    while not (blobs["image"].complete and blobs["audio"].complete):
        request = next(requests, None)
        if request is None:
            break
        kind = request.WhichOneof("payload")
        if kind not in blobs:
            raise InvalidChunkError(f"unexpected {kind or 'empty'} message after the spec")
        piece = getattr(request, kind)
        blobs[kind].add(piece.data, piece.last)
    source = blobs["source_video"]
    return blobs["image"].data(), blobs["audio"].data(), source.data() if source.parts else None


def check_source_video(data: bytes, frame_count: int) -> None:
    """The source video must hold one 25 fps frame per chunk frame (counted without decoding)."""
    try:
        frames = count_video_frames(data)
    except ValueError as exc:
        raise InvalidChunkError(f"source_video: {exc}") from exc
    if frames != frame_count:
        raise InvalidChunkError(f"source_video has {frames} frames but spec.frame_count is {frame_count}")


def build_job(spec: generator_pb2.ChunkSpec, image: bytes, audio_wav: bytes,
              source_video: bytes | None = None) -> ChunkJob:
    try:
        decode_image(image)
    except ImageDecodeError as exc:
        raise InvalidChunkError(f"image: {exc}") from exc
    try:
        samples = decode_wav(audio_wav)
    except WavFormatError as exc:
        raise InvalidChunkError(f"audio: {exc} (need 16 kHz mono pcm_s16le WAV)") from exc
    if len(samples) == 0:
        raise InvalidChunkError("audio has no samples")
    needed = frames_for_samples(len(samples))
    if spec.frame_count != needed:
        raise InvalidChunkError(
            f"spec.frame_count is {spec.frame_count} but the audio's {len(samples)} samples make "
            f"{needed} frames (ceil(samples / {SAMPLES_PER_FRAME}))"
        )
    if source_video is not None:
        check_source_video(source_video, spec.frame_count)
    options = spec.sampling
    return ChunkJob(
        job_id=spec.job_id,
        chunk_index=spec.chunk_index,
        image=image,
        audio=samples,
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
            color_correction=options.color_correction,
            resolution=options.resolution,
        ),
        force_offload=spec.force_offload,
        source_video=source_video,
    )


def read_chunk(requests: Iterator[generator_pb2.GenerateRequest]) -> ChunkJob:
    spec = read_spec(requests)
    image, audio, source_video = read_payload(requests)
    return build_job(spec, image, audio, source_video)
