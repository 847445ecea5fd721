"""The image fitting that goes with InfiniteTalk's resolution buckets (itk_common.catalogue).

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

from itk_common.catalogue import BUCKETS, RESOLUTIONS, choose_bucket

__all__ = ["BUCKETS", "RESOLUTIONS", "choose_bucket", "delivered_size", "resize_to_cover"]
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
