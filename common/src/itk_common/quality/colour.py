"""Colour drift: CIEDE2000 between the mean CIELAB colours of two pictures or regions."""

from __future__ import annotations

import numpy as np
from skimage.color import deltaE_ciede2000, rgb2lab

# Every STRIDE-th pixel in each direction is enough for a mean colour and four times cheaper squared.
STRIDE = 4


def mean_lab(rgb: np.ndarray, region: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """The mean CIELAB colour (D65) of an RGB uint8 picture, or of its `region` (left, top, right, bottom)."""
    if region is not None:
        left, top, right, bottom = region
        rgb = rgb[top:bottom, left:right]
    sample = rgb[::STRIDE, ::STRIDE] if min(rgb.shape[:2]) >= 4 * STRIDE else rgb
    return rgb2lab(sample).reshape(-1, 3).mean(axis=0)


def delta_e(lab_a: np.ndarray, lab_b: np.ndarray) -> float:
    return float(deltaE_ciede2000(lab_a, lab_b))


def fit_cover(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """The picture scaled to cover width x height and cropped at the centre, as the generators fit
    a portrait to the output size (nearest-neighbour: only its colours are compared)."""
    source_height, source_width = rgb.shape[:2]
    scale = max(width / source_width, height / source_height)
    scaled_w, scaled_h = max(width, round(source_width * scale)), max(height, round(source_height * scale))
    left, top = (scaled_w - width) // 2, (scaled_h - height) // 2
    cols = np.minimum(((np.arange(width) + left) / scale).astype(int), source_width - 1)
    rows = np.minimum(((np.arange(height) + top) / scale).astype(int), source_height - 1)
    return rgb[rows][:, cols]
