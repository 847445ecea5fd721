"""Softening the seams between lanes with a cross-fade across the pause they lie in.

A lane is one continuous stream; the next lane starts again from the portrait, so at a seam the
pose jumps from one frame to the next. The seam lies in a pause (the mouth is at rest there) and
the splitter allows `fade_frames` on each side of it inside that pause. Over those 2k frames the
picture moves linearly from the ending lane to the starting one: a frame t of the ending lane's
last k (t = -k..-1) is blended toward the starting lane's first frame, and a frame t of the
starting lane's first k (t = 0..k-1) is blended from the ending lane's last frame, with the
starting lane's weight (t + k + 0.5) / 2k. So one jump of size d becomes 2k steps of d / 2k,
while each side keeps its own mouth motion. Frame counts do not change; the two parts around a
seam are re-encoded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from itk_common.video import Mp4Writer

from .errors import StitchCancelledError
from .spec import StitchSpec


@dataclass
class PartFades:
    """The fades one part takes part in: toward the next lane at its end, from the previous at its start."""

    head: int = 0  # frames at the start blended from `previous_last`
    tail: int = 0  # frames at the end blended toward `next_first`
    previous_last: np.ndarray | None = field(default=None, repr=False)
    next_first: np.ndarray | None = field(default=None, repr=False)


def fade_weight(t: int, k: int) -> float:
    """The starting lane's share at frame t (-k..k-1) of a seam cross-faded over k frames a side."""
    return (t + k + 0.5) / (2 * k)


def edge_frame(path: Path, spec: StitchSpec, last: bool) -> np.ndarray:
    """A part's first or last frame as RGB at the job's size."""
    chosen = None
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            chosen = frame
            if not last:
                break
    if chosen is None:
        raise ValueError(f"{path.name} has no video frames")
    return chosen.reformat(width=spec.width, height=spec.height, format="rgb24").to_ndarray()


def plan_fades(parts: dict[int, Path], spec: StitchSpec) -> dict[int, PartFades]:
    """Which parts a seam touches and the frames on the other side they blend with."""
    fades: dict[int, PartFades] = {}
    for index, frames in sorted(spec.seams.items()):
        k = min(frames, spec.frame_counts[index - 1], spec.frame_counts[index])
        if k <= 0:
            continue
        before, after = fades.setdefault(index - 1, PartFades()), fades.setdefault(index, PartFades())
        before.tail, before.next_first = k, edge_frame(parts[index], spec, last=False)
        after.head, after.previous_last = k, edge_frame(parts[index - 1], spec, last=True)
    return fades


def write_faded(source: Path, target: Path, fades: PartFades, frame_count: int, spec: StitchSpec,
                cancelled: Callable[[], bool]) -> None:
    with av.open(str(source)) as container, \
            Mp4Writer(target, spec.width, spec.height, spec.fps, frame_count=frame_count) as writer:
        for position, frame in enumerate(container.decode(video=0)):
            if cancelled():
                raise StitchCancelledError
            from_end = frame_count - position  # 1 for the last frame
            if position < fades.head and fades.previous_last is not None:
                weight = fade_weight(position, fades.head)
                other = fades.previous_last
            elif from_end <= fades.tail and fades.next_first is not None:
                weight = 1.0 - fade_weight(-from_end, fades.tail)
                other = fades.next_first
            else:
                writer.write_frame(frame)
                continue
            own = frame.reformat(width=spec.width, height=spec.height, format="rgb24").to_ndarray()
            blended = weight * own.astype(np.float32) + (1.0 - weight) * other.astype(np.float32)
            writer.write(np.clip(np.round(blended), 0, 255).astype(np.uint8))


def soften_seams(parts: dict[int, Path], spec: StitchSpec, workdir: Path,
                 cancelled: Callable[[], bool]) -> dict[int, Path]:
    """The parts with every seam cross-faded: faded parts are new files in `workdir`, the rest as given."""
    softened = dict(parts)
    for index, fades in plan_fades(parts, spec).items():
        target = workdir / f"faded-{index}.mp4"
        write_faded(parts[index], target, fades, spec.frame_counts[index], spec, cancelled)
        softened[index] = target
    return softened
