"""The writer's keyframe ramp on real encoded media: two parts of one slow pan, joined.

Each part is a separately encoded file that starts with a keyframe. The pan moves 0.2 px a frame,
so the source changes by the same small amount between any two frames, and a larger step at the
join in the decoded frames is the encoder's. Plain CRF encoding (no zones) is the control: it shows
the step this suite guards against, so the ramped figures cannot pass by the content alone.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import itk_common.video as video
from itk_common.video import Mp4Writer, keyframe_ramp, read_frames

WIDTH, HEIGHT, PART = 128, 96, 50


def pan(frames: int) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (HEIGHT, WIDTH + 32, 3), dtype=np.uint8), (0, 0), 1.5)
    return [cv2.warpAffine(texture, np.float32([[1, 0, -0.2 * i], [0, 1, 0]]), (WIDTH, HEIGHT),
                           flags=cv2.INTER_LINEAR) for i in range(frames)]


def encode_parts(source: list[np.ndarray], workdir: Path) -> np.ndarray:
    """Both parts encoded by the writer the generators use; their decoded frames in order."""
    decoded: list[np.ndarray] = []
    for index in range(2):
        path = workdir / f"part-{index}.mp4"
        with Mp4Writer(path, WIDTH, HEIGHT, frame_count=PART) as writer:
            for frame in source[index * PART:(index + 1) * PART]:
                writer.write(frame)
        decoded.extend(read_frames(path))
    return np.stack(decoded).astype(np.float32)


def figures(source: list[np.ndarray], decoded: np.ndarray) -> dict[str, float]:
    error = np.abs(decoded - np.stack(source).astype(np.float32)).mean(axis=(1, 2, 3))
    steps = np.abs(np.diff(decoded.mean(axis=3), axis=0)).mean(axis=(1, 2))
    inside = np.delete(steps, PART - 1)
    return {
        "join step": float(steps[PART - 1]),
        "in-part p99": float(np.percentile(inside, 99)),
        "last frame error": float(error[PART - 1]),
        "first frame error": float(error[PART]),
        "middle error": float(np.median(error[10:PART - 10])),
    }


@pytest.fixture(scope="module")
def source() -> list[np.ndarray]:
    return pan(2 * PART)


def test_plain_encoding_steps_at_the_join(source: list[np.ndarray], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(video, "keyframe_ramp", lambda _frames: "")
    plain = figures(source, encode_parts(source, tmp_path))
    assert plain["join step"] > 1.5 * plain["in-part p99"], plain
    assert plain["last frame error"] > plain["middle error"], plain


def test_ramp_makes_the_join_a_step_like_any_other(source: list[np.ndarray], tmp_path: Path) -> None:
    ramped = figures(source, encode_parts(source, tmp_path))
    assert ramped["join step"] <= 1.15 * ramped["in-part p99"], ramped
    # The part's edges are encoded better than its middle: its end as well as its first keyframe.
    assert ramped["last frame error"] < 0.9 * ramped["middle error"], ramped
    assert ramped["first frame error"] < 0.9 * ramped["middle error"], ramped


def test_part_edges_get_the_steeper_ramp() -> None:
    zones = dict((tuple(map(int, zone.split(",")[:2])), float(zone.split("=")[1]))
                 for zone in keyframe_ramp(2 * video.KEYFRAME_INTERVAL).split("/"))
    by_frame = {frame: multiplier for (first, last), multiplier in zones.items() for frame in range(first, last + 1)}
    last = 2 * video.KEYFRAME_INTERVAL - 1
    assert by_frame[0] == by_frame[last] == video.PART_EDGE_RAMP_PEAK
    assert by_frame[video.KEYFRAME_INTERVAL] == video.KEYFRAME_RAMP_PEAK
    assert video.PART_EDGE_RAMP_FRAMES - 1 in by_frame and video.PART_EDGE_RAMP_FRAMES not in by_frame
    assert video.KEYFRAME_INTERVAL + video.KEYFRAME_RAMP_FRAMES not in by_frame
