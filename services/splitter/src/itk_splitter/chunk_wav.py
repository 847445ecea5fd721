"""Chunks leave as 16 kHz pcm_s16le WAV files (mono, or one channel per speaker), each read back
and checked before it is sent."""

from __future__ import annotations

import numpy as np

from itk_common.constants import SAMPLE_RATE
from itk_common.wav import WavFormatError, decode_wav_channels_int16, encode_wav

from .plan import ChunkSpan


class ChunkEncodingError(RuntimeError):
    """A chunk's WAV did not come out as specified (a bug here, not a problem with the upload)."""


def encode_chunk(samples: np.ndarray, span: ChunkSpan) -> bytes:
    """The WAV bytes of `span` within `samples` ([samples], or [persons, samples] for one channel
    per person; its audio context included), verified to parse back."""
    wav = encode_wav(samples[..., span.wav_start : span.wav_end], SAMPLE_RATE)
    check_chunk_wav(wav, span.wav_end - span.wav_start, 1 if samples.ndim == 1 else samples.shape[0])
    return wav


def check_chunk_wav(wav: bytes, expected_samples: int, channels: int = 1) -> None:
    """Parse `wav` back: PCM 16-bit, 16 kHz, `channels` channels of exactly `expected_samples` samples."""
    try:
        decoded = decode_wav_channels_int16(wav, expected_rate=SAMPLE_RATE)
    except WavFormatError as exc:
        raise ChunkEncodingError(f"chunk WAV is malformed: {exc}") from exc
    if decoded.shape != (channels, expected_samples):
        raise ChunkEncodingError(f"chunk WAV holds {decoded.shape[0]} channel(s) of {decoded.shape[1]} samples, "
                                 f"expected {channels} of {expected_samples}")
