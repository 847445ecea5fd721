"""Chunks leave as 16 kHz mono pcm_s16le WAV files, each read back and checked before it is sent."""

from __future__ import annotations

import numpy as np

from itk_common.constants import SAMPLE_RATE
from itk_common.wav import WavFormatError, decode_wav_int16, encode_wav

from .plan import ChunkSpan


class ChunkEncodingError(RuntimeError):
    """A chunk's WAV did not come out as specified (a bug here, not a problem with the upload)."""


def encode_chunk(samples: np.ndarray, span: ChunkSpan) -> bytes:
    """The WAV bytes of `span` within `samples` (its audio context included), verified to parse back."""
    wav = encode_wav(samples[span.wav_start : span.wav_end], SAMPLE_RATE)
    check_chunk_wav(wav, span.wav_end - span.wav_start)
    return wav


def check_chunk_wav(wav: bytes, expected_samples: int) -> None:
    """Parse `wav` back: PCM 16-bit, mono, 16 kHz and exactly `expected_samples` samples long."""
    try:
        decoded = decode_wav_int16(wav, expected_rate=SAMPLE_RATE)
    except WavFormatError as exc:
        raise ChunkEncodingError(f"chunk WAV is malformed: {exc}") from exc
    if len(decoded) != expected_samples:
        raise ChunkEncodingError(f"chunk WAV holds {len(decoded)} samples, expected {expected_samples}")
