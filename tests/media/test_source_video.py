"""itk_common.source_video: recognising, normalising (frame rate, rotation, size) and cutting."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from itk_common.source_video import (
    ExtendMode,
    FrameReader,
    copy_audio_track,
    cut_span,
    looks_like_video,
    normalize,
    source_index,
    target_size,
)
from itk_common.video import probe_video
from tests.helpers.audio import speech_like
from tests.helpers.video import bar_position, bar_positions, bar_x, source_frame, write_video


def test_source_index_hold_and_pingpong() -> None:
    assert [source_index(n, 4, ExtendMode.HOLD) for n in range(8)] == [0, 1, 2, 3, 3, 3, 3, 3]
    assert [source_index(n, 4, ExtendMode.PINGPONG) for n in range(12)] == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1]
    assert [source_index(n, 1, ExtendMode.PINGPONG) for n in range(3)] == [0, 0, 0]


def test_containers_are_recognised_by_their_bytes(tmp_path: Path) -> None:
    assert looks_like_video(write_video(tmp_path / "a.mp4", 0.2).read_bytes()[:64])
    assert looks_like_video(write_video(tmp_path / "a.mov", 0.2, container="mov").read_bytes()[:64])
    assert looks_like_video(write_video(tmp_path / "a.webm", 0.2, codec="libvpx-vp9",
                                        container="webm").read_bytes()[:64])
    assert not looks_like_video(b"\x89PNG\r\n\x1a\n" + b"\0" * 56)
    assert not looks_like_video(b"RIFF\0\0\0\0WAVEfmt ")
    assert not looks_like_video(b"\0\0\0\x1cftypheic\0\0\0\0mif1heic")  # a HEIF still


def test_target_size_never_enlarges() -> None:
    assert target_size(1920, 1080, 1280) == (1280, 720)
    assert target_size(640, 360, 1280) == (640, 360)
    assert target_size(1081, 1921, 1280) == (720, 1280)


def test_variable_frame_rate_is_retimed_to_25_fps(tmp_path: Path) -> None:
    """Frames shown for irregular durations: output frame n shows the frame on screen at n / 25 s."""
    times = [0.0, 0.03, 0.05, 0.2, 0.21, 0.5, 0.9, 0.95]  # seconds; the last one lasts to 1.0 s
    path = tmp_path / "vfr.mkv"
    with av.open(str(path), "w", format="matroska") as output:
        stream = output.add_stream("libx264", rate=100)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for shown in times:
            frame = av.VideoFrame.from_ndarray(source_frame(shown, 96, 64, 1.0), format="rgb24")
            frame.pts, frame.time_base = round(shown * 100), Fraction(1, 100)
            for packet in stream.encode(frame):
                output.mux(packet)
        for packet in stream.encode(None):
            output.mux(packet)
    normalized = normalize(path, tmp_path / "n.mp4", max_side=1280, max_duration_sec=10)
    positions = bar_positions(normalized.path)
    expected = [round(bar_x(max(t for t in times if t <= n / 25 + 1e-9), 96, 1.0)) for n in range(len(positions))]
    assert normalized.frame_count == len(positions)
    assert 24 <= len(positions) <= 26
    assert np.max(np.abs(positions - np.array(expected))) <= 1.0, (positions, expected)


def test_frame_reader_plays_backward_across_keyframes(tmp_path: Path) -> None:
    source = write_video(tmp_path / "s.mp4", 3.0, fps=25)
    normalized = normalize(source, tmp_path / "n.mp4", max_side=1280, max_duration_sec=10)
    assert normalized.frame_count == 75
    indices = [*range(10, 74), *range(74, 2, -1), 3, 3, 40, 40]
    with FrameReader(normalized.path) as reader:
        positions = [bar_position(frame.to_ndarray(format="rgb24")) for frame in reader.frames(indices)]
    expected = [round(bar_x(i / 25, 96, 3.0)) for i in indices]
    assert np.max(np.abs(np.array(positions) - expected)) <= 1.0


def test_cut_span_pingpongs_past_the_end(tmp_path: Path) -> None:
    source = write_video(tmp_path / "s.mp4", 1.0, fps=25)
    normalized = normalize(source, tmp_path / "n.mp4", max_side=1280, max_duration_sec=10)
    span, poster = tmp_path / "span.mp4", tmp_path / "first.png"
    cut_span(normalized.path, normalized.frame_count, 20, 40, ExtendMode.PINGPONG, span, poster)
    assert probe_video(span).frame_count == 40
    positions = bar_positions(span)
    expected = [round(bar_x(source_index(20 + n, 25, ExtendMode.PINGPONG) / 25, 96, 1.0)) for n in range(40)]
    assert np.max(np.abs(positions - np.array(expected))) <= 1.0
    with av.open(str(poster)) as image:
        first = next(image.decode(video=0)).to_ndarray(format="rgb24")
    assert abs(bar_position(first) - expected[0]) <= 1.0


def test_sound_track_is_copied_without_reencoding(tmp_path: Path) -> None:
    video = write_video(tmp_path / "talk.mp4", 2.0, audio=speech_like(2.0, seed=1))
    assert copy_audio_track(video, tmp_path / "sound.mka")
    with av.open(str(tmp_path / "sound.mka")) as container:
        assert not container.streams.video and container.streams.audio[0].codec_context.name == "aac"
    assert not copy_audio_track(write_video(tmp_path / "mute.mp4", 0.5), tmp_path / "none.mka")


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotation_is_applied(tmp_path: Path, rotation: int) -> None:
    source = write_video(tmp_path / "r.mp4", 0.4, fps=25, rotation=rotation)
    normalized = normalize(source, tmp_path / "n.mp4", max_side=1280, max_duration_sec=10)
    with av.open(str(normalized.path)) as container:
        shown = next(container.decode(video=0)).to_ndarray(format="rgb24")
    stored = source_frame(0.0, 96, 64, 0.4)
    # The display matrix angle is counterclockwise: turning the stored picture by it shows it upright.
    upright = np.rot90(stored, round(rotation / 90) % 4)
    assert shown.shape == upright.shape
    assert np.mean(np.abs(shown.astype(int) - upright.astype(int))) < 4
