"""Planning a recording as lanes: continuous streams, each cut into pieces on its clip grid.

A lane is rendered as one stream: every piece after a lane's first starts from the previous
piece's last motion frames, so a cut inside a lane is invisible and is placed where it keeps the
stream's clip grid (the first clip of a stream has `clip_frames` frames, every later clip adds
`clip_frames - motion_frames`), not in a pause. Lanes are rendered in parallel, so between two
lanes there is a seam: the next lane starts from the portrait again. Seams go in silence near the
points that balance the lanes' lengths (a lane's pieces run one after the other, so the longest
lane sets the job's duration); seam_search.py says where exactly. Each seam is cross-faded over
the silent frames on both sides of it; one in voiced speech (only when the recording has no gap
at all) is a hard cut, so no frame mixes two open mouths.

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
from .seam_search import choose_seams
from .silence import min_silence_frames

# A piece is sent its whole lane's audio (plus audio_context_sec around the lane), so its audio
# features, which the encoder computes over everything it is given (normalisation, attention),
# are those of the lane rendered whole. A lane longer than this sends each piece the part of it
# centred on the piece instead (a 10-minute WAV is 19 MB, well inside what a generator accepts).
LANE_AUDIO_MAX_SEC = 600


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
    # The silent run [start, end) in frames it lies in (a pause, or a shorter gap between words);
    # None: in voiced speech, when the recording has no gap to put it in.
    pause: tuple[int, int] | None
    fade_frames: int  # cross-faded frames on each side (0: a hard cut)

    @property
    def sample(self) -> int:
        return self.frame * SAMPLES_PER_FRAME

    @property
    def in_voiced_speech(self) -> bool:
        return self.pause is None


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
    """Lanes, the seams between them and every lane's pieces, for [0, total_samples).

    `silences` are every silent run of at least 2 frames (sorted, not overlapping); those of at
    least min_silence_sec are pauses.
    """
    if total_samples <= 0:
        return LanePlan([], [], [])
    total_frames = -(-total_samples // SAMPLES_PER_FRAME)
    count = lane_count_for(total_frames, options.lane_count, options.min_lane_sec)
    min_lane = max(1, math.ceil(options.min_lane_sec * FPS - 1e-9))
    min_pause = min_silence_frames(options.min_silence_sec)
    pauses = [run for run in silences if run[1] - run[0] >= min_pause]
    seam_frames = [(seam.frame, seam.silence) for seam in choose_seams(silences, total_frames, count, min_lane,
                                                                        min_pause)]

    chunks: list[ChunkSpan] = []
    lanes: list[LaneSpan] = []
    seams: list[SeamSpan] = []
    bounds = [0, *(frame for frame, _ in seam_frames), total_frames]
    context = round(options.audio_context_sec * FPS) * SAMPLES_PER_FRAME
    window = LANE_AUDIO_MAX_SEC * FPS * SAMPLES_PER_FRAME
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
            wav_start, wav_end = lane_audio_span(
                start_sample, end_sample, max(0, start * SAMPLES_PER_FRAME - context),
                min(total_samples, end * SAMPLES_PER_FRAME + context), window)
            chunks.append(ChunkSpan(
                index=len(chunks), start_sample=start_sample, end_sample=end_sample,
                cut_in_silence=cut < total_frames and in_pause(pauses, cut),
                lane=lane, lane_first_frame=first, wav_start_sample=wav_start, wav_end_sample=wav_end,
            ))
        lanes.append(LaneSpan(lane, start, end, first_chunk, len(chunks) - first_chunk))
    return LanePlan(chunks, lanes, seams)


def lane_audio_span(start: int, end: int, lane_start: int, lane_end: int, window: int) -> tuple[int, int]:
    """The samples a piece [start, end) is sent: its lane's audio with the context around the lane,
    [lane_start, lane_end), or, when that is longer than `window`, the `window` samples of it
    centred on the piece (starting on a frame; it may run into the last partial frame to hold the
    whole piece)."""
    if lane_end - lane_start <= window or end - start >= window:
        return lane_start, lane_end
    middle = (start + end) // 2
    first = min(max(lane_start, middle - window // 2), lane_end - window)
    first -= (first - lane_start) % SAMPLES_PER_FRAME
    return first, min(lane_end, max(end, first + window))


def independent_lanes(chunks: list[ChunkSpan], silences: Sequence[tuple[int, int]], options: SplitOptions
                      ) -> tuple[list[ChunkSpan], list[LaneSpan], list[SeamSpan]]:
    """Chunks cut at pauses (plan.plan_chunks) as lanes of one chunk each: every chunk starts from the
    portrait (for generators that cannot continue motion), every cut is a seam, cross-faded in the
    silent run it lies in (`silences`: every run of at least 2 frames), a hard cut in voiced speech."""
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
    """Frames faded on each side of a seam: at most fade_sec, and inside its silent run, so every
    frame the fade touches (on both sides, and the other side's edge frame) is silent; none in
    voiced speech, where a fade would blend two open mouths."""
    if pause is None:
        return 0
    return max(0, min(round(fade_sec * FPS), frame - pause[0], pause[1] - frame))
