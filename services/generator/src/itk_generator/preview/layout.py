"""Where the preview puts things: the fitted frame and the mouth box in output pixels.

Output sizes are rounded down to even numbers (H.264 with 4:2:0 chroma needs them), so a
1000x563 request renders at 1000x562.
"""

from __future__ import annotations

import cv2
import numpy as np

from itk_common.faces import DEFAULT_FACE_CASCADE, Box, FaceFinder
from itk_common.video import even

__all__ = ["DEFAULT_FACE_CASCADE", "Box", "FaceFinder", "fit_image", "locate_mouth", "locate_person_mouths",
           "output_size"]


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
    mouth = mouth_without_face(source_width, source_height) if face is None else mouth_in_face(face)
    return mouth_in_output(mouth, source_width, source_height, width, height)


def person_region(box: tuple[float, float, float, float] | None, index: int, count: int,
                  source_width: int, source_height: int) -> Box:
    """A speaker's region in source pixels: their box, or without one the index-th of `count`
    equal vertical strips (the reference's default split: person 1 left, person 2 right)."""
    if box is None:
        return Box(source_width * index // count, 0, source_width * (index + 1) // count, source_height)
    x0, y0, x1, y1 = box
    return Box(round(x0 * source_width), round(y0 * source_height),
               max(round(x0 * source_width) + 1, round(x1 * source_width)),
               max(round(y0 * source_height) + 1, round(y1 * source_height)))


def locate_person_mouths(rgb: np.ndarray, width: int, height: int, faces: FaceFinder,
                         boxes: list[tuple[float, float, float, float] | None]) -> list[Box]:
    """One mouth box per speaker in the fitted frame's pixels.

    A speaker's mouth is on the largest face found inside their region; a given box with no face
    detected in it is taken as the face itself, a default strip without one gets a mouth in its
    lower middle.
    """
    source_height, source_width = rgb.shape[:2]
    mouths = []
    for index, box in enumerate(boxes):
        region = person_region(box, index, len(boxes), source_width, source_height)
        face = faces.find_in(rgb, region)
        if face is not None:
            mouth = mouth_in_face(face)
        elif box is not None:
            mouth = mouth_in_face(region)
        else:
            centre_x, centre_y, mouth_width, mouth_height = mouth_without_face(region.x1 - region.x0,
                                                                               source_height)
            mouth = (region.x0 + centre_x, centre_y, mouth_width, mouth_height)
        mouths.append(mouth_in_output(mouth, source_width, source_height, width, height))
    return mouths


def mouth_in_output(mouth: tuple[float, float, float, float], source_width: int, source_height: int,
                    width: int, height: int) -> Box:
    """A mouth (centre x, centre y, width, height in source pixels) as a box of the fitted frame."""
    centre_x, centre_y, mouth_width, mouth_height = mouth
    scale, left, top = fit_transform(source_width, source_height, width, height)
    half_width = max(1, min(round(mouth_width * scale / 2), width // 2))
    half_height = max(1, min(round(mouth_height * scale / 2), height // 2))
    x = round(centre_x * scale) - left
    y = round(centre_y * scale) - top
    # Keep the whole box inside the frame so the mouth is never cut off by the crop.
    x = min(max(x, half_width), width - half_width)
    y = min(max(y, half_height), height - half_height)
    return Box(x - half_width, y - half_height, x + half_width, y + half_height)
