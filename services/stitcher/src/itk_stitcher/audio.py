"""The original recording, decoded with PyAV and encoded once as AAC for the final MP4.

The encode is the costliest step of a stream-copy stitch, and the recording arrives before the
parts do, so the spool encodes it into an intermediate .m4a while the parts are still being
generated; the final mux then only copies its packets.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av

from itk_common.aac import aac_packets, add_aac_stream

from .errors import StitchInputError


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


def encode_audio(source: Path, dest: Path) -> EncodedAudio:
    """Decode `source` once, encode it as AAC into the .m4a `dest`, and measure it on the way."""
    info = measure_audio(source)
    try:
        with av.open(str(dest), mode="w", format="mp4") as output:
            stream = add_aac_stream(output, info.sample_rate, info.channels)
            for packet in aac_packets(source, stream):
                output.mux(packet)
    except av.FFmpegError as exc:
        dest.unlink(missing_ok=True)
        raise StitchInputError(f"the audio cannot be encoded: {exc}") from exc
    return EncodedAudio(path=dest, info=info)
