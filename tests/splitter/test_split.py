"""The Python API end to end: file bytes in, normalised samples, plan and WAV chunks out."""

from __future__ import annotations

import numpy as np
import pytest

from itk_common.constants import SAMPLES_PER_FRAME, frames_for_samples
from itk_common.wav import decode_wav_int16, encode_wav
from itk_splitter import SplitOptions, split_audio
from itk_splitter.decode import decode_audio
from itk_splitter.loudness import SILENCE_LUFS, measure_lufs
from itk_splitter.silence import frame_levels_db, silent_runs
from tests.helpers.audio import encode_audio, speech_like, speech_pauses

DURATION_SEC = 60.0
OPTIONS = SplitOptions(chunk_target_sec=12.0)


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return speech_like(DURATION_SEC, seed=21)


@pytest.mark.parametrize("fmt", ["wav", "mp3"])
def test_chunks_join_back_into_the_normalised_recording(speech: np.ndarray, fmt: str) -> None:
    result = split_audio(encode_audio(speech, 16_000, fmt), OPTIONS)
    joined = np.concatenate([decode_wav_int16(chunk.wav) for chunk in result.iter_encoded()])
    np.testing.assert_array_equal(joined, decode_wav_int16(encode_wav(result.samples)))
    assert measure_lufs(result.samples) == pytest.approx(-23.0, abs=0.2)
    assert sum(span.frame_count for span in result.chunks) == frames_for_samples(result.total_samples)
    assert set(result.timings) == {"decode", "normalize", "plan", "encode"}


def test_cuts_fall_inside_the_pauses_of_speech(speech: np.ndarray) -> None:
    result = split_audio(encode_audio(speech, 16_000, "wav"), OPTIONS)
    pauses = speech_pauses(DURATION_SEC, seed=21)
    assert len(result.chunks) >= 4
    for span in result.chunks[:-1]:
        assert span.cut_in_silence
        assert any(start < span.end_sample < end for start, end in pauses)
        assert span.end_sample % SAMPLES_PER_FRAME == 0
        assert abs(span.num_samples / 16_000 - OPTIONS.chunk_target_sec) <= OPTIONS.effective_tolerance_sec


def test_detected_pauses_match_the_real_ones(speech: np.ndarray) -> None:
    runs = silent_runs(frame_levels_db(speech), -40.0, 13)
    found = [(start * SAMPLES_PER_FRAME, end * SAMPLES_PER_FRAME) for start, end in runs]
    real = [pause for pause in speech_pauses(DURATION_SEC, seed=21) if pause[1] - pause[0] >= 13 * 640]
    assert len(found) == len(real)
    for (found_start, found_end), (start, end) in zip(found, real, strict=True):
        # A frame straddling a pause edge counts as silent or not by how much voice it holds.
        assert abs(found_start - start) < SAMPLES_PER_FRAME
        assert abs(found_end - end) < SAMPLES_PER_FRAME


def test_skipping_normalisation_keeps_the_decoded_level(speech: np.ndarray) -> None:
    data = encode_audio(speech, 16_000, "flac")
    result = split_audio(data, SplitOptions(skip_normalization=True))
    np.testing.assert_array_equal(result.samples, decode_audio(data))
    assert result.loudness.input_lufs == pytest.approx(measure_lufs(result.samples))


def test_all_silence_splits_at_the_targets_without_gain() -> None:
    result = split_audio(encode_audio(np.zeros(16_000 * 30, dtype=np.float32), 16_000, "wav"), OPTIONS)
    assert result.loudness.input_lufs == SILENCE_LUFS and result.loudness.gain_db == 0.0
    assert [span.end_sample for span in result.chunks][-1] == 16_000 * 30
    assert not any(np.concatenate([decode_wav_int16(c.wav) for c in result.iter_encoded()]))


def test_a_recording_shorter_than_a_frame_is_one_chunk() -> None:
    tiny = speech_like(0.03, seed=1)
    result = split_audio(encode_audio(tiny, 16_000, "wav"))
    (chunk,) = list(result.iter_encoded())
    assert (chunk.span.start_sample, chunk.span.end_sample, chunk.span.frame_count) == (0, 480, 1)
    assert "shorter" in result.loudness.skipped_reason
