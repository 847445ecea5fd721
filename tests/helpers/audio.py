"""Synthetic speech-like audio and in-memory encodes of it, made at test time.

`speech_like` gives loud voiced stretches (harmonic tones shaped into syllables) separated by clear
pauses of 0.6-1.0 s, so splitting at pauses and lip-sync pipelines have something realistic to chew on
without shipping recordings. `speech_pauses` returns where those pauses are (same arguments, same
answer). `encode_audio` turns samples into WAV/MP3/FLAC/OGG (Opus)/M4A (AAC) bytes with PyAV.
"""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np

PAUSE_MIN_SEC = 0.6
PAUSE_MAX_SEC = 1.0
# Peak of the voiced stretches: loud speech, well above any silence threshold, never clipping.
VOICE_PEAK = 0.5

# Container and codec for each format name `encode_audio` accepts; Opus only runs at 48 kHz.
_FORMATS: dict[str, tuple[str, str, int | None]] = {
    "wav": ("wav", "pcm_s16le", None),
    "mp3": ("mp3", "libmp3lame", None),
    "flac": ("flac", "flac", None),
    "ogg": ("ogg", "libopus", 48_000),
    "m4a": ("ipod", "aac", None),
}
AUDIO_FORMATS = tuple(_FORMATS)


def speech_pauses(
    duration_sec: float,
    sample_rate: int = 16_000,
    pause_every_sec: float = 4.0,
    seed: int = 0,
) -> list[tuple[int, int]]:
    """Sample ranges [start, end) of the pauses `speech_like` puts in (same arguments, same result).

    A pause starts every `pause_every_sec` (±20 % jitter) and lasts 0.6-1.0 s; none touches either
    end of the recording, so it always starts and ends with voice.
    """
    rng = np.random.default_rng(seed)
    total = round(duration_sec * sample_rate)
    pauses: list[tuple[int, int]] = []
    position = 0.0
    while True:
        position += pause_every_sec * rng.uniform(0.8, 1.2)
        length = rng.uniform(PAUSE_MIN_SEC, PAUSE_MAX_SEC)
        start, end = int(position * sample_rate), int((position + length) * sample_rate)
        if end + sample_rate // 2 > total:
            return pauses
        pauses.append((start, end))
        position += length


def speech_like(
    duration_sec: float,
    sample_rate: int = 16_000,
    pause_every_sec: float = 4.0,
    seed: int = 0,
) -> np.ndarray:
    """Mono float32 speech-like signal: syllables of a gliding harmonic voice, with pauses.

    Voiced stretches are 4-6 syllables a second, each a raised-cosine envelope over a voice of
    100-220 Hz with 8 harmonics; the pauses (see `speech_pauses`) are exact digital silence.
    """
    rng = np.random.default_rng(seed + 1_000_003)
    total = round(duration_sec * sample_rate)
    t = np.arange(total) / sample_rate
    # The pitch glides slowly like intonation does; integrating it gives a click-free phase.
    f0 = rng.uniform(100.0, 220.0) * (1.0 + 0.12 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6.3)))
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 9))
    voice = voice / np.max(np.abs(voice))

    envelope = np.zeros(total)
    start = 0
    while start < total:
        length = int(rng.uniform(0.16, 0.25) * sample_rate)
        stop = min(start + length, total)
        envelope[start:stop] = rng.uniform(0.5, 1.0) * np.sin(np.pi * np.arange(stop - start) / length) ** 2
        start = stop
    # Syllables overlap a little in real speech, so the level dips between them but never drops out.
    envelope = np.maximum(envelope, 0.15)
    for pause_start, pause_end in speech_pauses(duration_sec, sample_rate, pause_every_sec, seed):
        envelope[pause_start:pause_end] = 0.0
    return (VOICE_PEAK * voice * envelope).astype(np.float32)


def encode_audio(samples: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    """Encode mono float samples as `fmt` (one of AUDIO_FORMATS) and return the file's bytes."""
    container_format, codec, codec_rate = _FORMATS[fmt]
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container_format) as container:
        stream = container.add_stream(codec, rate=codec_rate or sample_rate, layout="mono")
        # Writes the header now, so a recording of zero samples is still a valid (empty) file.
        container.start_encoding()
        # 1-second frames; the encoder re-buffers to its own frame size and sample format.
        step = sample_rate
        for offset in range(0, len(samples), step):
            block = np.ascontiguousarray(samples[offset : offset + step], dtype=np.float32)
            frame = av.AudioFrame.from_ndarray(block.reshape(1, -1), format="flt", layout="mono")
            frame.sample_rate = sample_rate
            frame.pts = offset
            frame.time_base = Fraction(1, sample_rate)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()
