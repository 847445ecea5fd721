"""Source videos for dubbing: recognising, checking, normalising and cutting them (PyAV).

A dubbing job's reference is a video instead of a portrait. The gateway recognises it by its
bytes, checks it (a decodable video stream, within the duration and pixel limits, not
truncated) and normalises it once into an intermediate MP4: 25 fps (InfiniteTalk's rate; frame
n shows the source as it is displayed at n / 25 s, whatever the source's frame rate, variable
rates included), the rotation metadata applied to the pixels, at most `max_side` pixels on the
long side, a keyframe every second so any span can be cut cheaply. Each chunk then gets the
frames of its own time span, cut from that file (`cut_span`).

When the audio outlasts the video the frames past the end follow `ExtendMode`: `hold` keeps the
last frame (what the InfiniteTalk reference does: its frame reader returns the last frame for any
index past the end), `pingpong` plays the video backward and forward again so the motion never
stops and never jumps.

Needs the `media` extra (`itk-common[media]`).
"""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .constants import FPS
from .video import Mp4Writer, even

# MP4 and MOV ("ftyp" box at byte 4), Matroska and WebM (EBML magic).
_EBML_MAGIC = b"\x1a\x45\xdf\xa3"
_STILL_IMAGE_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis"}
# Intermediate files: near-transparent quality, a keyframe every second for cheap cuts, and the
# fastest x264 preset (three times veryfast's speed for larger files, which only travel in-cluster).
INTERMEDIATE_CRF = 17
INTERMEDIATE_PRESET = "ultrafast"
INTERMEDIATE_GOP = FPS
# A video whose frames end this much before its declared duration is reported as truncated: the
# video stream's own duration is exact; a container's may include a longer sound track.
STREAM_TRUNCATION_TOLERANCE_SEC = 0.25
CONTAINER_TRUNCATION_TOLERANCE_SEC = 1.0


class VideoError(ValueError):
    """The file is not a usable source video; the message says why, for the client."""


class ExtendMode(StrEnum):
    HOLD = "hold"
    PINGPONG = "pingpong"


def looks_like_video(head: bytes) -> bool:
    """Whether the first bytes of a file are those of an MP4/MOV or a Matroska/WebM container
    (HEIF and AVIF still images share MP4's box format, and are told apart by their brand)."""
    if head[4:8] == b"ftyp":
        return head[8:12] not in _STILL_IMAGE_BRANDS
    return head[:4] == _EBML_MAGIC


@dataclass(frozen=True)
class VideoProbe:
    """What the container says, before decoding: displayed size (rotation applied)."""

    width: int
    height: int
    rotation: int  # degrees counterclockwise, as the display matrix says (0, 90, 180, 270)
    duration_sec: float
    codec: str
    has_audio: bool
    duration_is_exact: bool = False  # from the video stream itself, not the whole container


@dataclass(frozen=True)
class NormalizedVideo:
    path: Path
    frame_count: int  # 25 fps frames
    width: int
    height: int
    has_audio: bool


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _quarter_turns(rotation: float | int | None) -> int:
    """Counterclockwise quarter turns that display a frame upright (np.rot90's k)."""
    return round((rotation or 0) / 90) % 4


def probe(path: Path) -> VideoProbe:
    """Read the container's header; VideoError when it is no video we can decode."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError("the file has no video stream")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            if width <= 0 or height <= 0:
                raise VideoError("the video stream has no picture size")
            rotation = 0
            for frame in container.decode(stream):
                rotation = int(frame.rotation or 0)
                break
            else:
                raise VideoError("the video has no decodable frames")
            duration, exact = 0.0, False
            if stream.duration is not None and stream.time_base is not None:
                duration, exact = float(stream.duration * stream.time_base), True
            elif container.duration is not None:
                duration = container.duration / av.time_base
            turns = _quarter_turns(rotation)
            if turns % 2:
                width, height = height, width
            return VideoProbe(width=width, height=height, rotation=turns * 90, duration_sec=duration,
                              codec=stream.codec_context.name, has_audio=bool(container.streams.audio),
                              duration_is_exact=exact)
    except VideoError:
        raise
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
        raise VideoError(f"not a readable video: corrupt or truncated ({_reason(exc)})") from exc


def target_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The normalised size: never enlarged, long side at most `max_side`, even numbers."""
    scale = min(1.0, max_side / max(width, height))
    return even(round(width * scale)), even(round(height * scale))


def normalize(source: Path, output: Path, *, max_side: int, max_duration_sec: float,
              threads: int = 0) -> NormalizedVideo:
    """Decode `source` once into a 25 fps, upright, size-capped H.264 file at `output`.

    Raises VideoError (nothing left at `output`) for undecodable, truncated or too long video.
    """
    info = probe(source)
    if info.duration_sec > max_duration_sec:
        raise VideoError(f"the video lasts {info.duration_sec:.1f} s, more than the {max_duration_sec:g} s allowed")
    width, height = target_size(info.width, info.height, max_side)
    written = 0
    try:
        with av.open(str(source)) as container, Mp4Writer(
            output, width, height, crf=INTERMEDIATE_CRF, preset=INTERMEDIATE_PRESET, gop=INTERMEDIATE_GOP,
        ) as writer:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            stream.thread_count = threads
            upright = _Upright(width, height)
            previous: av.VideoFrame | None = None
            previous_time = 0.0
            start: float | None = None
            for frame in container.decode(stream):
                if frame.time is None:
                    continue
                start = frame.time if start is None else start
                shown = frame.time - start
                if shown > max_duration_sec + 1:
                    raise VideoError(f"the video lasts more than the {max_duration_sec:g} s allowed")
                if previous is not None:
                    # Output frames up to this frame's display time show the previous frame.
                    written = _emit_until(writer, previous, written, shown)
                previous, previous_time = upright(frame), shown
            if previous is None:
                raise VideoError("the video has no decodable frames")
            # The last frame is shown for one frame interval of the source.
            rate = stream.average_rate or stream.guessed_rate or Fraction(FPS)
            end = previous_time + 1 / float(rate)
            written = _emit_until(writer, previous, written, end, at_least_one=True)
    except VideoError:
        output.unlink(missing_ok=True)
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        output.unlink(missing_ok=True)
        raise VideoError(f"the video is corrupt or truncated: decoding failed after {written / FPS:.1f} s "
                         f"({_reason(exc)})") from exc
    decoded_sec = written / FPS
    tolerance = STREAM_TRUNCATION_TOLERANCE_SEC if info.duration_is_exact else CONTAINER_TRUNCATION_TOLERANCE_SEC
    if info.duration_sec and decoded_sec < info.duration_sec - tolerance:
        output.unlink(missing_ok=True)
        raise VideoError(f"the video is truncated: it declares {info.duration_sec:.1f} s "
                         f"but only {decoded_sec:.1f} s of frames decode")
    return NormalizedVideo(output, written, width, height, info.has_audio)


class _Upright:
    """Turns decoded frames upright and scales them to the normalised size, in FFmpeg's filter
    graph (transpose / flips, area scaling, yuv420p), rebuilt if the stream's frames change shape."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self._key: tuple[object, ...] | None = None
        self._graph: av.filter.Graph | None = None

    def _build(self, frame: av.VideoFrame) -> av.filter.Graph:
        graph = av.filter.Graph()
        chain = [graph.add_buffer(width=frame.width, height=frame.height, format=frame.format,
                                  time_base=frame.time_base or Fraction(1, FPS))]
        turns = _quarter_turns(frame.rotation)
        turn_filters = {1: [("transpose", "cclock")], 2: [("hflip", ""), ("vflip", "")], 3: [("transpose", "clock")]}
        for name, args in [*turn_filters.get(turns, []), ("scale", f"{self.width}:{self.height}:flags=area"),
                           ("format", "yuv420p")]:
            chain.append(graph.add(name, args) if args else graph.add(name))
        chain.append(graph.add("buffersink"))
        for upstream, downstream in itertools.pairwise(chain):
            upstream.link_to(downstream)
        graph.configure()
        return graph

    def __call__(self, frame: av.VideoFrame) -> av.VideoFrame:
        key = (frame.width, frame.height, frame.format.name, _quarter_turns(frame.rotation))
        if self._graph is None or key != self._key:
            self._graph, self._key = self._build(frame), key
        self._graph.push(frame)
        return self._graph.pull()


def _emit_until(writer: Mp4Writer, frame: av.VideoFrame, written: int, until_sec: float,
                at_least_one: bool = False) -> int:
    """Write `frame` for every 25 fps frame whose time n / 25 falls before `until_sec`."""
    # Half a millisecond of slack absorbs time-base rounding (1001/30000 and friends).
    target = math.ceil(until_sec * FPS - 0.0125)
    if at_least_one:
        target = max(target, 1)
    while written < target:
        writer.write_frame(frame)
        written += 1
    return written


def copy_audio_track(source: Path, output: Path) -> bool:
    """Copy the first audio stream of `source` into a Matroska audio file (no re-encoding).

    Returns False when there is no audio stream. The splitter and stitcher decode it like any
    uploaded recording.
    """
    with av.open(str(source)) as container:
        if not container.streams.audio:
            return False
        stream = container.streams.audio[0]
        try:
            with av.open(str(output), mode="w", format="matroska") as out:
                target = out.add_stream_from_template(stream)
                for packet in container.demux(stream):
                    if packet.dts is None:
                        continue
                    packet.stream = target
                    out.mux(packet)
        except BaseException:
            output.unlink(missing_ok=True)
            raise
    return True


def source_index(frame: int, source_frames: int, mode: ExtendMode) -> int:
    """The source frame shown at job frame `frame` (the video extended past its end by `mode`)."""
    if frame < source_frames:
        return frame
    if mode is ExtendMode.HOLD or source_frames == 1:
        return source_frames - 1
    period = 2 * (source_frames - 1)
    phase = frame % period
    return phase if phase < source_frames else period - phase


def _runs(indices: Sequence[int]) -> Iterator[tuple[int, int, bool]]:
    """Split indices into (start, end) runs that only move forward (or stay) or only move back."""
    start = 0
    while start < len(indices):
        end = start + 1
        backward = end < len(indices) and indices[end] < indices[start]
        while end < len(indices) and (
            (indices[end] == indices[end - 1] - 1) if backward else (indices[end] >= indices[end - 1])
        ):
            end += 1
        yield start, end, backward
        start = end


class FrameReader:
    """Frames of a normalised (25 fps, keyframe every second) file by index, in any order.

    Forward runs decode sequentially; backward runs (ping-pong) decode one keyframe interval at
    a time and play it reversed, so memory stays at one second of frames.
    """

    def __init__(self, path: Path) -> None:
        self.container = av.open(str(path))
        self.stream = self.container.streams.video[0]

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _decode_from(self, first: int) -> Iterator[tuple[int, av.VideoFrame]]:
        assert self.stream.time_base is not None
        self.container.seek(int(first / FPS / self.stream.time_base), stream=self.stream, backward=True)
        for frame in self.container.decode(self.stream):
            index = round(frame.time * FPS) if frame.time is not None else -1
            if index >= first:
                yield index, frame

    def _range(self, first: int, last: int) -> list[av.VideoFrame]:
        """Frames first..last inclusive (the file's last frame repeats if it has fewer)."""
        frames: list[av.VideoFrame] = []
        for index, frame in self._decode_from(first):
            frames.append(frame)
            if index >= last:
                break
        if not frames:
            raise VideoError(f"source frame {first} is missing")
        while len(frames) < last - first + 1:
            frames.append(frames[-1])
        return frames

    def frames(self, indices: Sequence[int]) -> Iterator[av.VideoFrame]:
        for start, end, backward in _runs(indices):
            run = indices[start:end]
            if backward:
                top = run[0]
                while top >= run[-1]:
                    bottom = max(run[-1], top - INTERMEDIATE_GOP + 1)
                    yield from reversed(self._range(bottom, top))
                    top = bottom - 1
                continue
            decoded = self._decode_from(run[0])
            current_index, current = next(decoded, (None, None))
            if current is None:
                raise VideoError(f"source frame {run[0]} is missing")
            for wanted in run:
                while current_index is not None and current_index < wanted:
                    following = next(decoded, None)
                    if following is None:
                        break  # past the file's end: keep its last frame
                    current_index, current = following
                yield current


def cut_span(normalized: Path, source_frames: int, first_frame: int, frame_count: int, mode: ExtendMode,
             output: Path, poster: Path | None = None) -> None:
    """Write the source frames of job frames [first_frame, first_frame + frame_count) as a 25 fps
    H.264 MP4; `poster` gets the first of them as a PNG (the span's reference image)."""
    indices = [source_index(first_frame + n, source_frames, mode) for n in range(frame_count)]
    with FrameReader(normalized) as reader:
        width, height = reader.stream.codec_context.width, reader.stream.codec_context.height
        with Mp4Writer(output, width, height, crf=INTERMEDIATE_CRF, preset=INTERMEDIATE_PRESET,
                       gop=INTERMEDIATE_GOP) as writer:
            for n, frame in enumerate(reader.frames(indices)):
                if n == 0 and poster is not None:
                    write_png(poster, frame.to_ndarray(format="rgb24"))
                writer.write_frame(frame)
    if writer.frames_written != frame_count:
        output.unlink(missing_ok=True)
        raise VideoError(f"cut {writer.frames_written} source frames, expected {frame_count}")


def write_png(path: Path, rgb: np.ndarray) -> None:
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    with av.open(str(path), mode="w", format="image2", options={"update": "1"}) as container:
        stream = container.add_stream("png", rate=1)
        stream.width, stream.height, stream.pix_fmt = frame.width, frame.height, "rgb24"
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


class SourceFrames:
    """A chunk's source video (bytes, as cut by `cut_span`), frame by frame, front to back."""

    def __init__(self, data: bytes) -> None:
        try:
            self.container = av.open(io.BytesIO(data))
            if not self.container.streams.video:
                raise VideoError("the source video has no video stream")
        except (av.FFmpegError, ValueError) as exc:
            raise VideoError(f"the source video cannot be read ({_reason(exc)})") from exc
        self.stream = self.container.streams.video[0]
        self._frames = self.container.decode(self.stream)
        self._index = -1
        self._current: np.ndarray | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.stream.codec_context.width, self.stream.codec_context.height

    def frame(self, index: int) -> np.ndarray:
        """RGB frame `index` (indices must not go back); past the end, the last frame."""
        if index < self._index:
            raise ValueError(f"source frames are read front to back: {index} after {self._index}")
        while self._index < index:
            try:
                decoded = next(self._frames)
            except StopIteration:
                break
            except av.FFmpegError as exc:
                raise VideoError(f"the source video is corrupt ({_reason(exc)})") from exc
            self._current = decoded.to_ndarray(format="rgb24")
            self._index += 1
        if self._current is None:
            raise VideoError("the source video has no frames")
        return self._current

    def close(self) -> None:
        self.container.close()
