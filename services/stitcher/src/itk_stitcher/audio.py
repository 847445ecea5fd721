"""The original recording, decoded with PyAV and encoded once as AAC for the final MP4.

The encode is the costliest step of a stream-copy stitch, and the recording arrives before the
parts do, so the spool encodes it into an intermediate .m4a while the parts are still being
generated; the final mux then only copies its packets.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
from av.audio.stream import AudioStream
from av.container import OutputContainer

from .errors import StitchInputError

AAC_RATES = frozenset(av.Codec("aac", "w").audio_rates or ())
# Used when the recording's own rate is not one AAC can carry.
FALLBACK_SAMPLE_RATE = 48_000
# 3 bits per sample (48 kb/s for 16 kHz mono) keeps speech clean; FFmpeg's AAC encoder gets slower
# the more bits it is given, and it is the costliest step of a stream-copy stitch.
BITS_PER_SAMPLE = 3
MAX_BIT_RATE_PER_CHANNEL = 64_000


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    channels: int
    samples: int

    @property
    def duration_sec(self) -> float:
        return self.samples / self.sample_rate


@dataclass(frozen=True)
class EncodedAudio:
    """The recording encoded as AAC in an .m4a file, and what its decode measured."""

    path: Path
    info: AudioInfo


def measure_audio(path: Path) -> AudioInfo:
    """Decode the whole recording once: containers' own durations are estimates for MP3 and friends."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise StitchInputError("the audio file has no audio stream")
            stream = container.streams.audio[0]
            samples = sum(frame.samples for frame in container.decode(stream))
            rate = stream.codec_context.sample_rate
            channels = stream.codec_context.channels
    except av.FFmpegError as exc:
        raise StitchInputError(f"the audio cannot be decoded: {exc}") from exc
    if samples == 0 or not rate:
        raise StitchInputError("the audio holds no samples")
    return AudioInfo(sample_rate=rate, channels=channels, samples=samples)


def add_aac_stream(container: OutputContainer, info: AudioInfo) -> AudioStream:
    """An AAC stream at the recording's own rate where AAC allows it (resampling up adds nothing)."""
    channels = 1 if info.channels == 1 else 2
    rate = info.sample_rate if info.sample_rate in AAC_RATES else FALLBACK_SAMPLE_RATE
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
            # Timestamps count samples from zero, whatever the source's own start time was.
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


def encode_audio(source: Path, dest: Path) -> EncodedAudio:
    """Decode `source` once, encode it as AAC into the .m4a `dest`, and measure it on the way."""
    info = measure_audio(source)
    try:
        with av.open(str(dest), mode="w", format="mp4") as output:
            stream = add_aac_stream(output, info)
            for packet in aac_packets(source, stream):
                output.mux(packet)
    except av.FFmpegError as exc:
        dest.unlink(missing_ok=True)
        raise StitchInputError(f"the audio cannot be encoded: {exc}") from exc
    return EncodedAudio(path=dest, info=info)
