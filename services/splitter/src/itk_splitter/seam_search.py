"""Where the seams between lanes go: in silence, as near the balanced points as silence allows.

A seam is where one lane ends and the next starts again from the portrait; it is cross-faded over
the silent frames around it, so it is invisible only where the mouth is at rest. The search is a
pure function of the silent runs (frame ranges [start, end) below the silence threshold, at least
2 frames so a frame boundary lies inside) and the lanes' bounds, so a planner with several voice
tracks can pass the runs where every track is silent.

Each seam looks, in order, for:
1. a pause (a run of at least the splitter's min_silence_sec) within SEAM_NEAR_SHARE of a lane
   (at least SEAM_NEAR_MIN_SEC) of the point that balances the remaining lanes: the longest one;
2. a pause within SEAM_FAR_SHARE of a lane (at least SEAM_FAR_MIN_SEC): the longest one, so the
   longest lane, which sets the job's duration, may grow by up to that share;
3. a shorter gap between words in the far window: the longest one (the cross-fade cannot be
   longer than the silence, so a longer gap hides the seam better than a nearer one);
4. the gap nearest the balanced point anywhere the lanes' minimum length allows;
5. only when there is no gap at all: the balanced point itself, in voiced speech, reported as such
   (and joined by a hard cut: a cross-fade there would mix two open mouths).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from itk_common.constants import FPS

# A seam may move this share of a lane away from the balanced point to reach a pause: 2 % keeps
# the longest lane within a few percent of the ideal, and a minute-long lane still gets a window
# of a few seconds with several pauses in it.
SEAM_NEAR_SHARE = 0.02
SEAM_NEAR_MIN_SEC = 1.0
# When that window holds no pause, a pause this far away is still taken over a gap between words:
# a seam in a short gap shows more than a lane up to a tenth longer costs.
SEAM_FAR_SHARE = 0.10
SEAM_FAR_MIN_SEC = 2.0


@dataclass(frozen=True)
class SeamChoice:
    frame: int  # the seam lies between frames frame - 1 and frame
    # The silent run [start, end) the seam lies in; None: in voiced speech (no gap anywhere).
    silence: tuple[int, int] | None
    # Whether that run is a pause (at least min_silence_sec) rather than a gap between words.
    in_pause: bool

    @property
    def in_voiced_speech(self) -> bool:
        return self.silence is None


def search_windows(target: int, lane_frames: float, floor: int, ceiling: int) -> tuple[tuple[int, int], ...]:
    """The near and far windows [low, high] around `target`, inside [floor, ceiling]."""
    windows = []
    for share, least in ((SEAM_NEAR_SHARE, SEAM_NEAR_MIN_SEC), (SEAM_FAR_SHARE, SEAM_FAR_MIN_SEC)):
        reach = max(round(least * FPS), round(share * lane_frames))
        windows.append((max(target - reach, floor), min(target + reach, ceiling)))
    return tuple(windows)


def find_seam(silences: Sequence[tuple[int, int]], target: int, lane_frames: float, floor: int, ceiling: int,
              min_pause_frames: int) -> SeamChoice:
    """The seam for one balanced point `target` (a cut in [floor, ceiling]); see the module's order."""
    near, far = search_windows(target, lane_frames, floor, ceiling)
    pauses = [run for run in silences if run[1] - run[0] >= min_pause_frames]
    for runs, window, in_pause in ((pauses, near, True), (pauses, far, True), (silences, far, False)):
        best = longest_run(runs, target, *window)
        if best is not None:
            return SeamChoice(middle(best), best, in_pause)
    anywhere = [run for run in silences if floor <= middle(run) <= ceiling and run[0] < middle(run) < run[1]]
    if anywhere:
        run = min(anywhere, key=lambda run: (abs(middle(run) - target), -(run[1] - run[0])))
        return SeamChoice(middle(run), run, run[1] - run[0] >= min_pause_frames)
    return SeamChoice(min(max(target, floor), ceiling), None, False)


def choose_seams(silences: Sequence[tuple[int, int]], total_frames: int, count: int, min_lane: int,
                 min_pause_frames: int) -> list[SeamChoice]:
    """count - 1 seams, each found (find_seam) near the point that splits the rest evenly.

    `silences` are sorted, non-overlapping silent runs of at least 2 frames; no lane is shorter
    than `min_lane` frames.
    """
    seams: list[SeamChoice] = []
    previous = 0
    for placed in range(1, count):
        remaining = count - placed + 1
        lane = (total_frames - previous) / remaining
        target = round(previous + lane)
        # Every lane, this one and the ones after it, must keep its minimum length.
        floor, ceiling = previous + min_lane, total_frames - min_lane * (remaining - 1)
        seam = find_seam(silences, target, lane, floor, ceiling, min_pause_frames)
        seams.append(seam)
        previous = seam.frame
    return seams


def middle(run: tuple[int, int]) -> int:
    return (run[0] + run[1]) // 2


def longest_run(runs: Sequence[tuple[int, int]], target: int, low: int, high: int) -> tuple[int, int] | None:
    """The longest run whose middle lies in [low, high] strictly inside it (the nearer to `target`
    on a tie), or None."""
    candidates = [run for run in runs if low <= middle(run) <= high and run[0] < middle(run) < run[1]]
    return max(candidates, key=lambda run: (run[1] - run[0], -abs(middle(run) - target)), default=None)
