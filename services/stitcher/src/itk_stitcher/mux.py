"""Writing the final MP4 in one pass: the parts' video packets and the encoded audio's packets remuxed."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import av
from av.video.stream import VideoStream

from .audio import EncodedAudio
from .errors import StitchCancelledError
from .join import PreparedPart


def video_packets(parts: list[PreparedPart], stream: VideoStream, fps: int) -> Iterator[av.Packet]:
    """Every part's packets, in order, on one timeline of 1/fps ticks.

    Presentation times move by the frames before each part. Decode times follow one global
    sequence shifted by the largest B-frame delay of any part, so they keep increasing across
    part boundaries even when parts were encoded with different delays.
    """
    time_base = Fraction(1, fps)
    delay = max(part.timing.reorder_delay for part in parts)
    decode_index = 0
    offset = 0
    for part in parts:
        with av.open(str(part.path)) as source:
            source_stream = source.streams.video[0]
            scale, denominator = source_stream.time_base.numerator * fps, source_stream.time_base.denominator
            for packet in source.demux(source_stream):
                if not packet.size or packet.pts is None:
                    continue
                slot = packet.pts * scale // denominator - part.timing.first_pts
                packet.pts = offset + slot
                packet.dts = decode_index - delay
                packet.duration = 1
                packet.time_base = time_base
                packet.stream = stream
                decode_index += 1
                yield packet
        offset += part.frame_count


def decode_time(packet: av.Packet) -> float:
    # Seconds as a float: exact enough to interleave, and far cheaper per packet than a Fraction.
    return packet.dts * float(packet.time_base) if packet.dts is not None else 0.0


def audio_packets(audio: EncodedAudio, stream: av.audio.stream.AudioStream) -> Iterator[av.Packet]:
    with av.open(str(audio.path)) as source:
        for packet in source.demux(source.streams.audio[0]):
            if packet.size and packet.dts is not None:
                packet.stream = stream
                yield packet


def write_output(out: Path, parts: list[PreparedPart], audio: EncodedAudio, fps: int,
                 cancelled: Callable[[], bool]) -> int:
    """Mux video and audio interleaved by decode time, moov first (fast start); return the video frames."""
    with av.open(str(parts[0].path)) as template_source, av.open(str(audio.path)) as audio_source, \
            av.open(str(out), mode="w", format="mp4", options={"movflags": "+faststart"}) as output:
        # The first part's codec parameters (and extradata) describe the whole track.
        video = output.add_stream_from_template(template_source.streams.video[0])
        video.time_base = Fraction(1, fps)
        sound = output.add_stream_from_template(audio_source.streams.audio[0])
        merged = heapq.merge(video_packets(parts, video, fps), audio_packets(audio, sound), key=decode_time)
        frames = 0
        for count, packet in enumerate(merged):
            if count % 256 == 0 and cancelled():
                raise StitchCancelledError
            frames += packet.stream is video
            output.mux(packet)
    return frames
