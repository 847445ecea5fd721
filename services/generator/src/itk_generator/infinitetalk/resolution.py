"""InfiniteTalk's resolution buckets and the image fitting that goes with them.

Sizes, as the backend uses them:
- The bucket family is the job's `resolution` ("480p": buckets of about 640x640 pixels,
  "720p": about 960x960).
- Within the family the bucket is the one whose height/width ratio is closest to the requested
  `height / width` (to the reference image's ratio when the request gives no size).
- The reference image is resized (bilinear) to cover the bucket and center-cropped to it; the
  model generates at the bucket size (the "generated" size).
- The delivered MP4 has the requested size (rounded down to even numbers), each frame resized
  to cover it and center-cropped; without a requested size it has the bucket size.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

# height/width ratio -> (height, width), as in the reference's ASPECT_RATIO_627 / ASPECT_RATIO_960.
BUCKETS: dict[str, dict[float, tuple[int, int]]] = {
    "480p": {
        0.26: (320, 1216), 0.38: (384, 1024), 0.50: (448, 896), 0.67: (512, 768), 0.82: (576, 704),
        1.00: (640, 640), 1.22: (704, 576), 1.50: (768, 512), 1.86: (832, 448), 2.00: (896, 448),
        2.50: (960, 384), 2.83: (1088, 384), 3.60: (1152, 320), 3.80: (1216, 320), 4.00: (1280, 320),
    },
    "720p": {
        0.22: (448, 2048), 0.29: (512, 1792), 0.36: (576, 1600), 0.45: (640, 1408), 0.55: (704, 1280),
        0.63: (768, 1216), 0.76: (832, 1088), 0.88: (896, 1024), 1.00: (960, 960), 1.14: (1024, 896),
        1.31: (1088, 832), 1.50: (1152, 768), 1.58: (1216, 768), 1.82: (1280, 704), 1.91: (1344, 704),
        2.20: (1408, 640), 2.30: (1472, 640), 2.67: (1536, 576), 2.89: (1664, 576), 3.62: (1856, 512),
        3.75: (1920, 512),
    },
}
RESOLUTIONS = tuple(BUCKETS)


def choose_bucket(height: int, width: int, resolution: str = "480p",
                  buckets: dict[str, dict[float, tuple[int, int]]] = BUCKETS) -> tuple[int, int]:
    """(height, width) of the bucket whose ratio is closest to height/width (first one on ties)."""
    if resolution not in buckets:
        raise ValueError(f"unknown resolution {resolution!r}; known: {', '.join(buckets)}")
    if height <= 0 or width <= 0:
        raise ValueError(f"size must be positive, got {width}x{height}")
    ratio = height / width
    family = buckets[resolution]
    closest = min(family, key=lambda key: abs(key - ratio))
    return family[closest]


def resize_to_cover(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize [H, W, C] uint8 so it covers height x width (sizes rounded up), then center-crop.

    Area averaging when shrinking (like the reference's antialiased PIL resize), bilinear when growing.
    """
    source_h, source_w = image.shape[:2]
    scale = max(height / source_h, width / source_w)
    resized_h, resized_w = math.ceil(scale * source_h), math.ceil(scale * source_w)
    if (resized_h, resized_w) != (source_h, source_w):
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        image = cv2.resize(image, (resized_w, resized_h), interpolation=interpolation)
    top = round((resized_h - height) / 2.0)
    left = round((resized_w - width) / 2.0)
    return np.ascontiguousarray(image[top: top + height, left: left + width])


def delivered_size(requested_height: int, requested_width: int, bucket: tuple[int, int]) -> tuple[int, int]:
    """(height, width) of the MP4: the request rounded down to even numbers, or the bucket."""
    if requested_height <= 0 or requested_width <= 0:
        return bucket
    return max(2, requested_height - requested_height % 2), max(2, requested_width - requested_width % 2)
