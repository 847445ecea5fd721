"""Properties of the cut planner, over random pauses, lengths and options."""

from __future__ import annotations

import itertools
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from itk_common.constants import FPS, SAMPLES_PER_FRAME, frames_for_samples
from itk_splitter.options import SplitOptions
from itk_splitter.plan import plan_chunks


@st.composite
def options_strategy(draw: st.DrawFn) -> SplitOptions:
    target = draw(st.floats(0.2, 60.0))
    # The planner is exercised below the 1 s floor the service enforces, to reach more edge cases.
    return SplitOptions(
        chunk_target_sec=target,
        tolerance_sec=draw(st.floats(0.0, target)),
        min_chunk_sec=draw(st.floats(0.0, target)),
    )


@st.composite
def pauses_strategy(draw: st.DrawFn, total_frames: int) -> list[tuple[int, int]]:
    """Sorted, disjoint pauses of at least 2 frames (the shortest `silent_runs` reports)."""
    pauses, position = [], 0
    for gap, length in draw(st.lists(st.tuples(st.integers(1, 2000), st.integers(2, 100)), max_size=40)):
        start = position + gap
        if start + length > total_frames:
            break
        pauses.append((start, start + length))
        position = start + length
    return pauses


@st.composite
def planner_case(draw: st.DrawFn) -> tuple[list[tuple[int, int]], int, SplitOptions]:
    total = draw(st.integers(1, 16_000 * 600))
    return draw(pauses_strategy(frames_for_samples(total))), total, draw(options_strategy())


def frames(seconds: float) -> int:
    return round(seconds * FPS)


@settings(max_examples=300, deadline=None)
@given(planner_case())
def test_chunks_partition_the_recording_on_frame_boundaries(case) -> None:
    pauses, total, options = case
    chunks = plan_chunks(pauses, total, options)
    assert chunks[0].start_sample == 0
    assert chunks[-1].end_sample == total
    for index, (chunk, following) in enumerate(itertools.pairwise(chunks)):
        assert chunk.index == index
        assert chunk.end_sample == following.start_sample
        assert chunk.end_sample % SAMPLES_PER_FRAME == 0
    assert all(chunk.num_samples > 0 for chunk in chunks)
    assert sum(chunk.frame_count for chunk in chunks) == frames_for_samples(total)
    assert all(chunk.frame_count == math.ceil(chunk.num_samples / 640) for chunk in chunks)


@settings(max_examples=300, deadline=None)
@given(planner_case())
def test_no_chunk_is_shorter_than_the_minimum_unless_the_recording_is(case) -> None:
    pauses, total, options = case
    chunks = plan_chunks(pauses, total, options)
    if total < options.min_chunk_sec * 16_000:
        assert len(chunks) == 1
    for chunk in chunks if len(chunks) > 1 else []:
        # (less a hair: 0.20000000000000004 s is meant as 5 frames, not 6)
        assert chunk.num_samples >= options.min_chunk_sec * 16_000 - 1e-6
    # Nor is any far longer than the target allows: target + tolerance, plus a merged short tail.
    longest = options.chunk_target_sec + options.effective_tolerance_sec + options.min_chunk_sec + 0.12
    assert all(chunk.num_samples <= longest * 16_000 for chunk in chunks)


@settings(max_examples=400, deadline=None)
@given(planner_case())
def test_cuts_land_in_the_nearest_pause_within_tolerance(case) -> None:
    pauses, total, options = case
    chunks = plan_chunks(pauses, total, options)
    min_chunk = math.ceil(options.min_chunk_sec * FPS - 1e-9)
    step = max(1, min_chunk, frames(options.chunk_target_sec))
    tolerance = math.floor(options.effective_tolerance_sec * FPS + 1e-9)
    last_possible = (total - 1) // SAMPLES_PER_FRAME
    for chunk in chunks[:-1]:
        previous, cut = chunk.start_sample // SAMPLES_PER_FRAME, chunk.end_sample // SAMPLES_PER_FRAME
        target = previous + step
        low, high = max(target - tolerance, previous + max(min_chunk, 1)), min(target + tolerance, last_possible)
        # Cuts inside a pause, within the window: boundaries with silent frames on both sides.
        reachable = [(max(s + 1, low), min(e - 1, high)) for s, e in pauses if max(s + 1, low) <= min(e - 1, high)]
        inside = any(s < cut < e for s, e in pauses)
        assert chunk.cut_in_silence == inside
        if not reachable:
            assert cut == target
            continue
        assert inside and low <= cut <= high
        distance = min(0 if a <= target <= b else min(abs(target - a), abs(target - b)) for a, b in reachable)
        chosen = next((a, b) for a, b in reachable if a <= cut <= b)
        assert (0 if chosen[0] <= target <= chosen[1] else min(abs(target - x) for x in chosen)) == distance
    assert not chunks[-1].cut_in_silence


def test_without_pauses_cuts_fall_on_the_targets() -> None:
    chunks = plan_chunks([], 16_000 * 100, SplitOptions(chunk_target_sec=30.0))
    assert [c.end_sample for c in chunks] == [480_000, 960_000, 1_440_000, 1_600_000]
    assert not any(c.cut_in_silence for c in chunks)


def test_cut_goes_to_the_middle_of_the_pause_near_the_target() -> None:
    # A pause 31.0-32.0 s (frames 775-800) lies within the 10 s tolerance of the 30 s target.
    chunks = plan_chunks([(775, 800)], 16_000 * 50, SplitOptions(chunk_target_sec=30.0))
    assert chunks[0].end_sample == 787 * SAMPLES_PER_FRAME
    assert chunks[0].cut_in_silence


def test_short_tail_merges_into_the_previous_chunk() -> None:
    # 46 s at a 45 s target would leave a 1 s tail, under the 2 s minimum.
    chunks = plan_chunks([], 16_000 * 46, SplitOptions())
    assert [(c.start_sample, c.end_sample) for c in chunks] == [(0, 16_000 * 46)]


def test_recording_shorter_than_the_minimum_is_one_chunk() -> None:
    chunks = plan_chunks([], 100, SplitOptions())
    assert [(c.start_sample, c.end_sample, c.frame_count) for c in chunks] == [(0, 100, 1)]
