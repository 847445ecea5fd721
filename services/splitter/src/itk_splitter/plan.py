"""Choosing where to cut: a pure function of the pauses, the length and the options.

Everything is counted in 25 fps frames (640 samples) so every cut is frame-aligned. Walking from the
previous cut, the next cut aims at `chunk_target_sec` later; the pause nearest that target within the
tolerance wins and the cut goes to its middle (kept inside the tolerance window and the pause). With
no usable pause the cut falls on the target itself. A final piece shorter than `min_chunk_sec` is
merged into the chunk before it, so no chunk is that short unless the whole recording is.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass

from itk_common.constants import FPS, SAMPLES_PER_FRAME, frames_for_samples

from .options import SplitOptions


@dataclass(frozen=True)
class ChunkSpan:
    index: int
    # Sample offsets at 16 kHz, [start, end).
    start_sample: int
    end_sample: int
    # Whether the cut ending this chunk lies inside a pause (always False for the last chunk: no cut).
    cut_in_silence: bool
    # The lane (continuous stream) the chunk is a piece of, and its first frame's offset in that lane.
    lane: int = 0
    lane_first_frame: int = 0
    # The samples its WAV holds: its own plus audio context on both sides, [wav_start, wav_end).
    wav_start_sample: int = -1
    wav_end_sample: int = -1

    @property
    def wav_start(self) -> int:
        return self.start_sample if self.wav_start_sample < 0 else self.wav_start_sample

    @property
    def wav_end(self) -> int:
        return self.end_sample if self.wav_end_sample < 0 else self.wav_end_sample

    @property
    def num_samples(self) -> int:
        return self.end_sample - self.start_sample

    @property
    def frame_count(self) -> int:
        return frames_for_samples(self.num_samples)


def plan_chunks(silences: Sequence[tuple[int, int]], total_samples: int, options: SplitOptions) -> list[ChunkSpan]:
    """Cut [0, total_samples) into chunks.

    `silences` are the pauses as frame ranges [start, end), sorted and not overlapping (as
    `silence.silent_runs` returns them).
    """
    if total_samples <= 0:
        return []
    min_chunk = math.ceil(options.min_chunk_sec * FPS - 1e-9)
    target_step = max(1, min_chunk, round(options.chunk_target_sec * FPS))
    tolerance = math.floor(options.effective_tolerance_sec * FPS + 1e-9)
    # A cut c (in frames) sits at sample c * 640 and must leave something after it.
    last_possible_cut = (total_samples - 1) // SAMPLES_PER_FRAME

    pause_ends = [end for _, end in silences]
    cuts: list[tuple[int, bool]] = []
    previous = 0
    while previous + target_step <= last_possible_cut:
        target = previous + target_step
        low = max(target - tolerance, previous + max(min_chunk, 1))
        high = min(target + tolerance, last_possible_cut)
        cut = cut_in_pause(silences, pause_ends, target, low, high)
        cuts.append((target, False) if cut is None else (cut, True))
        previous = cuts[-1][0]

    boundaries = [0, *(cut * SAMPLES_PER_FRAME for cut, _ in cuts), total_samples]
    in_silence = [flag for _, flag in cuts] + [False]
    if len(boundaries) > 2 and boundaries[-1] - boundaries[-2] < min_chunk * SAMPLES_PER_FRAME:
        del boundaries[-2]
        del in_silence[-2]
    return [
        ChunkSpan(index, start, end, flag)
        for index, (start, end, flag) in enumerate(zip(boundaries[:-1], boundaries[1:], in_silence, strict=True))
    ]


def cut_in_pause(
    silences: Sequence[tuple[int, int]], pause_ends: Sequence[int], target: int, low: int, high: int
) -> int | None:
    """The cut inside the pause nearest `target` among cuts in [low, high], or None if no pause fits.

    A cut c lies inside pause [s, e) when frames c-1 and c are both silent, i.e. s < c < e.
    `pause_ends` are the pauses' ends, so the pauses before the window are skipped by bisection.
    """
    best: tuple[int, int] | None = None
    for index in range(bisect.bisect_left(pause_ends, low + 1), len(silences)):
        start, end = silences[index]
        if start + 1 > high:
            break
        first, last = max(start + 1, low), min(end - 1, high)
        if first > last:
            continue
        distance = 0 if first <= target <= last else min(abs(target - first), abs(target - last))
        if best is None or distance < best[0]:
            middle = min(max((start + end) // 2, first), last)
            best = (distance, middle)
    return None if best is None else best[1]
