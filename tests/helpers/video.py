"""Source videos for dubbing tests, written with PyAV: a bright bar that moves across a grey
picture, so the position of the bar in any output frame says which source time it shows.

The bar moves horizontally in the stored picture; `bar_position` reads it back from a decoded
frame's top part (the preview draws its mouth in the lower part of the picture).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

BACKGROUND = 150
BAR = 250
BAR_WIDTH = 6


def bar_x(time_sec: float, width: int, seconds: float) -> float:
    """Where the bar's left edge is at `time_sec`: it crosses the picture once over the video."""
    return (width - BAR_WIDTH) * min(time_sec / seconds, 1.0)


def source_frame(time_sec: float, width: int, height: int, seconds: float) -> np.ndarray:
    frame = np.full((height, width, 3), BACKGROUND, dtype=np.uint8)
    x = round(bar_x(time_sec, width, seconds))
    frame[:, x : x + BAR_WIDTH] = BAR
    return frame


def write_video(path: Path, seconds: float, fps: float = 30, width: int = 96, height: int = 64,
                codec: str = "libx264", container: str = "mp4", rotation: int = 0,
                audio: np.ndarray | None = None, audio_rate: int = 16_000) -> Path:
    """A video of the moving bar; `rotation` is the display matrix angle (-90: a phone's portrait
    recording stored landscape); `audio` (float mono) adds an AAC or Opus sound track."""
    rate = Fraction(fps).limit_denominator(1001)
    frames = round(seconds * fps)
    with av.open(str(path), mode="w", format=container) as output:
        stream = output.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if rotation:
            stream.set_display_rotation(rotation)
        sound = None
        if audio is not None:
            sound = output.add_stream("libopus" if container == "webm" else "aac", rate=48_000 if
                                      container == "webm" else audio_rate)
            sound.layout = "mono"
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(source_frame(index / fps, width, height, seconds), format="rgb24")
            frame.pts = index
            frame.time_base = 1 / rate
            for packet in stream.encode(frame):
                output.mux(packet)
        for packet in stream.encode(None):
            output.mux(packet)
        if sound is not None and audio is not None:
            samples = audio if container != "webm" else np.interp(
                np.arange(int(len(audio) * 3)) / 3, np.arange(len(audio)), audio).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(samples[None, :].astype(np.float32), format="flt", layout="mono")
            frame.sample_rate = sound.rate
            frame.pts = 0
            for packet in sound.encode(frame):
                output.mux(packet)
            for packet in sound.encode(None):
                output.mux(packet)
    return path


def bar_position(frame_rgb: np.ndarray) -> float:
    """The bar's left edge (pixels) in a frame's top third, horizontally."""
    top = frame_rgb[: max(1, frame_rgb.shape[0] // 3), :, 0].astype(np.float64)
    columns = top.mean(axis=0)
    bright = np.flatnonzero(columns > (BACKGROUND + BAR) / 2)
    return float(bright[0]) if bright.size else float("nan")


def bar_positions(video: Path) -> np.ndarray:
    with av.open(str(video)) as container:
        return np.array([bar_position(frame.to_ndarray(format="rgb24")) for frame in container.decode(video=0)])
