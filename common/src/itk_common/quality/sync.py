"""Lip sync as SyncNet's offset and confidence are used: the lag that best lines the mouth up with
the sound, and how well it does.

The sound side is each frame's loudness (RMS over its 640 samples, in dB, floored at SILENT_DB). The
mouth side is a per-frame openness signal (see `assess`). For every lag in -MAX_LAG..MAX_LAG the
Pearson correlation of openness[t] with loudness[t + lag] is taken; the best lag is the largest.
A positive lag means the sound comes that many frames after the mouth moves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from itk_common.constants import SAMPLES_PER_FRAME

MAX_LAG = 12  # frames, about half a second either way
SILENT_DB = -60.0
# Fewer frames than this with a face and some sound variation give no sync figure.
MIN_FRAMES = 25


def loudness_db(samples: np.ndarray, frame_count: int) -> np.ndarray:
    """RMS level in dBFS of each 640-sample frame (16 kHz float samples), floored at SILENT_DB."""
    padded = np.zeros(frame_count * SAMPLES_PER_FRAME, dtype=np.float64)
    used = min(len(samples), len(padded))
    padded[:used] = samples[:used]
    rms = np.sqrt((padded.reshape(frame_count, SAMPLES_PER_FRAME) ** 2).mean(axis=1))
    return np.maximum(20.0 * np.log10(np.maximum(rms, 1e-9)), SILENT_DB)


@dataclass(frozen=True)
class SyncFit:
    lag_frames: int
    correlation: float


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    norm = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / norm) if norm > 1e-12 else float("nan")


def best_lag(openness: np.ndarray, loudness: np.ndarray, first: int, stop: int,
             max_lag: int = MAX_LAG) -> SyncFit | None:
    """The best lag for frames first..stop-1 of the video; None without enough usable frames.

    `openness` is NaN where no face was found; the loudness may be read outside the segment (that is
    what a lag means), never outside the recording.
    """
    scores: dict[int, float] = {}
    frames = np.arange(first, stop)
    for lag in range(-max_lag, max_lag + 1):
        shifted = frames + lag
        keep = (shifted >= 0) & (shifted < len(loudness)) & ~np.isnan(openness[frames])
        if keep.sum() < MIN_FRAMES:
            continue
        score = _pearson(openness[frames[keep]], loudness[shifted[keep]])
        if not np.isnan(score):
            scores[lag] = score
    if not scores:
        return None
    # Ties (a flat stretch) go to the smallest shift.
    lag = max(scores, key=lambda key: (round(scores[key], 9), -abs(key)))
    return SyncFit(lag_frames=lag, correlation=scores[lag])
