"""Frontal faces in a picture, by OpenCV's stock Haar cascade (it ships inside the opencv wheel).

The preview backend draws mouths where it finds faces, and the gateway offers the faces of a
multi-person portrait as the speakers' boxes (left to right = person 1, 2, ...) when a request
gives none. Needs the `faces` extra (opencv-python-headless).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

DEFAULT_FACE_CASCADE = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
# Detection runs on a copy no larger than this: faster, and Haar cascades need no more detail.
DETECTION_MAX_SIDE = 640


@dataclass(frozen=True)
class Box:
    """A pixel rectangle, x0/y0 inclusive and x1/y1 exclusive."""

    x0: int
    y0: int
    x1: int
    y1: int

    def as_tuple(self) -> tuple[int, int, int, int]:
        return self.x0, self.y0, self.x1, self.y1

    @property
    def area(self) -> int:
        return max(0, self.x1 - self.x0) * max(0, self.y1 - self.y0)


class FaceFinder:
    """Frontal faces in an RGB picture, in its pixels."""

    def __init__(self, cascade_path: str = DEFAULT_FACE_CASCADE) -> None:
        self.cascade = cv2.CascadeClassifier(cascade_path)
        if self.cascade.empty():
            raise FileNotFoundError(f"no usable Haar cascade at {cascade_path}")
        # One classifier is shared by concurrent callers; OpenCV does not promise it is thread-safe.
        self._lock = threading.Lock()

    def find_all(self, rgb: np.ndarray) -> list[Box]:
        """Every face found, left to right (by the box's centre)."""
        height, width = rgb.shape[:2]
        shrink = min(1.0, DETECTION_MAX_SIDE / max(height, width))
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        if shrink < 1.0:
            gray = cv2.resize(gray, (round(width * shrink), round(height * shrink)),
                              interpolation=cv2.INTER_AREA)
        min_side = max(24, min(gray.shape) // 10)
        with self._lock:
            faces = self.cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5,
                                                  minSize=(min_side, min_side))
        boxes = [Box(round(x / shrink), round(y / shrink), round((x + w) / shrink), round((y + h) / shrink))
                 for x, y, w, h in faces]
        return sorted(boxes, key=lambda box: box.x0 + box.x1)

    def find(self, rgb: np.ndarray) -> Box | None:
        """The largest face, or None."""
        faces = self.find_all(rgb)
        return max(faces, key=lambda box: box.area) if faces else None

    def find_in(self, rgb: np.ndarray, region: Box) -> Box | None:
        """The largest face inside `region` (pixels of `rgb`), in `rgb`'s pixels."""
        crop = rgb[region.y0 : region.y1, region.x0 : region.x1]
        if crop.shape[0] < 24 or crop.shape[1] < 24:
            return None
        face = self.find(crop)
        if face is None:
            return None
        return Box(face.x0 + region.x0, face.y0 + region.y0, face.x1 + region.x0, face.y1 + region.y0)
