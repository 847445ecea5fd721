"""Lane planning: lane count, seams in silence near the balanced points, pieces on the clip grid."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from itk_common.constants import FPS, SAMPLES_PER_FRAME, frames_for_samples
from itk_common.wav import decode_wav
from itk_splitter.lanes import LANE_AUDIO_MAX_SEC, lane_count_for, plan_lanes
from itk_splitter.options import OptionsError, SplitOptions
from itk_splitter.seam_search import search_windows
from itk_splitter.silence import min_silence_frames
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
    context = round(options.audio_context_sec * FPS) * SAMPLES_PER_FRAME
    for chunk in chunks:
        # Its whole lane with the context around the lane (lanes here are at most 15 minutes).
        lane = plan.lanes[chunk.lane]
        lane_start, lane_end = lane.start_frame * SAMPLES_PER_FRAME, min(total, lane.end_frame * SAMPLES_PER_FRAME)
        span = (max(0, lane_start - context), min(total, lane_end + context))
        if span[1] - span[0] <= LANE_AUDIO_MAX_SEC * 16_000:
            assert (chunk.wav_start, chunk.wav_end) == span
        else:
            assert 0 <= chunk.wav_end - chunk.wav_start - LANE_AUDIO_MAX_SEC * 16_000 < SAMPLES_PER_FRAME
            assert span[0] <= chunk.wav_start <= chunk.start_sample < chunk.end_sample <= chunk.wav_end <= span[1]


def runs_in(runs: list[tuple[int, int]], low: int, high: int) -> list[tuple[int, int]]:
    """Silent runs whose middle (where a seam in them goes) lies in [low, high], strictly inside them."""
    return [(s, e) for s, e in runs if low <= (s + e) // 2 <= high and s < (s + e) // 2 < e]


@settings(max_examples=200, deadline=None)
@given(lane_case())
def test_each_seam_takes_the_nearest_silence_a_viewer_cannot_see(case) -> None:
    """Near pause, then a pause further away, then a gap between words, then speech only with no gap."""
    runs, total, options = case
    plan = plan_lanes(runs, total, options)
    total_frames = frames_for_samples(total)
    min_lane = max(1, int(np.ceil(options.min_lane_sec * FPS - 1e-9)))
    min_pause = min_silence_frames(options.min_silence_sec)
    pauses = [(s, e) for s, e in runs if e - s >= min_pause]
    previous = 0
    for number, seam in enumerate(plan.seams, start=1):
        remaining = len(plan.lanes) - number + 1
        lane = (total_frames - previous) / remaining
        target = round(previous + lane)
        floor, ceiling = previous + min_lane, total_frames - min_lane * (remaining - 1)
        near, far = search_windows(target, lane, floor, ceiling)
        assert plan.chunks[seam.chunk_index].start_sample == seam.sample
        for candidates, window in ((pauses, near), (pauses, far), (runs, far)):
            found = runs_in(candidates, *window)
            if found:
                # The longest silent run of the first tier that has one, the seam in its middle.
                assert seam.pause in found and seam.frame == (seam.pause[0] + seam.pause[1]) // 2
                assert seam.pause[1] - seam.pause[0] == max(e - s for s, e in found)
                break
        else:
            anywhere = runs_in(runs, floor, ceiling)
            if anywhere:
                assert seam.pause in anywhere
                assert abs(seam.frame - target) == min(abs((s + e) // 2 - target) for s, e in anywhere)
            else:
                # No gap at all where the seam could go: in voiced speech, said so, and a hard cut.
                assert seam.in_voiced_speech and seam.frame == min(max(target, floor), ceiling)
        if seam.pause is not None:
            start, end = seam.pause
            assert not seam.in_voiced_speech and start < seam.frame < end
            # Every frame the fade touches on either side is silent: no two open mouths are mixed.
            longest = round(options.seam_fade_sec * FPS)
            assert seam.fade_frames == min(longest, seam.frame - start, end - seam.frame)
        else:
            assert seam.fade_frames == 0
        previous = seam.frame


def test_seams_fall_back_from_far_pauses_to_word_gaps_and_report_speech() -> None:
    """Lanes of 1500 frames (60 s at 25 fps): the balanced point 1500; the near window is +-30, the far +-150."""
    options = SplitOptions(lane_count=2, min_lane_sec=10.0, chunk_target_sec=45.0).validated()
    total = 3000 * SAMPLES_PER_FRAME

    def seam_of(runs: list[tuple[int, int]]):
        [seam] = plan_lanes(runs, total, options).seams
        return seam

    # A pause (>= 0.5 s = 13 frames) just outside the near window wins over a word gap inside it.
    seam = seam_of([(1490, 1494), (1580, 1600)])
    assert seam.pause == (1580, 1600) and seam.frame == 1590 and seam.fade_frames == 10
    # No pause within 10 %: the longest gap between words within 10 %, cross-faded inside it.
    seam = seam_of([(1490, 1494), (1560, 1566), (1800, 1830)])
    assert seam.pause == (1560, 1566) and seam.frame == 1563 and seam.fade_frames == 3
    # Only a gap far away: still taken, rather than a seam in speech.
    seam = seam_of([(2400, 2404)])
    assert seam.pause == (2400, 2404) and not seam.in_voiced_speech
    # No gap at all: in voiced speech at the balanced point, said so, and a hard cut.
    seam = seam_of([])
    assert seam.in_voiced_speech and seam.frame == 1500 and seam.fade_frames == 0


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
    # Each chunk's WAV holds its lane plus up to 2 s around it, sample for sample.
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
