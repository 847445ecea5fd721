"""The preview's motion state: a slow sway of the portrait that a lane carries from piece to piece.

InfiniteTalk's head pose flows on through a lane because each piece starts from the previous
piece's last frames. The preview models that with a small, smooth sway (a damped random walk of
the portrait's offset, at most SWAY_MAX_PX pixels), whose state a piece reads back from the
motion frames it is given (the offsets of the last two frames against the portrait, by phase
correlation refined by ECC alignment), exactly as a real model has only those frames to go on.
A lane's first piece starts still, at the portrait's own position, so a seam between lanes is a
visible jump that the
stitcher's cross-fade softens. The mouth stays where the face detector put it, so the lip-sync
measurement reads the same box in every frame.

The random steps come from (seed, lane, frame offset in the lane) only, in blocks of one second,
so the sway does not depend on where the lane was cut into pieces.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from itk_common.constants import FPS

SWAY_MAX_PX = 3.0
DAMPING = 0.92
STEP_PX = 0.06


@dataclass(frozen=True)
class SwayState:
    offset: tuple[float, float] = (0.0, 0.0)
    velocity: tuple[float, float] = (0.0, 0.0)


def random_steps(seed: int, lane: int, first_frame: int, count: int) -> np.ndarray:
    """[count, 2] standard-normal steps for lane frames first_frame..first_frame+count-1."""
    steps = np.empty((count, 2))
    frame = first_frame
    while frame < first_frame + count:
        block = frame // FPS
        values = np.random.default_rng([seed & 0xFFFFFFFFFFFFFFFF, lane, block]).standard_normal((FPS, 2))
        stop = min((block + 1) * FPS, first_frame + count)
        steps[frame - first_frame : stop - first_frame] = values[frame - block * FPS : stop - block * FPS]
        frame = stop
    return steps


def sway_offsets(state: SwayState, steps: np.ndarray) -> np.ndarray:
    """[n, 2] offsets (x, y) in pixels of the n frames after `state`."""
    offset, velocity = np.array(state.offset, dtype=np.float64), np.array(state.velocity, dtype=np.float64)
    out = np.empty_like(steps)
    for index, step in enumerate(steps):
        velocity = DAMPING * velocity + STEP_PX * step
        offset = offset + velocity
        beyond = np.abs(offset) > SWAY_MAX_PX
        offset = np.clip(offset, -SWAY_MAX_PX, SWAY_MAX_PX)
        velocity = np.where(beyond, -0.5 * velocity, velocity)
        out[index] = offset
    return out


def shifted(image: np.ndarray, offset: np.ndarray | tuple[float, float]) -> np.ndarray:
    """The image moved by (x, y) pixels, sub-pixel, the uncovered border mirrored."""
    matrix = np.float32([[1, 0, offset[0]], [0, 1, offset[1]]])
    return cv2.warpAffine(image, matrix, (image.shape[1], image.shape[0]), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT)


def measure_offset(background: np.ndarray, frame: np.ndarray) -> tuple[float, float]:
    """The (x, y) shift of `frame` against `background` (both RGB, same size): phase correlation
    for a first estimate, refined by ECC image alignment (translation only).

    Phase correlation alone is off by up to a quarter pixel, and the velocity taken from two such
    estimates by up to 0.4 px a frame, which the damped sway turns into a visible jump at the
    next piece's first frame; refined, both errors are under 0.05 px."""
    reference = cv2.cvtColor(background, cv2.COLOR_RGB2GRAY).astype(np.float32)
    moved = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)
    # The window keeps the mirrored border from pulling the estimate toward zero.
    window = cv2.createHanningWindow((reference.shape[1], reference.shape[0]), cv2.CV_32F)
    (dx, dy), _ = cv2.phaseCorrelate(reference, moved, window)
    # The border the shift mirrors in is left out of the alignment.
    margin = int(np.ceil(SWAY_MAX_PX)) + 2
    mask = np.zeros(reference.shape, np.uint8)
    mask[margin:-margin, margin:-margin] = 1
    warp = np.float32([[1, 0, dx], [0, 1, dy]])
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-6)
    try:
        _, warp = cv2.findTransformECC(reference, moved, warp, cv2.MOTION_TRANSLATION, criteria, mask, 5)
    except cv2.error:  # no convergence (a featureless frame): keep the phase-correlation estimate
        return float(dx), float(dy)
    return float(warp[0, 2]), float(warp[1, 2])


def state_from_motion(background: np.ndarray, motion: np.ndarray | None) -> SwayState:
    """The sway state at the end of the previous piece, read from its motion frames."""
    if motion is None or len(motion) == 0:
        return SwayState()
    frames = np.clip((motion[-2:].astype(np.float32) + 1.0) * 127.5, 0, 255).round().astype(np.uint8)
    if frames.shape[1:3] != background.shape[:2]:
        height, width = background.shape[:2]
        frames = np.stack([cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA) for frame in frames])
    last = measure_offset(background, frames[-1])
    before = measure_offset(background, frames[0]) if len(frames) > 1 else last
    velocity = (last[0] - before[0], last[1] - before[1])
    return SwayState(offset=last, velocity=velocity)
