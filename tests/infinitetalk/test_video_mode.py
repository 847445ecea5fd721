"""InfiniteTalk's video mode on the tiny model directory: each clip is conditioned on the source
frame at its own start (CLIP tokens and conditioning latent), as the reference does it."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from infinitetalk.v1 import common_pb2
from itk_common.source_video import SourceFrames
from itk_common.video import probe_video
from itk_generator.backend import ChunkJob, SamplingSettings
from itk_generator.infinitetalk.backend import InfiniteTalkBackend
from itk_generator.infinitetalk.pipeline import image_to_tensor, plan_clips
from itk_generator.infinitetalk.resolution import resize_to_cover
from tests.generator.conftest import Chunk, collect, serve  # noqa: F401 (fixture)
from tests.helpers.audio import speech_like
from tests.helpers.video import write_video
from tests.infinitetalk.test_backend_service import CLIP_FRAMES, FRAMES, tiny_backend


@pytest.fixture(scope="module")
def loaded_backend(tiny_model_dir: Path) -> InfiniteTalkBackend:
    backend = tiny_backend(tiny_model_dir)
    backend.load()
    return backend


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A chunk's span of source video: FRAMES frames at 25 fps of a bar crossing the picture."""
    path = tmp_path_factory.mktemp("source") / "span.mp4"
    return write_video(path, FRAMES / 25, fps=25, width=64, height=64).read_bytes()


class RecordingEncoder:
    """Wraps the CLIP encoder and keeps every image it is asked to encode."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.images: list[torch.Tensor] = []

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        self.images.append(images.detach().cpu().clone())
        return self.inner.encode(images)


def test_each_clip_is_conditioned_on_the_source_frame_at_its_start(loaded_backend: InfiniteTalkBackend,
                                                                    source: bytes, tmp_path: Path) -> None:
    pipeline = loaded_backend.pipeline
    assert pipeline is not None
    recorder = RecordingEncoder(pipeline.clip)
    pipeline.clip = recorder
    try:
        frames = SourceFrames(source)
        first = frames.frame(0)
        poster = tmp_path / "first.png"
        import cv2

        cv2.imwrite(str(poster), cv2.cvtColor(first, cv2.COLOR_RGB2BGR))
        job = ChunkJob(job_id="j", chunk_index=0, image=poster.read_bytes(),
                       audio=speech_like(FRAMES / 25, seed=4).astype(np.float32), frame_count=FRAMES,
                       width=32, height=32, sampling=SamplingSettings(steps=1), source_video=source)
        rendered = loaded_backend.render(job, tmp_path / "out.mp4", lambda _e: None, threading.Event())
    finally:
        pipeline.clip = recorder.inner
    assert rendered.frame_count == FRAMES and probe_video(rendered.path).frame_count == FRAMES
    clips = plan_clips(FRAMES, CLIP_FRAMES, 9)
    assert [c.first_frame for c in clips] == [0, 12]
    assert len(recorder.images) == len(clips)
    reader = SourceFrames(source)
    for clip, seen in zip(clips, recorder.images, strict=True):
        expected = image_to_tensor(resize_to_cover(reader.frame(clip.first_frame), 32, 32))
        assert torch.allclose(seen, expected, atol=1e-6), f"clip {clip.index} saw another frame"
    assert not torch.allclose(recorder.images[0], recorder.images[1]), "the source moves between clips"


def test_service_renders_a_chunk_with_its_source_video(serve, loaded_backend: InfiniteTalkBackend,  # noqa: F811
                                                       source: bytes, tmp_path: Path) -> None:
    import cv2

    first = SourceFrames(source).frame(0)
    ok, png = cv2.imencode(".png", cv2.cvtColor(first, cv2.COLOR_RGB2BGR))
    assert ok
    running = serve(backend=loaded_backend)
    chunk = Chunk(image=png.tobytes(), samples=speech_like(FRAMES / 25, seed=6).astype(np.float32),
                  width=48, height=48, frame_count=FRAMES, source_video=source,
                  sampling=common_pb2.SamplingOptions(preset="fast", steps=1))
    reply = collect(running.stub.Generate(chunk.requests()))
    (summary,) = reply.summaries
    assert (summary.frame_count, summary.width, summary.height) == (FRAMES, 48, 48)
    video = tmp_path / "chunk.mp4"
    video.write_bytes(reply.video)
    assert probe_video(video).frame_count == FRAMES
