"""Parts and recordings for the stitcher tests, made at test time.

Each frame shows its global frame number in binary as a row of black/white bars, so decoding the
stitched output tells exactly which frame landed where.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from itk_common.constants import SAMPLE_RATE, SAMPLES_PER_FRAME, frames_for_samples
from itk_common.video import Mp4Writer, read_frames
from tests.helpers.audio import encode_audio, speech_like

BARS = 12
WIDTH = 96
HEIGHT = 64


def numbered_frame(number: int, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    frame = np.zeros((height, width, 3), np.uint8)
    for bit in range(BARS):
        if number >> bit & 1:
            frame[:, bit * width // BARS : (bit + 1) * width // BARS] = 255
    return frame


def frame_number(frame: np.ndarray) -> int:
    height, width = frame.shape[:2]
    row = frame[height // 2]
    centres = [(2 * bit + 1) * width // (2 * BARS) for bit in range(BARS)]
    return sum(1 << bit for bit, x in enumerate(centres) if row[x].mean() > 128)


def frame_numbers(path: Path) -> list[int]:
    return [frame_number(frame) for frame in read_frames(path)]


def numbered_frames(first: int, count: int, width: int, height: int) -> Iterator[np.ndarray]:
    for number in range(first, first + count):
        yield numbered_frame(number, width, height)


def write_h264_part(path: Path, first: int, count: int, width: int = WIDTH, height: int = HEIGHT,
                    crf: int = 20) -> Path:
    """A part as the generators write it (itk_common's H.264 writer)."""
    with Mp4Writer(path, width, height, crf=crf) as writer:
        for frame in numbered_frames(first, count, width, height):
            writer.write(frame)
    return path


def write_mpeg4_part(path: Path, first: int, count: int, width: int, height: int, fps: int = 25) -> Path:
    """A part from some other encoder: MPEG-4 Part 2, so it cannot share an H.264 track."""
    return write_mpeg4(path, numbered_frames(first, count, width, height), width, height, fps)


def write_mpeg4(path: Path, frames: Iterable[np.ndarray], width: int, height: int, fps: int = 25) -> Path:
    """RGB frames as MPEG-4 Part 2 in MP4 (an encoder other than the generators')."""
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"qscale": "2"}
        for pts, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def remux_with_offset(source: Path, target: Path, offset_frames: int, fps: int = 25) -> Path:
    """The same packets, presented `offset_frames` later: a part whose timeline does not start at 0."""
    with av.open(str(source)) as inp, av.open(str(target), mode="w", format="mp4") as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        shift = round(offset_frames / (inp.streams.video[0].time_base * fps))
        for packet in inp.demux(inp.streams.video[0]):
            if packet.size:
                packet.pts += shift
                packet.dts += shift
                packet.stream = stream
                out.mux(packet)
    return target


def planned_samples(total_frames: int) -> int:
    """A 16 kHz sample count whose ceil(samples / 640) is `total_frames`, ending mid-frame."""
    return total_frames * SAMPLES_PER_FRAME - SAMPLES_PER_FRAME // 3


def write_recording(path: Path, total_frames: int, fmt: str = "wav", sample_rate: int = SAMPLE_RATE) -> Path:
    """A speech-like recording whose length matches `total_frames` the way the splitter plans it."""
    duration = planned_samples(total_frames) / SAMPLE_RATE
    path.write_bytes(encode_audio(speech_like(duration, sample_rate), sample_rate, fmt))
    return path


def planned_frames(recording: Path) -> int:
    """Frames the splitter plans for a recording: it decodes it fully (encoder padding included for
    some formats) and resamples to 16 kHz; the stitcher must accept exactly that plan."""
    with av.open(str(recording)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        rate = stream.codec_context.sample_rate
    return frames_for_samples(round(samples * SAMPLE_RATE / rate))


def write_parts(directory: Path, frame_counts: list[int]) -> dict[int, Path]:
    """H.264 parts numbered continuously across chunks: chunk i holds frames after chunk i-1's."""
    parts = {}
    first = 0
    for index, count in enumerate(frame_counts):
        parts[index] = write_h264_part(directory / f"part-{index}.mp4", first, count)
        first += count
    return parts


def moov_before_mdat(path: Path) -> bool:
    """Walk the top-level MP4 boxes and say whether 'moov' comes before 'mdat' (fast start)."""
    order = []
    with path.open("rb") as handle:
        while header := handle.read(8):
            size = int.from_bytes(header[:4], "big")
            kind = header[4:8].decode("latin-1")
            if size == 1:
                size = int.from_bytes(handle.read(8), "big")
                handle.seek(size - 16, 1)
            else:
                handle.seek(size - 8, 1)
            order.append(kind)
            if size == 0:
                break
    return "moov" in order and "mdat" in order and order.index("moov") < order.index("mdat")
