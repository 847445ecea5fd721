"""Reading what a part is: frame count, codec parameters and frame timing."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

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


@dataclass(frozen=True)
class PartAnalysis:
    """What one demux pass over a part tells: its frames, codec parameters and timing."""

    frame_count: int
    signature: CodecSignature
    timing: PartTiming


def analyse_part(index: int, path: Path, fps: int, expected_frames: int) -> PartAnalysis:
    """Read a part once (demux, no decode) and check its frame count against the plan.

    The spool runs this as each part arrives, so only the last part's analysis is left for the
    moment the job's final part comes in.
    """
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError("no video stream")
            stream = container.streams.video[0]
            signature = signature_of(stream)
            # pts * time_base * fps in integers: a timestamp off the frame grid leaves a remainder.
            scale, denominator = stream.time_base.numerator * fps, stream.time_base.denominator
            slots = [packet.pts * scale for packet in container.demux(stream) if packet.size and packet.pts is not None]
    except (av.FFmpegError, ValueError) as exc:
        raise StitchInputError(f"chunk {index}: not a readable MP4 video ({exc})") from exc
    if len(slots) != expected_frames:
        raise StitchInputError(f"chunk {index}: part has {len(slots)} frames, the header plans {expected_frames}")
    return PartAnalysis(frame_count=len(slots), signature=signature, timing=timing_of(slots, denominator))


def signature_of(stream: av.video.stream.VideoStream) -> CodecSignature:
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


def timing_of(scaled_pts: list[int], denominator: int) -> PartTiming:
    """Frame timing from packet pts scaled by time_base numerator * fps (in decode order)."""
    irregular = PartTiming(first_pts=0, reorder_delay=0, regular=False)
    if not scaled_pts or any(value % denominator for value in scaled_pts):
        return irregular
    slots = [value // denominator for value in scaled_pts]
    first = min(slots)
    frames = [slot - first for slot in slots]
    if sorted(frames) != list(range(len(frames))):
        return irregular
    delay = max(decode_index - frame for decode_index, frame in enumerate(frames))
    return PartTiming(first_pts=first, reorder_delay=delay, regular=True)
