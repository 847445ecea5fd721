"""Converting a provider's video to the chunk's exact frames: any frame rate, 4n+1 counts, sizes."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from itk_common.video import probe_video, read_frames, write_mp4
from itk_generator.providers.errors import ProviderError
from itk_generator.providers.retime import retime

BITS = 7


def numbered_frame(number: int, width: int, height: int) -> np.ndarray:
    """The number's bits as black / white vertical stripes, which survive encoding and scaling."""
    frame = np.zeros((height, width, 3), dtype=np.uint8)
    stripe = width // BITS
    for bit in range(BITS):
        if number >> bit & 1:
            frame[:, bit * stripe : (bit + 1) * stripe] = 255
    return frame


def numbered_video(path: Path, frames: int, fps: int, width: int = 56, height: int = 32) -> None:
    write_mp4(path, (numbered_frame(j, width, height) for j in range(frames)), width, height, fps)


def levels(path: Path) -> list[int]:
    """The number each frame shows."""
    numbers = []
    for frame in read_frames(path):
        stripe = frame.shape[1] // BITS
        columns = frame.mean(axis=(0, 2))
        numbers.append(sum(1 << bit for bit in range(BITS)
                           if columns[bit * stripe + stripe // 4 : (bit + 1) * stripe - stripe // 4].mean() > 128))
    return numbers


@pytest.mark.parametrize(("fps", "frames"), [(30, 61), (16, 33), (24, 49), (25, 53)])
def test_any_rate_and_count_becomes_exact_25_fps(tmp_path: Path, fps: int, frames: int) -> None:
    numbered_video(tmp_path / "in.mp4", frames, fps)
    result = retime(tmp_path / "in.mp4", tmp_path / "out.mp4", 50, 112, 64, max_pad_sec=0.5,
                    cancelled=threading.Event())
    info = probe_video(tmp_path / "out.mp4")
    assert (info.frame_count, info.fps, info.width, info.height) == (50, 25.0, 112, 64)
    assert result.source.frames <= frames and abs(result.source.fps - fps) < 0.01
    # Output frame i shows the source frame on screen at the middle of its span, (i + 0.5) / 25.
    expected = [min(int((i + 0.5) / 25 * fps), frames - 1) for i in range(50)]
    assert levels(tmp_path / "out.mp4") == expected


def test_a_short_video_holds_its_last_frame_within_the_limit(tmp_path: Path) -> None:
    numbered_video(tmp_path / "in.mp4", 45, 25)  # 1.8 s for 2 s of audio
    result = retime(tmp_path / "in.mp4", tmp_path / "out.mp4", 50, 56, 32, max_pad_sec=0.5,
                    cancelled=threading.Event())
    assert result.padded_frames == 5
    assert levels(tmp_path / "out.mp4")[-6:] == [44] * 6


def test_a_video_far_too_short_is_an_error(tmp_path: Path) -> None:
    numbered_video(tmp_path / "in.mp4", 25, 25)
    with pytest.raises(ProviderError, match=r"1.00 s shorter .* CHUNK_TARGET_SEC"):
        retime(tmp_path / "in.mp4", tmp_path / "out.mp4", 50, 48, 32, max_pad_sec=0.5, cancelled=threading.Event())


def test_bytes_that_are_not_a_video_are_an_error(tmp_path: Path) -> None:
    (tmp_path / "in.mp4").write_bytes(b"<html>gateway timeout</html>")
    with pytest.raises(ProviderError, match="not a readable MP4"):
        retime(tmp_path / "in.mp4", tmp_path / "out.mp4", 50, 48, 32, max_pad_sec=0.5, cancelled=threading.Event())


def test_other_aspect_ratios_are_covered_and_centre_cropped(tmp_path: Path) -> None:
    numbered_video(tmp_path / "in.mp4", 30, 30, width=96, height=32)
    retime(tmp_path / "in.mp4", tmp_path / "out.mp4", 25, 33, 41, max_pad_sec=0.5, cancelled=threading.Event())
    info = probe_video(tmp_path / "out.mp4")
    assert (info.frame_count, info.width, info.height) == (25, 32, 40)


def test_the_last_frames_are_returned_when_asked(tmp_path: Path) -> None:
    numbered_video(tmp_path / "in.mp4", 61, 30)
    result = retime(tmp_path / "in.mp4", tmp_path / "out.mp4", 50, 56, 32, max_pad_sec=0.5,
                    cancelled=threading.Event(), tail_frames=5)
    assert result.tail is not None and result.tail.shape == (5, 32, 56, 3)
    decoded = list(read_frames(tmp_path / "out.mp4"))[-5:]
    assert max(float(np.abs(a.astype(int) - b.astype(int)).mean()) for a, b in zip(decoded, result.tail,
                                                                                     strict=True)) < 8
