"""Turning a provider's video into exactly the chunk's frames: 25 fps, the exact count, the requested size.

Providers render at their own frame rate (Wan's 16 fps, 24, 30 ...) and to a 4n+1 frame count
that rarely equals the chunk's. Every output frame i stands for the time span
[i/25, (i+1)/25) of the chunk's audio; it takes the provider frame on screen at the middle of that
span (by the frames' timestamps, so variable frame rates work too). Frames past the end of the
audio are dropped; a video shorter than the audio holds its last frame, up to `max_pad_sec`, and
fails beyond that. Each frame is scaled to cover the requested size and centre-cropped.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from itk_common.constants import FPS
from itk_common.video import Mp4Writer

from ..backend import Cancelled
from ..preview.layout import fit_image, output_size
from .errors import ProviderError

PROGRESS_EVERY_FRAMES = FPS


@dataclass(frozen=True)
class SourceVideo:
    frames: int
    fps: float
    duration_sec: float
    width: int
    height: int


@dataclass(frozen=True)
class Retimed:
    source: SourceVideo
    frame_count: int
    width: int
    height: int
    padded_frames: int  # output frames after the source's end, holding its last frame
    # The last `tail_frames` output frames (RGB uint8 [T, H, W, 3]): what a lane's next piece
    # would continue from; None when none were asked for.
    tail: np.ndarray | None = None


def retime(source: Path, output: Path, frame_count: int, width: int, height: int, *,
           max_pad_sec: float, cancelled: threading.Event,
           progress: Callable[[int], None] = lambda frames: None, tail_frames: int = 0) -> Retimed:
    """Write `frame_count` frames at 25 fps and width x height (rounded down to even) to `output`."""
    out_width, out_height = output_size(width, height)
    try:
        container = av.open(str(source))
    except av.FFmpegError as exc:
        raise ProviderError(f"the provider's video is not a readable MP4: {exc}") from exc
    with container:
        if not container.streams.video:
            raise ProviderError("the provider's video has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        written = 0
        first_time: float | None = None
        last_time = 0.0
        source_frames = 0
        current: np.ndarray | None = None  # the source frame on screen, fitted to the output size
        pending: av.VideoFrame | None = None
        tail: deque[np.ndarray] = deque(maxlen=max(tail_frames, 0))
        with Mp4Writer(output, out_width, out_height, frame_count=frame_count) as writer:
            try:
                for frame in container.decode(stream):
                    time = _frame_time(frame, source_frames, stream)
                    if first_time is None:
                        first_time = time
                    time -= first_time
                    # Output frames whose middle lies before this source frame show the previous one.
                    while written < frame_count and (written + 0.5) / FPS < time:
                        if pending is not None:
                            current = fit_image(pending.to_ndarray(format="rgb24"), out_width, out_height)
                            pending = None
                        assert current is not None
                        writer.write(current)
                        tail.append(current)
                        written += 1
                        if written % PROGRESS_EVERY_FRAMES == 0:
                            if cancelled.is_set():
                                raise Cancelled()
                            progress(written)
                    if written >= frame_count:
                        break
                    pending, last_time = frame, time
                    source_frames += 1
            except av.FFmpegError as exc:
                raise ProviderError(f"the provider's video could not be decoded: {exc}") from exc
            if source_frames == 0 and written == 0:
                raise ProviderError("the provider's video has no frames")
            source_fps = _stream_fps(stream, source_frames, last_time)
            covered = last_time + 1.0 / source_fps
            missing = frame_count - written
            short_sec = frame_count / FPS - covered
            if missing and short_sec > max_pad_sec + 1e-6:
                raise ProviderError(
                    f"the provider's video is {covered:.2f} s long, {short_sec:.2f} s shorter than the chunk's "
                    f"{frame_count / FPS:.2f} s of audio (at most {max_pad_sec:g} s can be held on the last "
                    "frame); a provider that caps its video length needs a shorter CHUNK_TARGET_SEC"
                )
            if pending is not None:
                current = fit_image(pending.to_ndarray(format="rgb24"), out_width, out_height)
            assert current is not None
            for _ in range(missing):
                writer.write(current)
                tail.append(current)
            progress(frame_count)
    info = SourceVideo(frames=source_frames, fps=source_fps, duration_sec=covered,
                       width=stream.codec_context.width, height=stream.codec_context.height)
    padded = sum(1 for index in range(frame_count - missing, frame_count) if (index + 0.5) / FPS >= covered)
    return Retimed(source=info, frame_count=frame_count, width=out_width, height=out_height, padded_frames=padded,
                   tail=np.stack(tail) if tail else None)


def _frame_time(frame: av.VideoFrame, index: int, stream: av.video.stream.VideoStream) -> float:
    if frame.time is not None:
        return float(frame.time)
    rate = stream.average_rate or stream.guessed_rate or FPS
    return index / float(rate)


def _stream_fps(stream: av.video.stream.VideoStream, frames: int, last_time: float) -> float:
    rate = stream.average_rate or stream.guessed_rate
    if rate:
        return float(rate)
    return (frames - 1) / last_time if frames > 1 and last_time > 0 else float(FPS)
