"""The reference image as sent to a provider: no larger than the model can use.

InfiniteTalk works at its 480p or 720p buckets, so a 12-megapixel portrait only makes the
request heavy (base64 in a JSON body, whose size serverless providers cap). Images with a side
longer than `max_side` are scaled down, keeping their aspect ratio, and re-encoded (PNG stays PNG,
anything else becomes a high-quality JPEG); smaller ones go as uploaded.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..images import decode_image

JPEG_QUALITY = 95


def fit_reference(image: bytes, max_side: int) -> bytes:
    rgb = decode_image(image)
    height, width = rgb.shape[:2]
    if max(width, height) <= max_side:
        return image
    scale = max_side / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    smaller = cv2.cvtColor(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2BGR)
    png = image.startswith(b"\x89PNG")
    ok, encoded = cv2.imencode(".png" if png else ".jpg", smaller,
                               [] if png else [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:  # cannot happen for an image OpenCV just decoded; keep the original then
        return image
    return np.asarray(encoded).tobytes()
