"""Reading what the report looks at: video frames, the sound at 16 kHz mono, a still picture."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
from PIL import Image, UnidentifiedImageError

from itk_common.constants import SAMPLE_RATE


class MediaError(ValueError):
    """A file that cannot be read as the video, sound or picture it should be."""


def video_rate(path: Path) -> float:
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(f"{path.name} has no video stream")
            rate = container.streams.video[0].average_rate
    except av.FFmpegError as exc:
        raise MediaError(f"{path.name} is not a readable video: {exc}") from exc
    if not rate:
        raise MediaError(f"{path.name} does not say its frame rate")
    return float(rate)


def video_frames(path: Path) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Every frame in order: RGB uint8 and its luma (the grey levels a frame step is measured in)."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24"), frame.to_ndarray(format="gray")
    except av.FFmpegError as exc:
        raise MediaError(f"{path.name}: decoding the video failed: {exc}") from exc


def sound(path: Path) -> np.ndarray:
    """The first audio stream, resampled to 16 kHz mono float32 in [-1, 1].

    Cut to the duration the container declares where it declares one: an AAC track decodes to whole
    1024-sample frames, the last one padded past the end of the recording.
    """
    chunks: list[np.ndarray] = []
    declared: float | None = None
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise MediaError(f"{path.name} has no audio stream")
            stream = container.streams.audio[0]
            if stream.duration is not None and stream.time_base is not None:
                declared = float(stream.duration * stream.time_base)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except av.FFmpegError as exc:
        raise MediaError(f"{path.name} is not readable audio: {exc}") from exc
    samples = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, dtype=np.float32)
    return samples[: round(declared * SAMPLE_RATE)] if declared else samples


def picture(data: bytes, name: str = "the reference picture") -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise MediaError(f"{name} is not a readable PNG, JPEG or WebP picture") from exc
