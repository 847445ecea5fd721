"""The preview backend with a chunk's source video: it renders the source frames, retimed and
fitted, with its mouth on top; a source video that does not match the chunk is refused."""

from __future__ import annotations

from pathlib import Path

import cv2
import grpc
import numpy as np

from itk_common.source_video import SourceFrames
from tests.helpers.audio import speech_like
from tests.helpers.video import bar_positions, bar_x, write_video

from .conftest import Chunk, collect, rpc_error

FRAMES = 40


def chunk_with_source(tmp_path: Path, frames: int = FRAMES, source_frames: int = FRAMES) -> Chunk:
    source = write_video(tmp_path / "span.mp4", source_frames / 25, fps=25).read_bytes()
    ok, png = cv2.imencode(".png", cv2.cvtColor(SourceFrames(source).frame(0), cv2.COLOR_RGB2BGR))
    assert ok
    return Chunk(image=png.tobytes(), samples=speech_like(frames / 25, seed=3).astype(np.float32),
                 width=96, height=64, frame_count=frames, source_video=source)


def test_preview_renders_the_source_frames(serve, tmp_path: Path) -> None:
    running = serve()
    reply = collect(running.stub.Generate(chunk_with_source(tmp_path).requests()))
    video = tmp_path / "out.mp4"
    video.write_bytes(reply.video)
    positions = bar_positions(video)
    expected = np.array([round(bar_x(n / 25, 96, FRAMES / 25)) for n in range(FRAMES)])
    assert len(positions) == FRAMES
    assert np.max(np.abs(positions - expected)) <= 1.0


def test_a_source_video_of_another_length_is_refused(serve, tmp_path: Path) -> None:
    running = serve()
    error = rpc_error(running.stub.Generate(chunk_with_source(tmp_path, source_frames=FRAMES - 5).requests()))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "source_video" in error.details()
    chunk = chunk_with_source(tmp_path)
    chunk.source_video = b"\0\0\0\x18ftypmp42" + b"\0" * 100
    error = rpc_error(running.stub.Generate(chunk.requests()))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "source_video" in error.details()
