"""Media work for live playback: the recording as one AAC track, and one fMP4 segment per part.

Every segment is muxed by FFmpeg's MP4 muxer (through PyAV) as a fragmented MP4 whose
timestamps continue the previous segment's: the part's H.264 packets are copied with their
times shifted by the frames before it, and the audio packets are the slice of one AAC encode of
the whole recording that falls in the part's span. Encoding the audio once, instead of once per
segment, is what keeps it gapless and in sync across segments (no encoder priming per segment).
Without edit lists a fragment's decode time (`tfdt`) is its first packet's decode time, which
B-frames put before its first presentation time; `tfdt` cannot be negative, so the whole
timeline (video and audio alike) starts TIMELINE_START in. Players take a stream's first time as
its start; the page's player shifts it back to 0.

The muxer writes `ftyp moov` (the initialization section, identical for parts encoded alike)
and then `moof mdat` pairs; the two are split apart so the playlist can point at one shared
initialization section (EXT-X-MAP) and the media bytes of each segment.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from itk_common.aac import FALLBACK_SAMPLE_RATE, aac_packets, add_aac_stream
from itk_common.constants import FPS
from itk_common.video import write_mp4

# Room for up to 10 frames of B-frame reordering delay before the first frame (x264 uses 2).
TIMELINE_START = Fraction(10, FPS)
FRAGMENT_OPTIONS = {
    "movflags": "empty_moov+default_base_moof+frag_keyframe+frag_discont+negative_cts_offsets",
    "use_editlist": "0",
}


class SegmentError(Exception):
    """A part or the recording could not be turned into a segment."""


@dataclass(frozen=True)
class Segment:
    """One part as fMP4: its initialization section and its media section."""

    init: bytes
    media: bytes


def split_boxes(data: bytes) -> list[tuple[str, bytes]]:
    """The top-level ISO BMFF boxes of `data` as (type, bytes)."""
    boxes, offset = [], 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset:offset + 8])
        if size == 1:
            size = struct.unpack(">Q", data[offset + 8:offset + 16])[0]
        elif size == 0:
            size = len(data) - offset
        if size < 8:
            raise SegmentError(f"malformed MP4 box at byte {offset}")
        boxes.append((kind.decode("latin-1"), data[offset:offset + size]))
        offset += size
    return boxes


def encode_recording(source: Path, destination: Path) -> None:
    """Decode the uploaded recording and encode it once as AAC into an .m4a file.

    Frames go to the encoder with their sample positions, so its packets keep the encoder's own
    times: the priming packet reads back at a negative time (not at 0 behind an edit list), and
    every later packet at the time of the samples it decodes to.
    """
    tmp = destination.with_name(destination.name + ".tmp")
    try:
        with av.open(str(source)) as container:
            if not container.streams.audio:
                raise SegmentError("the recording has no audio stream")
            codec = container.streams.audio[0].codec_context
            rate, channels = codec.sample_rate or FALLBACK_SAMPLE_RATE, codec.channels or 1
        with av.open(str(tmp), "w", format="mp4") as output:
            stream = add_aac_stream(output, rate, channels)
            for packet in aac_packets(source, stream):
                output.mux(packet)
    except av.FFmpegError as exc:
        tmp.unlink(missing_ok=True)
        raise SegmentError(f"the recording cannot be decoded: {exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(destination)


def mux_segment(part: Path, audio: Path, start_frame: int, frame_count: int, last: bool, output: Path) -> Segment:
    """Part `part` (video only, starting at frame 0) as the segment starting at `start_frame`.

    Audio packets whose start lies in [start, end) of the part's span go with it; the last
    segment also takes whatever audio is left after its end, so no packet is lost or repeated.
    """
    start = TIMELINE_START + Fraction(start_frame, FPS)
    end = start + Fraction(frame_count, FPS)
    tmp = output.with_name(output.name + ".tmp")
    try:
        with av.open(str(part)) as video_in, av.open(str(audio)) as audio_in:
            if not video_in.streams.video:
                raise SegmentError(f"{part.name} has no video stream")
            video = video_in.streams.video[0]
            sound = audio_in.streams.audio[0]
            with av.open(str(tmp), "w", format="mp4", options=FRAGMENT_OPTIONS) as out:
                out_video = out.add_stream_from_template(video)
                out_audio = out.add_stream_from_template(sound)
                packets = [p for p in video_in.demux(video) if p.dts is not None and p.pts is not None]
                if not packets:
                    raise SegmentError(f"{part.name} has no frames")
                # The muxer presents a fragment's first packet at its decode time; shifting by the
                # reorder delay puts the first frame's presentation exactly at `start`.
                delay = packets[0].pts - packets[0].dts
                shift = int(start / video.time_base) - delay
                if packets[0].dts + shift < 0:
                    raise SegmentError(f"{part.name}: reorder delay too long for the timeline start")
                for packet in packets:
                    packet.pts += shift
                    packet.dts += shift
                    packet.stream = out_video
                    out.mux(packet)
                _copy_audio(audio_in, sound, out_audio, out, start, None if last else end)
        data = tmp.read_bytes()
    except av.FFmpegError as exc:
        raise SegmentError(f"part {part.name} cannot be segmented: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    init, media = b"", b""
    for kind, box in split_boxes(data):
        if kind in ("ftyp", "moov"):
            init += box
        elif kind in ("moof", "mdat"):
            media += box
    if not init or not media:
        raise SegmentError(f"part {part.name} gave no fragments")
    return Segment(init, media)


def cut_part(part: Path, first_frame: int, output: Path) -> int:
    """The frames of `part` from `first_frame` on, re-encoded as an MP4 at `output`; their count.

    For the rare part whose first clips reached the live stream and whose rest did not (the
    generator that streamed them failed and another rendered the part again).
    """
    try:
        with av.open(str(part)) as container:
            stream = container.streams.video[0]
            frames = [frame.to_ndarray(format="rgb24") for index, frame in enumerate(container.decode(stream))
                      if index >= first_frame]
    except av.FFmpegError as exc:
        raise SegmentError(f"part {part.name} cannot be read: {exc}") from exc
    if not frames:
        raise SegmentError(f"part {part.name} has no frames after {first_frame}")
    height, width = frames[0].shape[:2]
    return write_mp4(output, frames, width, height)


def _copy_audio(container: av.container.InputContainer, stream: av.audio.stream.AudioStream,
                out_stream: av.audio.stream.AudioStream, out: av.container.OutputContainer,
                start: Fraction, end: Fraction | None) -> None:
    first = int(start / stream.time_base)
    last = None if end is None else int(end / stream.time_base)
    offset = int(TIMELINE_START / stream.time_base)
    # Seek to a packet at or before the span, then skip to it: no need to read from the top.
    container.seek(max(0, first - offset - 4096), stream=stream, any_frame=True, backward=True)
    for packet in container.demux(stream):
        if packet.pts is None or packet.size == 0:
            continue
        # The encoder's priming packet is dropped: the segments carry no edit lists, and its
        # samples are the encoder's delay, not the recording.
        if packet.pts < 0:
            continue
        packet.pts += offset
        packet.dts = packet.pts
        if packet.pts < first:
            continue
        if last is not None and packet.pts >= last:
            break
        packet.stream = out_stream
        out.mux(packet)
