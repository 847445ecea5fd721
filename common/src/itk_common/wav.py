"""16 kHz pcm_s16le WAV in and out of numpy, with the standard library only.

Chunks travel between services in exactly this format, so no service needs a codec library
just to read them. A one-person chunk is mono; a multi-person chunk has one channel per person
(interleaved, as WAV stores channels), all of the same length.
"""

from __future__ import annotations

import io
import wave

import numpy as np

from .constants import SAMPLE_RATE


class WavFormatError(ValueError):
    """The bytes are not the WAV format the services exchange."""


def _to_int16(samples: np.ndarray) -> np.ndarray:
    if samples.dtype == np.int16:
        return samples
    clipped = np.clip(np.asarray(samples, dtype=np.float64), -1.0, 1.0)
    return np.round(clipped * 32767.0).astype(np.int16)


def encode_wav(samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """Float samples in [-1, 1] (or int16) -> pcm_s16le WAV bytes.

    A 1-D array is a mono WAV; a 2-D array [channels, samples] one channel per row.
    """
    tracks = _to_int16(np.asarray(samples))
    if tracks.ndim == 1:
        tracks = tracks[None, :]
    if tracks.ndim != 2 or tracks.shape[0] < 1:
        raise ValueError(f"samples must be [samples] or [channels, samples], got shape {tracks.shape}")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(tracks.shape[0])
        writer.setsampwidth(2)
        writer.setframerate(sample_rate)
        writer.writeframes(np.ascontiguousarray(tracks.T).astype("<i2").tobytes())
    return buffer.getvalue()


def decode_wav_channels_int16(data: bytes, expected_rate: int | None = SAMPLE_RATE) -> np.ndarray:
    """pcm_s16le WAV bytes with any number of channels -> int16 [channels, samples]."""
    try:
        with wave.open(io.BytesIO(data), "rb") as reader:
            channels, width, rate = reader.getnchannels(), reader.getsampwidth(), reader.getframerate()
            frames = reader.readframes(reader.getnframes())
    except (wave.Error, EOFError) as exc:
        raise WavFormatError(f"not a PCM WAV file: {exc}") from exc
    if width != 2:
        raise WavFormatError(f"expected 16-bit PCM, got {8 * width} bits")
    if expected_rate is not None and rate != expected_rate:
        raise WavFormatError(f"expected {expected_rate} Hz, got {rate} Hz")
    interleaved = np.frombuffer(frames, dtype="<i2").astype(np.int16)
    usable = len(interleaved) - len(interleaved) % channels
    return np.ascontiguousarray(interleaved[:usable].reshape(-1, channels).T)


def decode_wav_channels(data: bytes, expected_rate: int | None = SAMPLE_RATE) -> np.ndarray:
    """pcm_s16le WAV bytes with any number of channels -> float32 [channels, samples] in [-1, 1)."""
    return decode_wav_channels_int16(data, expected_rate).astype(np.float32) / 32768.0


def decode_wav_int16(data: bytes, expected_rate: int | None = SAMPLE_RATE) -> np.ndarray:
    """Mono pcm_s16le WAV bytes -> int16 samples; anything else is a WavFormatError."""
    tracks = decode_wav_channels_int16(data, expected_rate)
    if tracks.shape[0] != 1:
        raise WavFormatError(f"expected mono 16-bit PCM, got {tracks.shape[0]} channel(s)")
    return tracks[0]


def decode_wav(data: bytes, expected_rate: int | None = SAMPLE_RATE) -> np.ndarray:
    """Mono pcm_s16le WAV bytes -> float32 samples in [-1, 1)."""
    return decode_wav_int16(data, expected_rate).astype(np.float32) / 32768.0


def mix_tracks(tracks: np.ndarray) -> np.ndarray:
    """The sound of several speakers' tracks [persons, samples] played together: their sum, kept in [-1, 1]."""
    return np.clip(np.asarray(tracks, dtype=np.float32).sum(axis=0), -1.0, 1.0)
