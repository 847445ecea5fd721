"""Planning a recording as lanes: continuous streams, each cut into pieces on its clip grid.

A lane is rendered as one stream: every piece after a lane's first starts from the previous
piece's last motion frames, so a cut inside a lane is invisible and is placed where it keeps the
stream's clip grid (the first clip of a stream has `clip_frames` frames, every later clip adds
`clip_frames - motion_frames`), not in a pause. Lanes are rendered in parallel, so between two
lanes there is a seam: the next lane starts from the portrait again. Seams go in the longest
pause near the points that balance the lanes' lengths (within 2 % of a lane, or 5 % when that
holds no pause) (a lane's pieces run one after the other,
so the longest lane sets the job's duration), and each seam is cross-faded over the frames of
its pause on both sides.

Everything is counted in 25 fps frames (640 samples); the last piece ends at the recording's end.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from itk_common.constants import FPS, SAMPLES_PER_FRAME

from .options import SplitOptions
from .plan import ChunkSpan

# A seam may move this share of a lane's length away from the balanced point to reach a longer
# pause (at least SEAM_WINDOW_MIN_SEC): 2 % keeps the longest lane within a few percent of the
# ideal, and a minute-long lane still gets a window of a few seconds with several pauses in it.
SEAM_WINDOW_SHARE = 0.02
SEAM_WINDOW_MIN_SEC = 1.0
# When that window holds no pause, the seam looks this far instead (a seam in speech shows more
# than a lane a few percent longer costs), and only then falls on the balanced point itself.
SEAM_FALLBACK_SHARE = 0.05
SEAM_FALLBACK_MIN_SEC = 1.0


@dataclass(frozen=True)
class LaneSpan:
    index: int
    start_frame: int
    end_frame: int  # exclusive; the recording's last lane ends at its last (maybe partial) frame
    first_chunk: int
    chunk_count: int


@dataclass(frozen=True)
class SeamSpan:
    chunk_index: int  # the first chunk of the lane after the seam
    frame: int  # the seam lies between frames frame-1 and frame
    pause: tuple[int, int] | None  # the pause [start, end) in frames it lies in, None when none fitted
    fade_frames: int  # cross-faded frames on each side

    @property
    def sample(self) -> int:
        return self.frame * SAMPLES_PER_FRAME


@dataclass(frozen=True)
class LanePlan:
    chunks: list[ChunkSpan]
    lanes: list[LaneSpan]
    seams: list[SeamSpan]


def lane_count_for(total_frames: int, requested: int, min_lane_sec: float) -> int:
    """At most `requested` lanes, none shorter than `min_lane_sec` (one when even that is too long)."""
    min_lane = max(1, math.ceil(min_lane_sec * FPS - 1e-9))
    return max(1, min(requested, total_frames // min_lane))


def plan_lanes(silences: Sequence[tuple[int, int]], total_samples: int, options: SplitOptions) -> LanePlan:
    """Lanes, the seams between them and every lane's pieces, for [0, total_samples)."""
    if total_samples <= 0:
        return LanePlan([], [], [])
    total_frames = -(-total_samples // SAMPLES_PER_FRAME)
    count = lane_count_for(total_frames, options.lane_count, options.min_lane_sec)
    min_lane = max(1, math.ceil(options.min_lane_sec * FPS - 1e-9))
    seam_frames = choose_seams(silences, total_frames, count, min_lane)

    chunks: list[ChunkSpan] = []
    lanes: list[LaneSpan] = []
    seams: list[SeamSpan] = []
    bounds = [0, *(frame for frame, _ in seam_frames), total_frames]
    context = round(options.audio_context_sec * FPS) * SAMPLES_PER_FRAME
    for lane, (start, end) in enumerate(itertools.pairwise(bounds)):
        if lane > 0:
            frame, pause = seam_frames[lane - 1]
            seams.append(SeamSpan(len(chunks), frame, pause, fade_frames(frame, pause, options.seam_fade_sec)))
        cuts = piece_cuts(end - start, options)
        first_chunk = len(chunks)
        for first, last in zip([0, *cuts], [*cuts, end - start], strict=True):
            cut = start + last
            start_sample = (start + first) * SAMPLES_PER_FRAME
            end_sample = min(cut * SAMPLES_PER_FRAME, total_samples)
            chunks.append(ChunkSpan(
                index=len(chunks), start_sample=start_sample, end_sample=end_sample,
                cut_in_silence=cut < total_frames and in_pause(silences, cut),
                lane=lane, lane_first_frame=first,
                wav_start_sample=max(0, start_sample - context),
                wav_end_sample=min(total_samples, end_sample + context),
            ))
        lanes.append(LaneSpan(lane, start, end, first_chunk, len(chunks) - first_chunk))
    return LanePlan(chunks, lanes, seams)


def independent_lanes(chunks: list[ChunkSpan], silences: Sequence[tuple[int, int]], options: SplitOptions
                      ) -> tuple[list[ChunkSpan], list[LaneSpan], list[SeamSpan]]:
    """Chunks cut at pauses (plan.plan_chunks) as lanes of one chunk each: every chunk starts from the
    portrait (for generators that cannot continue motion), every cut is a seam, cross-faded in its pause."""
    total = chunks[-1].end_sample if chunks else 0
    context = round(options.audio_context_sec * FPS) * SAMPLES_PER_FRAME
    placed = [replace(chunk, lane=chunk.index, wav_start_sample=max(0, chunk.start_sample - context),
                      wav_end_sample=min(total, chunk.end_sample + context)) for chunk in chunks]
    lanes = [LaneSpan(chunk.index, chunk.start_sample // SAMPLES_PER_FRAME, -(-chunk.end_sample // SAMPLES_PER_FRAME),
                      chunk.index, 1) for chunk in chunks]
    seams = []
    for chunk in chunks[1:]:
        frame = chunk.start_sample // SAMPLES_PER_FRAME
        pause = next(((s, e) for s, e in silences if s < frame < e), None)
        seams.append(SeamSpan(chunk.index, frame, pause, fade_frames(frame, pause, options.seam_fade_sec)))
    return placed, lanes, seams


def choose_seams(silences: Sequence[tuple[int, int]], total_frames: int, count: int,
                 min_lane: int) -> list[tuple[int, tuple[int, int] | None]]:
    """count - 1 seams, each in the longest pause near the point that splits the rest evenly."""
    seams: list[tuple[int, tuple[int, int] | None]] = []
    previous = 0
    for placed in range(1, count):
        remaining = count - placed + 1
        lane = (total_frames - previous) / remaining
        target = round(previous + lane)
        # Every lane, this one and the ones after it, must keep its minimum length.
        floor, ceiling = previous + min_lane, total_frames - min_lane * (remaining - 1)
        best = None
        for share, least in ((SEAM_WINDOW_SHARE, SEAM_WINDOW_MIN_SEC), (SEAM_FALLBACK_SHARE, SEAM_FALLBACK_MIN_SEC)):
            window = max(round(least * FPS), round(share * lane))
            low, high = max(target - window, floor), min(target + window, ceiling)
            best = longest_pause(silences, target, low, high)
            if best is not None:
                break
        seam = (min(max(target, floor), ceiling), None) if best is None else best
        seams.append(seam)
        previous = seam[0]
    return seams


def longest_pause(silences: Sequence[tuple[int, int]], target: int, low: int,
                  high: int) -> tuple[int, tuple[int, int]] | None:
    """(cut, pause): the middle of the longest pause whose middle lies in [low, high] (the one nearer
    `target` on a tie), or None."""
    candidates = [
        ((end - start, -abs((start + end) // 2 - target)), (start + end) // 2, (start, end))
        for start, end in silences
        if low <= (start + end) // 2 <= high and start < (start + end) // 2 < end
    ]
    best = max(candidates, key=lambda candidate: candidate[0], default=None)
    return None if best is None else (best[1], best[2])


def piece_cuts(lane_frames: int, options: SplitOptions) -> list[int]:
    """Cuts (lane-relative frames) splitting a lane into pieces of about chunk_target_sec on its clip grid.

    The first piece is one clip plus whole strides (81 + 72k frames); later pieces are whole
    strides (72k), so every piece's last clip ends exactly at its cut and the next piece's first
    clip is the one the unbroken stream would have rendered. A last piece shorter than
    min_chunk_sec is merged into the piece before it.
    """
    clip, stride = options.lane_clip_frames, options.lane_clip_frames - options.lane_motion_frames
    target = round(options.chunk_target_sec * FPS)
    first = clip + stride * max(0, round((target - clip) / stride))
    step = stride * max(1, round(target / stride))
    min_piece = max(1, math.ceil(options.min_chunk_sec * FPS - 1e-9))
    cuts: list[int] = []
    position = first
    while position < lane_frames:
        cuts.append(position)
        position += step
    while cuts and lane_frames - cuts[-1] < min_piece:
        cuts.pop()
    return cuts


def in_pause(silences: Sequence[tuple[int, int]], frame: int) -> bool:
    """Whether a cut at `frame` lies inside a pause (frames frame-1 and frame both silent)."""
    return any(start < frame < end for start, end in silences)


def fade_frames(frame: int, pause: tuple[int, int] | None, fade_sec: float) -> int:
    """Frames faded on each side of a seam: at most fade_sec, and inside the pause when there is one."""
    longest = max(0, round(fade_sec * FPS))
    if pause is None:
        return longest
    return max(0, min(longest, frame - pause[0], pause[1] - frame))
