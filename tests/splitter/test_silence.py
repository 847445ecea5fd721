"""Frame levels and pause detection on hand-made signals."""

from __future__ import annotations

import numpy as np
import pytest

from itk_splitter.silence import FLOOR_DB, frame_levels_db, min_silence_frames, silent_runs


def test_levels_are_frame_rms_in_dbfs_including_a_partial_last_frame() -> None:
    samples = np.concatenate([np.full(640, 0.5), np.zeros(640), np.full(640, 0.01), np.full(100, -0.1)]).astype(
        np.float32
    )
    levels = frame_levels_db(samples)
    assert len(levels) == 4
    np.testing.assert_allclose(levels, [20 * np.log10(0.5), FLOOR_DB, -40.0, -20.0], atol=1e-4)


def test_runs_shorter_than_the_minimum_are_not_pauses() -> None:
    levels = np.array([-10.0] * 3 + [-60.0] * 12 + [-10.0] * 2 + [-60.0] * 13 + [-10.0, -60.0, -60.0])
    assert silent_runs(levels, -40.0, 13) == [(17, 30)]
    assert silent_runs(levels, -40.0, 2) == [(3, 15), (17, 30), (31, 33)]


def test_a_frame_at_the_threshold_is_not_silent() -> None:
    assert silent_runs(np.array([-40.0, -40.1, -40.1]), -40.0, 2) == [(1, 3)]


@pytest.mark.parametrize(("seconds", "frames"), [(0.5, 13), (0.48, 12), (0.0, 2), (1.0, 25)])
def test_minimum_pause_in_frames_covers_the_minimum_duration(seconds: float, frames: int) -> None:
    assert min_silence_frames(seconds) == frames
