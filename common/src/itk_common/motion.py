"""Motion frames: the last decoded frames of a piece, which the next piece of its lane continues.

They travel and are stored as one NumPy `.npy` file (numpy's own self-describing format, read
without pickle): float16 [frames, height, width, 3], the decoded and colour-corrected frames in
[-1, 1] at the generated size. float16 keeps the values to about 1/2000 of the range, far below
one grey level, at half the size of float32; the same rounding is applied at every clip boundary
inside a piece, so a lane cut into pieces renders exactly like the unbroken stream.
"""

from __future__ import annotations

import io

import numpy as np

MOTION_DTYPE = np.float16


class MotionFormatError(ValueError):
    """The bytes are not motion frames in the agreed format; the message says what is wrong."""


def to_motion(frames: np.ndarray) -> np.ndarray:
    """Float frames [T, H, W, 3] in [-1, 1] (any float dtype), rounded to the motion format."""
    return np.clip(np.asarray(frames, dtype=np.float32), -1.0, 1.0).astype(MOTION_DTYPE)


def uint8_to_motion(frames: np.ndarray) -> np.ndarray:
    """uint8 RGB frames [T, H, W, 3] as motion frames."""
    return to_motion(frames.astype(np.float32) / 127.5 - 1.0)


def encode_motion(frames: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, to_motion(frames), allow_pickle=False)
    return buffer.getvalue()


def decode_motion(data: bytes) -> np.ndarray:
    """Parse and check motion frames: float16, [T >= 1, H >= 1, W >= 1, 3], finite."""
    try:
        frames = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise MotionFormatError(f"not a .npy array ({exc})") from exc
    if not isinstance(frames, np.ndarray) or frames.dtype != MOTION_DTYPE:
        raise MotionFormatError(f"expected float16 frames, got {getattr(frames, 'dtype', type(frames))}")
    if frames.ndim != 4 or frames.shape[-1] != 3 or min(frames.shape) < 1:
        raise MotionFormatError(f"expected shape [frames, height, width, 3], got {list(frames.shape)}")
    if not np.isfinite(frames).all():
        raise MotionFormatError("frames hold NaN or infinite values")
    return frames
