"""16 kHz mono pcm_s16le WAV in and out of numpy, with the standard library only.

Chunks travel between services in exactly this format, so no service needs a codec library
just to read them.
"""

from __future__ import annotations

import io
import wave

import numpy as np

from .constants import SAMPLE_RATE


class WavFormatError(ValueError):
    """The bytes are not the WAV format the services exchange."""


def encode_wav(samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """Float samples in [-1, 1] (or int16) -> mono pcm_s16le WAV bytes."""
    if samples.dtype != np.int16:
        clipped = np.clip(np.asarray(samples, dtype=np.float64), -1.0, 1.0)
        samples = np.round(clipped * 32767.0).astype(np.int16)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(sample_rate)
        writer.writeframes(samples.astype("<i2").tobytes())
    return buffer.getvalue()


def decode_wav_int16(data: bytes, expected_rate: int | None = SAMPLE_RATE) -> np.ndarray:
    """Mono pcm_s16le WAV bytes -> int16 samples; anything else is a WavFormatError."""
    try:
        with wave.open(io.BytesIO(data), "rb") as reader:
            channels, width, rate = reader.getnchannels(), reader.getsampwidth(), reader.getframerate()
            frames = reader.readframes(reader.getnframes())
    except (wave.Error, EOFError) as exc:
        raise WavFormatError(f"not a PCM WAV file: {exc}") from exc
    if channels != 1 or width != 2:
        raise WavFormatError(f"expected mono 16-bit PCM, got {channels} channel(s) of {8 * width} bits")
    if expected_rate is not None and rate != expected_rate:
        raise WavFormatError(f"expected {expected_rate} Hz, got {rate} Hz")
    return np.frombuffer(frames, dtype="<i2").astype(np.int16)


def decode_wav(data: bytes, expected_rate: int | None = SAMPLE_RATE) -> np.ndarray:
    """Mono pcm_s16le WAV bytes -> float32 samples in [-1, 1)."""
    return decode_wav_int16(data, expected_rate).astype(np.float32) / 32768.0
