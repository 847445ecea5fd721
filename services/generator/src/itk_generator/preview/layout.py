"""Where the preview puts things: the fitted frame and the mouth box in output pixels.

Output sizes are rounded down to even numbers (H.264 with 4:2:0 chroma needs them), so a
1000x563 request renders at 1000x562.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

from itk_common.video import even

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


def output_size(width: int, height: int) -> tuple[int, int]:
    return even(width), even(height)


def fit_transform(source_width: int, source_height: int, width: int, height: int) -> tuple[float, int, int]:
    """Scale and crop offsets that make the source cover width x height, centred."""
    scale = max(width / source_width, height / source_height)
    left = (round(source_width * scale) - width) // 2
    top = (round(source_height * scale) - height) // 2
    return scale, left, top


def fit_image(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize to cover width x height, then crop the centre (no letterboxing, no distortion)."""
    source_height, source_width = rgb.shape[:2]
    scale, left, top = fit_transform(source_width, source_height, width, height)
    scaled_size = (max(width, round(source_width * scale)), max(height, round(source_height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    scaled = cv2.resize(rgb, scaled_size, interpolation=interpolation)
    return np.ascontiguousarray(scaled[top : top + height, left : left + width])


class FaceFinder:
    """The largest frontal face in a picture, by OpenCV's stock Haar cascade."""

    def __init__(self, cascade_path: str = DEFAULT_FACE_CASCADE) -> None:
        self.cascade = cv2.CascadeClassifier(cascade_path)
        if self.cascade.empty():
            raise FileNotFoundError(f"no usable Haar cascade at {cascade_path}")
        # One classifier is shared by concurrent renders; OpenCV does not promise it is thread-safe.
        self._lock = threading.Lock()

    def find(self, rgb: np.ndarray) -> Box | None:
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
        if len(faces) == 0:
            return None
        x, y, w, h = max(faces, key=lambda face: face[2] * face[3])
        return Box(round(x / shrink), round(y / shrink), round((x + w) / shrink), round((y + h) / shrink))


def mouth_in_face(face: Box) -> tuple[float, float, float, float]:
    """Mouth centre and size in source pixels: a Haar face box ends just below the lips."""
    face_width, face_height = face.x1 - face.x0, face.y1 - face.y0
    centre_x = face.x0 + face_width / 2
    centre_y = face.y0 + 0.73 * face_height
    return centre_x, centre_y, 0.42 * face_width, 0.26 * face_height


def mouth_without_face(source_width: int, source_height: int) -> tuple[float, float, float, float]:
    """No face found: the lower middle of the picture, sized like a mouth in a head-and-shoulders shot."""
    return source_width / 2, source_height * 0.72, 0.18 * source_width, 0.12 * source_height


def locate_mouth(rgb: np.ndarray, width: int, height: int, faces: FaceFinder) -> Box:
    """The mouth box in the pixels of the fitted width x height frame (already even-rounded)."""
    source_height, source_width = rgb.shape[:2]
    face = faces.find(rgb)
    if face is None:
        centre_x, centre_y, mouth_width, mouth_height = mouth_without_face(source_width, source_height)
    else:
        centre_x, centre_y, mouth_width, mouth_height = mouth_in_face(face)
    scale, left, top = fit_transform(source_width, source_height, width, height)
    half_width = max(1, min(round(mouth_width * scale / 2), width // 2))
    half_height = max(1, min(round(mouth_height * scale / 2), height // 2))
    x = round(centre_x * scale) - left
    y = round(centre_y * scale) - top
    # Keep the whole box inside the frame so the mouth is never cut off by the crop.
    x = min(max(x, half_width), width - half_width)
    y = min(max(y, half_height), height - half_height)
    return Box(x - half_width, y - half_height, x + half_width, y + half_height)
