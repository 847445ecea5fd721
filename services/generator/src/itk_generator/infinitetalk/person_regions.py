"""Each person's region of the frame, as the reference builds it for its multi-person mode.

A region is a mask at the uploaded image's size: the person's box, or, when no boxes are given,
the reference's default split (person i gets the i-th vertical strip of the frame, shrunk by
`face_scale` of the strip's width at its sides and of the frame's height at top and bottom; for
two people the left and right halves). The background is every pixel outside all boxes. The
masks are then resized (nearest) to cover the generated size and centre-cropped like the image.

Boxes are (x0, y0, x1, y1) fractions of the image's width (x) and height (y). The reference's
`bbox` JSON field is [x_min, y_min, x_max, y_max] in pixels but fills `mask[x_min:x_max,
y_min:y_max]`, i.e. its "x" indexes rows: our (x0, y0, x1, y1) is its
[y0 * height, x0 * width, y1 * height, x1 * width].
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

Box = tuple[float, float, float, float]
FACE_SCALE = 0.05  # the reference's default shrink of the split regions


class RegionError(ValueError):
    """The boxes cannot be used (say which and why)."""


def box_pixels(box: Box, height: int, width: int) -> tuple[int, int, int, int]:
    """(row0, col0, row1, col1) of a fractional box at an image size."""
    x0, y0, x1, y1 = box
    return round(y0 * height), round(x0 * width), round(y1 * height), round(x1 * width)


def check_boxes(boxes: Sequence[Box | None]) -> None:
    given = [box is not None for box in boxes]
    if any(given) and not all(given):
        missing = [str(index + 1) for index, box in enumerate(boxes) if box is None]
        raise RegionError(f"boxes are given for some persons but not for person {', '.join(missing)}: "
                          "give a box for every person or for none")
    for index, box in enumerate(boxes):
        if box is None:
            continue
        x0, y0, x1, y1 = box
        if not all(0.0 <= value <= 1.0 for value in box) or x0 >= x1 or y0 >= y1:
            raise RegionError(f"person {index + 1}'s box {box} must be fractions 0 <= x0 < x1 <= 1 and "
                              "0 <= y0 < y1 <= 1 of the image's width and height")


def person_masks(boxes: Sequence[Box | None], height: int, width: int, face_scale: float = FACE_SCALE
                 ) -> torch.Tensor:
    """[persons + 1, height, width] float masks (each person, then the background) at the image's size."""
    check_boxes(boxes)
    masks = torch.zeros(len(boxes) + 1, height, width)
    if boxes and boxes[0] is not None:
        for index, box in enumerate(boxes):
            assert box is not None
            row0, col0, row1, col1 = box_pixels(box, height, width)
            masks[index, row0:row1, col0:col1] = 1
    else:
        strip = width // len(boxes)
        row0, row1 = int(height * face_scale), int(height * (1 - face_scale))
        for index in range(len(boxes)):
            col0, col1 = int(strip * face_scale + index * strip), int(strip * (1 - face_scale) + index * strip)
            masks[index, row0:row1, col0:col1] = 1
    masks[-1] = (masks[:-1].sum(dim=0) == 0).float()
    return masks


def fit_masks(masks: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Masks [N, H, W] resized (nearest) to cover height x width, then centre-cropped, as the
    reference fits its masks (and as the image is fitted: same scale, same crop)."""
    source_h, source_w = masks.shape[-2:]
    scale = max(height / source_h, width / source_w)
    resized_h, resized_w = math.ceil(scale * source_h), math.ceil(scale * source_w)
    resized = F.interpolate(masks[None].float(), size=(resized_h, resized_w), mode="nearest")[0]
    top, left = round((resized_h - height) / 2.0), round((resized_w - width) / 2.0)
    return resized[:, top: top + height, left: left + width].contiguous()


def latent_masks(masks: torch.Tensor, latent_h: int, latent_w: int) -> torch.Tensor:
    """Masks at the generated size -> 0/1 float masks on the latent grid (nearest), as the reference."""
    return (F.interpolate(masks[None].float(), size=(latent_h, latent_w), mode="nearest")[0] > 0).float()


def generated_person_masks(boxes: Sequence[Box | None], source_h: int, source_w: int, height: int, width: int,
                           face_scale: float = FACE_SCALE) -> torch.Tensor:
    """The persons' masks for an image of source_h x source_w generated at height x width."""
    return fit_masks(person_masks(boxes, source_h, source_w, face_scale), height, width)
