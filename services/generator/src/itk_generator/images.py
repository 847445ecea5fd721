"""Decoding uploaded reference images (PNG, JPEG, WebP, ...) into RGB arrays."""

from __future__ import annotations

import cv2
import numpy as np


class ImageDecodeError(ValueError):
    """The bytes are not a picture OpenCV can read."""


def decode_image(data: bytes) -> np.ndarray:
    """Image file bytes -> RGB uint8 array of shape (height, width, 3)."""
    if not data:
        raise ImageDecodeError("the image is empty")
    decoded = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if decoded is None:
        raise ImageDecodeError("the image is not a format that can be decoded (PNG, JPEG, WebP, ...)")
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
