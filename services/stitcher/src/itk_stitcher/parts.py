"""Reading what a part is: frame count, codec parameters and frame timing."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from itk_common.video import VideoInfo, probe_video

from .errors import StitchInputError


@dataclass(frozen=True)
class CodecSignature:
    """Everything two H.264 parts must share for their packets to live in one MP4 track."""

    codec: str
    width: int
    height: int
    pix_fmt: str
    frame_rate: Fraction
    profile: str
    extradata: bytes


@dataclass(frozen=True)
class PartTiming:
    """Frame timing of a part in frame units (1/fps)."""

    first_pts: int
    # Packets the decoder holds back for B-frames: max over packets of (decode index - display index).
    reorder_delay: int
    # Every frame sits on its own slot of the frame grid, with no gaps or repeats.
    regular: bool


def probe_part(index: int, path: Path, expected_frames: int) -> VideoInfo:
    try:
        info = probe_video(path)
    except (av.FFmpegError, ValueError) as exc:
        raise StitchInputError(f"chunk {index}: not a readable MP4 video ({exc})") from exc
    if info.frame_count != expected_frames:
        raise StitchInputError(
            f"chunk {index}: part has {info.frame_count} frames, the header plans {expected_frames}"
        )
    return info


def read_signature(path: Path) -> CodecSignature:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        codec = stream.codec_context
        return CodecSignature(
            codec=codec.name,
            width=codec.width,
            height=codec.height,
            pix_fmt=str(codec.pix_fmt),
            frame_rate=Fraction(stream.average_rate or 0),
            profile=str(codec.profile),
            extradata=bytes(codec.extradata or b""),
        )


def read_timing(path: Path, fps: int) -> PartTiming:
    """Demux (no decode) and express every packet's pts on the 1/fps grid."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        slots = [
            packet.pts * stream.time_base * fps
            for packet in container.demux(stream)
            if packet.size and packet.pts is not None
        ]
    if not slots:
        return PartTiming(first_pts=0, reorder_delay=0, regular=False)
    first = min(slots)
    frames = [slot - first for slot in slots]
    if first.denominator != 1 or sorted(frames) != list(range(len(frames))):
        return PartTiming(first_pts=0, reorder_delay=0, regular=False)
    delay = max(decode_index - frame for decode_index, frame in enumerate(frames))
    return PartTiming(first_pts=int(first), reorder_delay=int(delay), regular=True)
