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
from itk_common.wav import WavFormatError, decode_wav_channels, mix_tracks

from .backend import ChunkJob, Person, SamplingSettings
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
    read_persons(spec)


def read_persons(spec: generator_pb2.ChunkSpec) -> tuple[Person, ...]:
    """spec.persons as backend Persons; an all-zero box is "no box" (the backend's default split)."""
    if len(spec.persons) == 1:
        raise InvalidChunkError("spec.persons must be empty (one person) or list two or more persons, got 1")
    persons = []
    for index, person in enumerate(spec.persons):
        box = (person.x0, person.y0, person.x1, person.y1)
        if not any(box):
            persons.append(Person())
            continue
        if not (0.0 <= person.x0 < person.x1 <= 1.0 and 0.0 <= person.y0 < person.y1 <= 1.0):
            raise InvalidChunkError(
                f"spec.persons[{index}] box {box} must have 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1 "
                "(fractions of the image's width and height)")
        persons.append(Person(box=box))
    return tuple(persons)


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
    persons = read_persons(spec)
    try:
        tracks = decode_wav_channels(audio_wav)
    except WavFormatError as exc:
        raise InvalidChunkError(f"audio: {exc} (need 16 kHz pcm_s16le WAV)") from exc
    expected_channels = max(1, len(persons))
    if tracks.shape[0] != expected_channels:
        layout = "mono" if expected_channels == 1 else f"one channel per person ({expected_channels})"
        raise InvalidChunkError(
            f"audio has {tracks.shape[0]} channel(s) but spec.persons lists {len(persons)} persons: "
            f"the WAV must be {layout}")
    samples = tracks[0] if expected_channels == 1 else mix_tracks(tracks)
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
        persons=persons,
        person_audio=tracks if persons else None,
    )


def read_chunk(requests: Iterator[generator_pb2.GenerateRequest]) -> ChunkJob:
    spec = read_spec(requests)
    image, audio, source_video, motion = read_payload(requests, with_motion=spec.has_motion)
    return build_job(spec, image, audio, source_video, motion)
