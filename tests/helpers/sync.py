"""Measuring lip sync from a decoded video: how open the mouth is in each frame, and the lag
at which that best follows the audio's loudness.

Works for one chunk or a whole stitched job: the preview backend draws the mouth at the same box
(`itk_generator.preview.mouth_box`) in every chunk of a job, as a dark shape whose height grows
with the openness, so the share of dark pixels inside the box rises and falls with it.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

# Luma below this counts as the mouth's dark inside (the preview draws it at about 13/255).
DARK_LUMA = 60


def mouth_openness_series(video_path: Path, mouth_box: tuple[int, int, int, int]) -> np.ndarray:
    """Per frame, the fraction of dark pixels inside `mouth_box` (x0, y0, x1, y1), in [0, 1]."""
    x0, y0, x1, y1 = mouth_box
    values: list[float] = []
    with av.open(str(video_path)) as container:
        for frame in container.decode(video=0):
            # Plane 0 of yuv420p is the luma at full resolution.
            luma = frame.to_ndarray(format="gray")[y0:y1, x0:x1]
            values.append(float(np.mean(luma < DARK_LUMA)) if luma.size else 0.0)
    return np.asarray(values)


def lagged_correlation(a: np.ndarray, b: np.ndarray, lag: int) -> float:
    """Pearson correlation of a[t] with b[t - lag] over the frames both cover (0 when flat)."""
    if lag >= 0:
        left, right = a[lag:], b[: len(b) - lag]
    else:
        left, right = a[: len(a) + lag], b[-lag:]
    size = min(len(left), len(right))
    left, right = np.asarray(left[:size], dtype=np.float64), np.asarray(right[:size], dtype=np.float64)
    if size < 2 or left.std() == 0 or right.std() == 0:
        return 0.0
    return float(np.corrcoef(left, right)[0, 1])


def best_lag(a: np.ndarray, b: np.ndarray, max_lag: int) -> int:
    """The lag in [-max_lag, max_lag] (frames) at which `a` best follows `b`.

    Positive: `a` trails `b` (a[t] matches b[t - lag]); 0: in sync.
    """
    lags = range(-max_lag, max_lag + 1)
    scores = [lagged_correlation(a, b, lag) for lag in lags]
    return lags[int(np.argmax(scores))]
