"""The preview's lip sync: a dark ellipse whose height follows each frame's loudness.

The drawing is deterministic (the ellipse's height in pixels is proportional to the openness)
so tests can read the openness back from the decoded video and check the sync.
"""

from __future__ import annotations

import cv2
import numpy as np

from itk_common.constants import SAMPLES_PER_FRAME

from .layout import Box

# Frame loudness (RMS, dBFS) mapped linearly onto openness 0..1: quieter than SILENT_DB is a closed
# mouth, louder than OPEN_DB wide open. Speech normalised to about -23 LUFS sits in between.
SILENT_DB = -45.0
OPEN_DB = -12.0
MOUTH_RGB = (24, 8, 12)


def frame_loudness_db(samples: np.ndarray, frame_count: int) -> np.ndarray:
    """RMS level in dBFS of each 640-sample frame; a short last frame uses the samples it has."""
    padded = np.zeros(frame_count * SAMPLES_PER_FRAME, dtype=np.float64)
    used = min(len(samples), len(padded))
    padded[:used] = samples[:used]
    frames = padded.reshape(frame_count, SAMPLES_PER_FRAME)
    counts = np.full(frame_count, SAMPLES_PER_FRAME, dtype=np.float64)
    if frame_count and used < len(padded):
        counts[-1] = max(1, used - (frame_count - 1) * SAMPLES_PER_FRAME)
    rms = np.sqrt((frames**2).sum(axis=1) / counts)
    return 20.0 * np.log10(np.maximum(rms, 1e-6))


def mouth_openness(samples: np.ndarray, frame_count: int) -> np.ndarray:
    """Openness in [0, 1] for each of `frame_count` frames."""
    level = frame_loudness_db(samples, frame_count)
    return np.clip((level - SILENT_DB) / (OPEN_DB - SILENT_DB), 0.0, 1.0)


def draw_mouth(frame: np.ndarray, box: Box, openness: float) -> None:
    """Draw the mouth in place: full box width, height = openness x box height (a line when closed)."""
    centre = ((box.x0 + box.x1) // 2, (box.y0 + box.y1) // 2)
    half_width = max(1, (box.x1 - box.x0) // 2 - 1)
    half_height = round(openness * ((box.y1 - box.y0) // 2 - 1))
    cv2.ellipse(frame, centre, (half_width, max(0, half_height)), 0, 0, 360, MOUTH_RGB,
                thickness=cv2.FILLED, lineType=cv2.LINE_8)
