"""What every finished job's MP4 must satisfy."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from itk_common.constants import SAMPLES_PER_FRAME, frames_for_samples
from itk_common.video import probe_video
from tests.helpers.sync import best_lag, mouth_openness_series


def frame_loudness(samples: np.ndarray) -> np.ndarray:
    """RMS of each 640-sample (one video frame) window of the recording."""
    frames = frames_for_samples(len(samples))
    padded = np.zeros(frames * SAMPLES_PER_FRAME, dtype=np.float64)
    padded[: len(samples)] = samples
    return np.sqrt(np.mean(padded.reshape(frames, SAMPLES_PER_FRAME) ** 2, axis=1))


def check_video(path: Path, samples: np.ndarray, size: int,
                mouth_box: tuple[int, int, int, int] | None = None) -> None:
    info = probe_video(path)
    expected_frames = frames_for_samples(len(samples))
    audio_sec = len(samples) / 16_000
    assert info.frame_count == expected_frames
    assert (info.width, info.height) == (size, size)
    assert info.has_audio
    assert abs(info.duration_sec - audio_sec) <= 0.04
    assert abs(info.audio_duration_sec - audio_sec) <= 0.04
    if mouth_box is not None:
        openness = mouth_openness_series(path, mouth_box)
        loudness = frame_loudness(samples)
        assert len(openness) == len(loudness)
        # Sync across the whole job, chunk boundaries included: motion follows sound at lag 0.
        assert best_lag(openness, loudness, max_lag=12) == 0
