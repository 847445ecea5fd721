"""Any common audio file -> 16 kHz mono float32 samples, with PyAV (FFmpeg's demuxers and decoders)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np

from itk_common.constants import SAMPLE_RATE

from .errors import AudioDecodeError, EmptyAudioError

AudioSource = bytes | BinaryIO | Path


def decode_audio(source: AudioSource, *, threads: int = 1, channels: int = 0) -> np.ndarray:
    """Decode the first audio stream of `source` and resample it to 16 kHz mono float32.

    `source` is the file's bytes, an open binary file (e.g. a spooled temporary file) or a path.
    Raises AudioDecodeError when nothing decodable is there, EmptyAudioError when it holds no samples.
    `channels` >= 2 keeps the recording's channels apart instead (one speaker each): the result is
    then float32 [channels, samples], and a recording with another channel count is refused.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        source = io.BytesIO(source)
    try:
        with av.open(source, mode="r") as container:
            if not container.streams.audio:
                raise AudioDecodeError("audio: could not decode the upload: it has no audio stream")
            stream = container.streams.audio[0]
            stream.thread_count = threads
            if channels >= 2 and stream.codec_context.channels != channels:
                raise AudioDecodeError(
                    f"audio: a recording with one speaker per channel must have {channels} channels, "
                    f"this one has {stream.codec_context.channels}")
            samples = _decode_stream(container, stream, channels)
    except AudioDecodeError:
        raise
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        # FFmpeg's own words ("Invalid data found when processing input") are what a client needs.
        raise AudioDecodeError(f"audio: could not decode the upload: {_reason(exc)}") from exc
    if samples.shape[-1] == 0:
        raise EmptyAudioError("audio: recording is empty (it decodes to zero samples)")
    if not np.isfinite(samples).all():
        # A float WAV can carry them; loudness normalisation and AAC encoding would turn the whole
        # recording into noise or fail at the stitch, after every chunk was generated.
        bad = int(np.count_nonzero(~np.isfinite(samples)))
        raise AudioDecodeError(f"audio: the recording has {bad} NaN or infinite sample(s)")
    return samples


def _decode_stream(container: av.container.InputContainer, stream: av.AudioStream, channels: int = 0
                   ) -> np.ndarray:
    # swresample does the downmix and the rate conversion in one pass; it buffers a few samples for its
    # filter, so the final resample(None) flushes them. Output frames of 10 s instead of one per input
    # frame halve the decode time of a long recording (the per-frame Python overhead dominated it); the
    # samples are the same.
    # Planar float keeps channels apart ([channels, samples]); mono is one such row.
    layout = stream.codec_context.layout.name if channels >= 2 else "mono"
    resampler = av.AudioResampler(format="fltp", layout=layout, rate=SAMPLE_RATE, frame_size=10 * SAMPLE_RATE)
    pieces: list[np.ndarray] = []
    for frame in container.decode(stream):
        for converted in resampler.resample(frame):
            pieces.append(converted.to_ndarray())
    for converted in resampler.resample(None):
        pieces.append(converted.to_ndarray())
    rows = max(1, channels)
    if not pieces:
        decoded = np.zeros((rows, 0), dtype=np.float32)
    else:
        decoded = np.concatenate(pieces, axis=1).astype(np.float32, copy=False)
    return decoded if channels >= 2 else decoded[0]


def _reason(exc: Exception) -> str:
    if isinstance(exc, av.FFmpegError) and exc.strerror:
        return str(exc.strerror)
    return str(exc) or type(exc).__name__
