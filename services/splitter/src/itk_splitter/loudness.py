"""Whole-recording loudness normalisation to a LUFS target (ITU-R BS.1770 via pyloudnorm).

The recording is measured and gained once as a whole, so every chunk keeps the relative loudness it
had in the original and the model sees one consistent level across chunk boundaries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyloudnorm

from itk_common.constants import SAMPLE_RATE, SAMPLES_PER_FRAME

# What the proto reports for recordings with no measurable loudness (digital silence gives -inf).
SILENCE_LUFS = -70.0
# Samples are kept below -1 dBFS: pcm_s16le encoding would hard-clip anything past full scale.
PEAK_CEILING = 10.0 ** (-1.0 / 20.0)
# At most this share of 640-sample frames may peak above the ceiling after the gain. Reaching the
# target matters more than a few transients, so those few are soft-limited (below); if more frames
# would go over, the gain is lowered instead, because limiting a large part of the speech would be
# audible distortion, which a recording that ends up a little quieter than the target is not.
MAX_LIMITED_FRAME_SHARE = 0.01


@dataclass(frozen=True)
class LoudnessReport:
    # Integrated loudness before normalisation; SILENCE_LUFS when it cannot be measured.
    input_lufs: float
    gain_db: float
    # Samples that went above the ceiling after the gain and were soft-limited.
    limited_samples: int
    # Why no gain was applied, or "" when it was.
    skipped_reason: str = ""


def measure_lufs(samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float | None:
    """Integrated loudness, or None when there is none to measure (silence, or under one 400 ms block)."""
    meter = pyloudnorm.Meter(sample_rate)
    if len(samples) < meter.block_size * sample_rate:
        return None
    # float32 in: the K-weighting filters run about twice as fast as on float64, for a difference in
    # the result far below 0.001 LU.
    lufs = float(meter.integrated_loudness(np.asarray(samples, dtype=np.float32)))
    return lufs if math.isfinite(lufs) and lufs > SILENCE_LUFS else None


def measure_only(samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> LoudnessReport:
    """The report of a recording that is deliberately left at its own level."""
    lufs = measure_lufs(samples, sample_rate)
    return LoudnessReport(SILENCE_LUFS if lufs is None else lufs, 0.0, 0, "normalisation skipped on request")


def normalize_loudness(
    samples: np.ndarray, target_lufs: float, sample_rate: int = SAMPLE_RATE
) -> tuple[np.ndarray, LoudnessReport]:
    """Gain the whole recording to `target_lufs`; silence and too-short recordings are left as they are."""
    meter_block = pyloudnorm.Meter(sample_rate).block_size
    if len(samples) < meter_block * sample_rate:
        reason = f"shorter than the loudness meter's {meter_block * 1000:.0f} ms block"
        return samples, LoudnessReport(SILENCE_LUFS, 0.0, 0, reason)
    input_lufs = measure_lufs(samples, sample_rate)
    if input_lufs is None:
        return samples, LoudnessReport(SILENCE_LUFS, 0.0, 0, "silent: no loudness to normalise")

    gain = 10.0 ** ((target_lufs - input_lufs) / 20.0)
    gain = min(gain, _gain_keeping_peaks(samples))
    gained = (samples * np.float32(gain)).astype(np.float32, copy=False)
    limited = soft_limit(gained, PEAK_CEILING)
    return gained, LoudnessReport(input_lufs, 20.0 * math.log10(gain), limited)


def _gain_keeping_peaks(samples: np.ndarray) -> float:
    """The largest gain that lifts at most MAX_LIMITED_FRAME_SHARE of frames above the ceiling."""
    full = len(samples) // SAMPLES_PER_FRAME
    if full == 0:
        return math.inf
    frame_peaks = np.abs(samples[: full * SAMPLES_PER_FRAME].reshape(full, SAMPLES_PER_FRAME)).max(axis=1)
    loud_peak = float(np.quantile(frame_peaks, 1.0 - MAX_LIMITED_FRAME_SHARE))
    return math.inf if loud_peak <= 0 else PEAK_CEILING / loud_peak


def soft_limit(samples: np.ndarray, ceiling: float) -> int:
    """Bend samples above `ceiling` smoothly towards full scale (in place); return how many there were.

    Above the ceiling the curve is ceiling + (1 - ceiling) * tanh(excess / (1 - ceiling)): it meets the
    straight line with the same slope, so there is no kink, and only approaches full scale, so the
    loudest transients are rounded off instead of hard-clipped.
    """
    over = np.flatnonzero(np.abs(samples) > ceiling)
    if over.size:
        headroom = 1.0 - ceiling
        values = samples[over]
        excess = np.abs(values) - ceiling
        samples[over] = np.sign(values) * (ceiling + headroom * np.tanh(excess / headroom))
    return int(over.size)
