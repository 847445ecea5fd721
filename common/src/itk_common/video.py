"""H.264/MP4 writing and probing through PyAV (its wheels carry FFmpeg).

Needs the `media` extra (`itk-common[media]`).
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .constants import FPS


@dataclass(frozen=True)
class VideoInfo:
    frame_count: int
    fps: float
    width: int
    height: int
    duration_sec: float
    codec: str
    pix_fmt: str
    has_audio: bool
    audio_duration_sec: float


def even(value: int) -> int:
    """H.264 with 4:2:0 chroma needs even dimensions."""
    return max(2, value - value % 2)


class Mp4Writer:
    """Writes RGB uint8 frames as H.264 (yuv420p) at a constant frame rate.

    Frames get pts 0, 1, 2... in a 1/fps time base, so the container's frame count and duration
    are exact, which the stitcher's frame checks rely on.
    """

    def __init__(self, path: Path, width: int, height: int, fps: int = FPS, crf: int = 20,
                 preset: str = "veryfast", gop: int = 0) -> None:
        if width % 2 or height % 2:
            raise ValueError(f"H.264 needs even dimensions, got {width}x{height}")
        self.path = path
        self.container = av.open(str(path), mode="w", format="mp4",
                                 options={"movflags": "+faststart"})
        self.stream = self.container.add_stream("libx264", rate=fps)
        self.stream.width = width
        self.stream.height = height
        self.stream.pix_fmt = "yuv420p"
        self.stream.time_base = Fraction(1, fps)
        self.stream.codec_context.time_base = Fraction(1, fps)
        self.stream.options = {"crf": str(crf), "preset": preset}
        if gop:
            # At most `gop` frames between keyframes, so a reader can seek to any second cheaply.
            self.stream.codec_context.gop_size = gop
        self.frames_written = 0

    def write(self, rgb: np.ndarray) -> None:
        self.write_frame(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb, dtype=np.uint8), format="rgb24"))

    def write_frame(self, frame: av.VideoFrame) -> None:
        """Encode a decoded frame as it is (any size or pixel format is converted to the stream's)."""
        if (frame.width, frame.height, frame.format.name) != (self.stream.width, self.stream.height, "yuv420p"):
            frame = frame.reformat(width=self.stream.width, height=self.stream.height, format="yuv420p")
        frame.pts = self.frames_written
        # A decoded frame remembers its I/P/B type, which libx264 would take as an order.
        frame.pict_type = av.video.frame.PictureType.NONE
        # The muxer rewrites stream.time_base once the header is written; the encoder works in its own.
        frame.time_base = self.stream.codec_context.time_base
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.frames_written += 1

    def close(self) -> None:
        for packet in self.stream.encode(None):
            self.container.mux(packet)
        self.container.close()

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        try:
            self.close()
        finally:
            if exc_type is not None:
                self.path.unlink(missing_ok=True)


def write_mp4(path: Path, frames: Iterable[np.ndarray], width: int, height: int, fps: int = FPS) -> int:
    with Mp4Writer(path, width, height, fps) as writer:
        for frame in frames:
            writer.write(frame)
    return writer.frames_written


def probe_video(path: Path) -> VideoInfo:
    """Count frames by demuxing packets (exact, no decode) and read stream parameters."""
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError(f"{path.name} has no video stream")
        stream = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        frames = 0
        audio_end = 0.0
        for packet in container.demux(*(s for s in (stream, audio) if s is not None)):
            if packet.size == 0 or packet.pts is None:
                continue
            if packet.stream.type == "video":
                frames += 1
            elif packet.duration is not None:
                end = float((packet.pts + packet.duration) * packet.time_base)
                audio_end = max(audio_end, end)
        fps = float(stream.average_rate or stream.guessed_rate or FPS)
        return VideoInfo(
            frame_count=frames,
            fps=fps,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            duration_sec=frames / fps if fps else 0.0,
            codec=stream.codec_context.name,
            pix_fmt=str(stream.codec_context.pix_fmt),
            has_audio=audio is not None,
            audio_duration_sec=audio_end,
        )


def count_video_frames(data: bytes) -> int:
    """Video frames in an in-memory file, by demuxing (no decode); ValueError if unreadable."""
    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.video:
                raise ValueError("no video stream")
            stream = container.streams.video[0]
            return sum(1 for packet in container.demux(stream) if packet.size and packet.pts is not None)
    except av.FFmpegError as exc:
        raise ValueError(f"not a readable video ({exc})") from exc


def read_frames(path: Path) -> Iterable[np.ndarray]:
    """Decode every video frame as RGB uint8."""
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="rgb24")
