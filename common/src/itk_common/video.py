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


# Pieces of a longer video (the generators' parts, the stitcher's re-encoded ones) are joined by
# stream copy, so each starts with a keyframe. A keyframe redraws the encoding error afresh while
# the frames before it carry theirs along from frame to frame, so at a keyframe the picture steps
# by about the error's size even where nothing moves (a viewer sees the piece start sharper). The
# encoder spends more bits on the frames around every keyframe, rising over a ramp of frames up to
# a peak multiple of the rate at the keyframe itself, so the error is small on both sides of the
# step and the step no larger than the frame-to-frame changes inside a piece.
# Keyframes come every KEYFRAME_INTERVAL frames (no scene-cut keyframes), so every one is known
# in advance. A part's edges (its first frame, and its end, where the next part's keyframe follows)
# get a longer, steeper ramp than the keyframes inside it: there the frames on the two sides of the
# step come from two encoder runs whose rate control never saw each other, and 12 frames at 6x
# still left about a tenth of part boundaries above the in-lane 99th percentile. Inside a part the
# frames before a keyframe come from the same run, and the shorter ramp (which costs fewer bits,
# paid every 10 s) suffices. bench/bench_boundaries.py measures both, and the bits they cost.
KEYFRAME_INTERVAL = 10 * FPS
KEYFRAME_RAMP_FRAMES = 12
KEYFRAME_RAMP_PEAK = 6.0
PART_EDGE_RAMP_FRAMES = 16
PART_EDGE_RAMP_PEAK = 8.0


def keyframe_ramp(frame_count: int | None, interval: int = KEYFRAME_INTERVAL, ramp: int = KEYFRAME_RAMP_FRAMES,
                  peak: float = KEYFRAME_RAMP_PEAK, edge_ramp: int = PART_EDGE_RAMP_FRAMES,
                  edge_peak: float = PART_EDGE_RAMP_PEAK) -> str:
    """libx264 `zones` (first,last,b=multiplier, frame indices) raising the rate around keyframes.

    Keyframes are at 0, interval, 2 * interval... and, when `frame_count` is known, at the frame
    after the last (the next piece's first). A frame i frames from a keyframe (0 = the keyframe, or
    the frame just before it) gets 1 + (peak - 1) * ((ramp - i) / ramp)^2, with `edge_ramp` and
    `edge_peak` at the part's first keyframe and its end; neighbouring frames with the same
    multiplier share a zone.
    """
    length = frame_count if frame_count is not None else interval
    multipliers = [1.0] * length
    keyframes = list(range(0, length, interval)) + ([length] if frame_count is not None else [])
    for keyframe in keyframes:
        at_edge = keyframe in (0, frame_count)
        frames, top = (edge_ramp, edge_peak) if at_edge else (ramp, peak)
        for distance in range(frames):
            weight = 1.0 + (top - 1.0) * ((frames - distance) / frames) ** 2
            for frame in (keyframe + distance, keyframe - 1 - distance):
                if 0 <= frame < length:
                    multipliers[frame] = max(multipliers[frame], round(weight, 2))
    zones: list[str] = []
    start = 0
    for frame in range(1, length + 1):
        if frame == length or multipliers[frame] != multipliers[start]:
            if multipliers[start] > 1.0:
                zones.append(f"{start},{frame - 1},b={multipliers[start]:g}")
            start = frame
    return "/".join(zones)


def even(value: int) -> int:
    """H.264 with 4:2:0 chroma needs even dimensions."""
    return max(2, value - value % 2)


class Mp4Writer:
    """Writes RGB uint8 frames as H.264 (yuv420p) at a constant frame rate.

    Frames get pts 0, 1, 2... in a 1/fps time base, so the container's frame count and duration
    are exact, which the stitcher's frame checks rely on.

    With `gop` 0 the file is a piece of a longer video: keyframes every KEYFRAME_INTERVAL frames
    with more bits around each (`keyframe_ramp`), and, given `frame_count`, toward its end too.
    A `gop` of n keeps at most n frames between keyframes (a seekable intermediate, no ramps).
    """

    def __init__(self, path: Path, width: int, height: int, fps: int = FPS, crf: int = 20,
                 preset: str = "veryfast", gop: int = 0, frame_count: int | None = None) -> None:
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
        if not gop:
            zones = keyframe_ramp(frame_count)
            self.stream.options["x264-params"] = (
                f"keyint={KEYFRAME_INTERVAL}:min-keyint={KEYFRAME_INTERVAL}:scenecut=0"
                + (f":zones={zones}" if zones else ""))
        else:
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

    def abandon(self) -> None:
        """Close without flushing the encoder and remove the file. After a failed write (a full
        disk, say) the muxer is in an error state, and muxing more packets into it can crash
        FFmpeg instead of raising; the half-written file is of no use to anyone."""
        try:
            self.container.close()
        except (OSError, av.FFmpegError):
            pass  # the error that led here is the one the caller needs to see
        finally:
            self.path.unlink(missing_ok=True)

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None:
            self.abandon()
            return
        try:
            self.close()
        except BaseException:
            self.path.unlink(missing_ok=True)
            raise


def write_mp4(path: Path, frames: Iterable[np.ndarray], width: int, height: int, fps: int = FPS,
              frame_count: int | None = None) -> int:
    with Mp4Writer(path, width, height, fps, frame_count=frame_count) as writer:
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
