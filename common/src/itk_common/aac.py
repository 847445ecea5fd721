"""Encoding a recording as AAC, the one way the stitcher's final MP4 and the gateway's live stream do it.

Frames go to the encoder with their sample positions counted from zero, so its packets keep the
encoder's own times whatever the source's start time was.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
from av.audio.stream import AudioStream
from av.container import OutputContainer

AAC_RATES = frozenset(av.Codec("aac", "w").audio_rates or ())
# Used when the recording's own rate is not one AAC can carry.
FALLBACK_SAMPLE_RATE = 48_000
# 3 bits per sample (48 kb/s for 16 kHz mono) keeps speech clean; FFmpeg's AAC encoder gets slower
# the more bits it is given, and it is the costliest step of a stream-copy stitch.
BITS_PER_SAMPLE = 3
MAX_BIT_RATE_PER_CHANNEL = 64_000


def add_aac_stream(container: OutputContainer, sample_rate: int, channels: int) -> AudioStream:
    """An AAC stream at the recording's own rate where AAC allows it (resampling up adds nothing),
    mono or stereo."""
    channels = 1 if channels == 1 else 2
    rate = sample_rate if sample_rate in AAC_RATES else FALLBACK_SAMPLE_RATE
    stream = container.add_stream("aac", rate=rate, layout="mono" if channels == 1 else "stereo")
    stream.bit_rate = channels * min(MAX_BIT_RATE_PER_CHANNEL, BITS_PER_SAMPLE * rate)
    stream.time_base = Fraction(1, rate)
    return stream


def aac_packets(path: Path, stream: AudioStream) -> Iterator[av.Packet]:
    """Decode `path`, resample to the AAC stream's format and yield its encoded packets in order."""
    codec = stream.codec_context
    resampler = av.AudioResampler(format=codec.format, layout=codec.layout, rate=codec.sample_rate,
                                  frame_size=codec.frame_size)
    time_base = Fraction(1, codec.sample_rate)
    written = 0

    def encode(frames: list[av.AudioFrame]) -> Iterator[av.Packet]:
        nonlocal written
        for frame in frames:
            frame.pts = written
            frame.time_base = time_base
            written += frame.samples
            yield from stream.encode(frame)

    with av.open(str(path)) as source:
        for frame in source.decode(source.streams.audio[0]):
            frame.pts = None
            yield from encode(resampler.resample(frame))
    yield from encode(resampler.resample(None))
    yield from stream.encode(None)
