"""Lane planning: lane count, seams in the longest pauses near the balanced points, pieces on the clip grid."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from itk_common.constants import FPS, SAMPLES_PER_FRAME, frames_for_samples
from itk_common.wav import decode_wav
from itk_splitter.lanes import (
    SEAM_FALLBACK_MIN_SEC,
    SEAM_FALLBACK_SHARE,
    SEAM_WINDOW_MIN_SEC,
    SEAM_WINDOW_SHARE,
    lane_count_for,
    plan_lanes,
)
from itk_splitter.options import OptionsError, SplitOptions
from itk_splitter.split import split_audio
from tests.helpers.audio import encode_audio, speech_like
from tests.splitter.test_plan import pauses_strategy

CLIP, STRIDE = 81, 72


@st.composite
def lane_case(draw: st.DrawFn) -> tuple[list[tuple[int, int]], int, SplitOptions]:
    total = draw(st.integers(1, 16_000 * 900))
    options = SplitOptions(
        chunk_target_sec=draw(st.floats(1.0, 60.0)), min_chunk_sec=draw(st.floats(0.0, 1.0)),
        lane_count=draw(st.integers(1, 9)), min_lane_sec=draw(st.floats(5.0, 60.0)),
        audio_context_sec=draw(st.sampled_from([0.0, 2.0])),
    ).validated()
    return draw(pauses_strategy(frames_for_samples(total))), total, options


@settings(max_examples=150, deadline=None)
@given(lane_case())
def test_lanes_partition_the_recording_into_pieces_on_the_clip_grid(case) -> None:
    pauses, total, options = case
    plan = plan_lanes(pauses, total, options)
    chunks = plan.chunks
    assert chunks[0].start_sample == 0 and chunks[-1].end_sample == total
    for index, (chunk, following) in enumerate(itertools.pairwise(chunks)):
        assert chunk.index == index and chunk.end_sample == following.start_sample
        assert chunk.end_sample % SAMPLES_PER_FRAME == 0
    assert sum(chunk.frame_count for chunk in chunks) == frames_for_samples(total)
    expected_lanes = lane_count_for(frames_for_samples(total), options.lane_count, options.min_lane_sec)
    assert len(plan.lanes) == expected_lanes and len(plan.seams) == expected_lanes - 1
    for lane in plan.lanes:
        pieces = chunks[lane.first_chunk: lane.first_chunk + lane.chunk_count]
        assert all(piece.lane == lane.index for piece in pieces)
        assert pieces[0].lane_first_frame == 0 and pieces[0].start_sample == lane.start_frame * SAMPLES_PER_FRAME
        for piece, following in itertools.pairwise(pieces):
            # Every cut inside a lane ends a clip of the stream: 81 + 72k frames into the lane.
            cut = following.lane_first_frame
            assert cut == piece.lane_first_frame + piece.frame_count
            assert cut >= CLIP and (cut - CLIP) % STRIDE == 0
        if len(plan.lanes) > 1:
            assert lane.end_frame - lane.start_frame >= options.min_lane_sec * FPS - 1
    for chunk in chunks:
        context = round(options.audio_context_sec * FPS) * SAMPLES_PER_FRAME
        assert chunk.wav_start == max(0, chunk.start_sample - context)
        assert chunk.wav_end == min(total, chunk.end_sample + context)


@settings(max_examples=150, deadline=None)
@given(lane_case())
def test_each_seam_takes_the_longest_pause_near_its_balanced_point(case) -> None:
    pauses, total, options = case
    plan = plan_lanes(pauses, total, options)
    total_frames = frames_for_samples(total)
    min_lane = max(1, int(np.ceil(options.min_lane_sec * FPS - 1e-9)))
    previous = 0
    for number, seam in enumerate(plan.seams, start=1):
        remaining = len(plan.lanes) - number + 1
        lane = (total_frames - previous) / remaining
        target = round(previous + lane)
        floor, ceiling = previous + min_lane, total_frames - min_lane * (remaining - 1)
        chosen = None
        for share, least in ((SEAM_WINDOW_SHARE, SEAM_WINDOW_MIN_SEC), (SEAM_FALLBACK_SHARE, SEAM_FALLBACK_MIN_SEC)):
            window = max(round(least * FPS), round(share * lane))
            low, high = max(target - window, floor), min(target + window, ceiling)
            candidates = [(s, e) for s, e in pauses if low <= (s + e) // 2 <= high and s < (s + e) // 2 < e]
            if candidates:
                chosen = max(e - s for s, e in candidates)
                break
        assert plan.chunks[seam.chunk_index].start_sample == seam.sample
        if chosen is not None:
            # In the longest pause of the first window that has one (2 %, else 5 % of a lane).
            assert seam.pause is not None
            start, end = seam.pause
            assert start < seam.frame < end and low <= seam.frame <= high
            assert end - start == chosen
            assert 0 <= seam.fade_frames <= min(seam.frame - start, end - seam.frame)
        else:
            assert seam.pause is None and seam.frame == min(max(target, floor), ceiling)
        previous = seam.frame


def test_one_generator_no_seam_four_generators_three_seams_in_long_pauses() -> None:
    """A 10-minute recording: one lane when one is asked for; four lanes, three seams in pauses."""
    audio = speech_like(600.0, seed=7)
    wav = encode_audio(audio, 16_000, "wav")
    one = split_audio(wav, SplitOptions(lane_count=1, chunk_target_sec=45.0))
    assert len(one.lanes) == 1 and not one.seams
    assert all(chunk.lane == 0 for chunk in one.chunks)
    four = split_audio(wav, SplitOptions(lane_count=4, chunk_target_sec=45.0, audio_context_sec=2.0))
    assert len(four.lanes) == 4 and len(four.seams) == 3
    for seam in four.seams:
        # In a pause, and the longest one near its balanced point (see the property test above).
        assert seam.pause is not None and seam.pause[0] < seam.frame < seam.pause[1]
        assert seam.fade_frames == min(10, seam.frame - seam.pause[0], seam.pause[1] - seam.frame)
    lengths = [lane.end_frame - lane.start_frame for lane in four.lanes]
    assert max(lengths) <= 1.03 * sum(lengths) / 4
    # Each chunk's WAV holds its audio plus up to 2 s on each side, sample for sample.
    for chunk in itertools.islice(four.iter_encoded(), 3):
        samples = decode_wav(chunk.wav)
        expected = four.samples[chunk.span.wav_start: chunk.span.wav_end]
        assert len(samples) == len(expected)
        assert np.abs(samples - expected).max() <= 1 / 32768 + 1e-6


def test_lane_options_are_checked() -> None:
    for field, value in (("lane_count", 65), ("lane_count", -1), ("clip_frames", 80), ("motion_frames", 81),
                         ("min_lane_sec", -1.0), ("audio_context_sec", 31.0), ("seam_fade_sec", 6.0)):
        try:
            SplitOptions(**{field: value}).validated()
        except OptionsError as error:
            assert error.field == field
        else:
            raise AssertionError(f"{field}={value} was accepted")
    assert lane_count_for(total_frames=10 * FPS, requested=4, min_lane_sec=30.0) == 1
    assert lane_count_for(total_frames=600 * FPS, requested=4, min_lane_sec=30.0) == 4
    assert lane_count_for(total_frames=90 * FPS, requested=8, min_lane_sec=30.0) == 3
