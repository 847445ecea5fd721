"""Whole-recording loudness normalisation (BS.1770 via pyloudnorm)."""

from __future__ import annotations

import numpy as np
import pytest

from itk_splitter.loudness import PEAK_CEILING, SILENCE_LUFS, measure_lufs, normalize_loudness
from tests.helpers.audio import speech_like


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return speech_like(12.0, pause_every_sec=3.0, seed=5)


@pytest.mark.parametrize("scale", [0.03, 0.3, 1.0])
@pytest.mark.parametrize("target", [-23.0, -16.0])
def test_speech_at_any_level_comes_out_at_the_target(speech: np.ndarray, scale: float, target: float) -> None:
    quiet_or_loud = speech * np.float32(scale)
    normalised, report = normalize_loudness(quiet_or_loud, target)
    assert report.skipped_reason == ""
    assert report.input_lufs == pytest.approx(measure_lufs(quiet_or_loud), abs=1e-9)
    assert measure_lufs(normalised) == pytest.approx(target, abs=0.2)
    assert report.gain_db == pytest.approx(target - report.input_lufs, abs=1e-6)
    assert normalised.dtype == np.float32 and report.limited_samples == 0


def test_all_silence_is_left_alone_and_reported() -> None:
    silence = np.zeros(16_000 * 3, dtype=np.float32)
    normalised, report = normalize_loudness(silence, -23.0)
    assert not normalised.any()
    assert report.input_lufs == SILENCE_LUFS and report.gain_db == 0.0
    assert "silent" in report.skipped_reason


def test_audio_shorter_than_one_gating_block_is_left_alone(speech: np.ndarray) -> None:
    short = speech[:4000]
    normalised, report = normalize_loudness(short, -23.0)
    np.testing.assert_array_equal(normalised, short)
    assert report.input_lufs == SILENCE_LUFS and "shorter" in report.skipped_reason


def test_a_lone_click_in_quiet_speech_is_soft_limited_not_clipped(speech: np.ndarray) -> None:
    quiet = speech * np.float32(0.02)
    quiet[50_000] = 0.9
    normalised, report = normalize_loudness(quiet, -23.0)
    # The full gain was applied (the click itself counts towards the measured loudness, as BS.1770 says).
    assert report.gain_db == pytest.approx(-23.0 - report.input_lufs, abs=1e-6)
    assert report.limited_samples >= 1
    assert PEAK_CEILING < abs(normalised[50_000]) <= 1.0
    # Everything but the click got exactly the linear gain.
    others = np.delete(np.arange(len(quiet)), 50_000)
    gain = np.float32(10 ** (report.gain_db / 20))
    np.testing.assert_allclose(normalised[others], quiet[others] * gain, rtol=1e-6)


def test_gain_stops_short_of_target_rather_than_limiting_most_frames() -> None:
    # A sparse click train: very low loudness, but full-height peaks in every frame.
    clicks = np.zeros(16_000 * 5, dtype=np.float32)
    clicks[::640] = 0.5
    normalised, report = normalize_loudness(clicks, -23.0)
    assert report.gain_db < -23.0 - report.input_lufs
    assert np.abs(normalised).max() <= PEAK_CEILING + 1e-6
    assert report.limited_samples == 0
