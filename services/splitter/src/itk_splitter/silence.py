"""Per-frame levels and the pauses in them.

Levels are measured on 640-sample frames (one 25 fps video frame at 16 kHz), so every pause starts
and ends on a frame boundary and cuts chosen inside one are frame-aligned by construction. The level
is the frame's RMS in dBFS: unlike a per-sample peak it is not fooled by a lone click in a pause.
"""

from __future__ import annotations

import math

import numpy as np

from itk_common.constants import FPS, SAMPLES_PER_FRAME

# Level reported for a frame of exact zeros (log10(0) would be -inf).
FLOOR_DB = -150.0


def frame_levels_db(samples: np.ndarray) -> np.ndarray:
    """RMS level in dBFS of each 640-sample frame; the last frame may be partial."""
    full = len(samples) // SAMPLES_PER_FRAME
    frames = samples[: full * SAMPLES_PER_FRAME].reshape(full, SAMPLES_PER_FRAME)
    energy = np.einsum("ij,ij->i", frames, frames, dtype=np.float64) / SAMPLES_PER_FRAME
    tail = samples[full * SAMPLES_PER_FRAME :]
    if tail.size:
        energy = np.append(energy, np.dot(tail.astype(np.float64), tail) / tail.size)
    floor = 10.0 ** (FLOOR_DB / 10.0)
    return 10.0 * np.log10(np.maximum(energy, floor))


def min_silence_frames(min_silence_sec: float) -> int:
    """Frames a pause must span; at least 2, so a frame boundary lies strictly inside it."""
    return max(2, math.ceil(min_silence_sec * FPS - 1e-9))


def silent_runs(levels_db: np.ndarray, threshold_db: float, min_frames: int) -> list[tuple[int, int]]:
    """Frame ranges [start, end) where every frame is below `threshold_db`, at least `min_frames` long."""
    silent = np.concatenate(([False], levels_db < threshold_db, [False]))
    edges = np.flatnonzero(silent[1:] != silent[:-1])
    starts, ends = edges[0::2], edges[1::2]
    keep = ends - starts >= min_frames
    return [(int(s), int(e)) for s, e in zip(starts[keep], ends[keep], strict=True)]
