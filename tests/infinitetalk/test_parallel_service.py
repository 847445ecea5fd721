"""A generator whose chunks render across 2 processes (PARALLEL_DEVICES=2, gloo on the CPU) on the
tiny model directory: one endpoint of capacity 1 reporting 2 devices, the same video as one
process, and a cancelled chunk that leaves the ranks ready for the next."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from infinitetalk.v1 import common_pb2, generator_pb2
from itk_common.video import read_frames
from itk_generator.backend import Cancelled, ChunkJob, ProgressEvent, SamplingSettings
from itk_generator.infinitetalk.backend import InfiniteTalkBackend, InfiniteTalkSettings
from itk_generator.infinitetalk.pipeline import ChunkRequest
from itk_generator.infinitetalk.sampling import preset_plan, with_overrides
from tests.generator.conftest import Chunk, collect, face_like_portrait, serve  # noqa: F401 (fixture)
from tests.helpers.audio import speech_like

pytestmark = pytest.mark.slow

FRAMES = 30  # two clips of 21 frames (9 motion frames)


def settings(model_dir: Path, devices: int) -> InfiniteTalkSettings:
    return InfiniteTalkSettings(model_dir=model_dir, device="cpu", dtype="fp32", preset="fast", clip_frames=21,
                                size=(32, 32), parallel_devices=devices)


@pytest.fixture(scope="module")
def single(tiny_model_dir: Path) -> InfiniteTalkBackend:
    backend = InfiniteTalkBackend(settings(tiny_model_dir, 1))
    backend.load()
    return backend


@pytest.fixture(scope="module")
def parallel(tiny_model_dir: Path) -> Iterator[InfiniteTalkBackend]:
    lost: list[BaseException] = []
    backend = InfiniteTalkBackend(settings(tiny_model_dir, 2), on_parallel_lost=lost.append)
    backend.load()
    yield backend
    backend.unload()
    assert not lost, f"a rank was lost: {lost}"
    assert backend.parallel is None


def job(text_guidance: float = 0.0) -> ChunkJob:
    return ChunkJob(job_id="j", chunk_index=0, image=face_like_portrait(64, 64),
                    audio=speech_like(FRAMES / 25, pause_every_sec=10.0, seed=4).astype(np.float32),
                    frame_count=FRAMES, width=32, height=32, seed=7,
                    sampling=SamplingSettings(steps=2, text_guidance=text_guidance))


def render(backend: InfiniteTalkBackend, chunk: ChunkJob, path: Path,
           cancel_at_step: int = 0) -> np.ndarray:
    cancelled = threading.Event()

    def progress(event: ProgressEvent) -> None:
        if event.stage == "denoise" and event.step == cancel_at_step:
            cancelled.set()

    backend.render(chunk, path, progress, cancelled)
    return np.stack(list(read_frames(path)))


def chunk_request(text_guidance: float) -> ChunkRequest:
    image = cv2.resize(cv2.imdecode(np.frombuffer(face_like_portrait(64, 64), np.uint8), cv2.IMREAD_COLOR), (32, 32))
    plan = with_overrides(preset_plan("fast"), steps=2, text_guidance=text_guidance)
    return ChunkRequest(image=image[..., ::-1].copy(), audio=job().audio, frame_count=FRAMES, prompt="a person talking",
                        seed=7, plan=plan)


@pytest.mark.parametrize("text_guidance", [0.0, 5.0], ids=["fast-guidance-parallel", "3-forwards-sequence-parallel"])
def test_two_processes_generate_the_single_process_frames(single: InfiniteTalkBackend, parallel: InfiniteTalkBackend,
                                                          text_guidance: float) -> None:
    assert single.pipeline is not None and parallel.pipeline is not None
    expected = np.concatenate(list(single.pipeline.generate(chunk_request(text_guidance))))
    frames = np.concatenate(list(parallel.pipeline.generate(chunk_request(text_guidance))))
    assert frames.shape == expected.shape == (FRAMES, 32, 32, 3)
    # fp32 on both; the ranks sum in other orders (other matrix shapes, other thread counts): rounding only
    assert np.abs(frames.astype(int) - expected.astype(int)).max() <= 1


def test_cancelled_chunks_leave_the_ranks_ready(parallel: InfiniteTalkBackend, tmp_path: Path) -> None:
    before = render(parallel, job(), tmp_path / "before.mp4")
    # Mid-clip (the workers wait at the next step) and at a clip's last step (they are done with it).
    for step in (1, 2):
        with pytest.raises(Cancelled):
            render(parallel, job(), tmp_path / "cancelled.mp4", cancel_at_step=step)
        assert not (tmp_path / "cancelled.mp4").exists()
    assert np.array_equal(render(parallel, job(), tmp_path / "after.mp4"), before)


def test_service_is_one_endpoint_of_capacity_one_with_two_devices(serve, parallel: InfiniteTalkBackend  # noqa: F811
                                                                   ) -> None:
    running = serve(backend=parallel)
    info = running.stub.GetInfo(generator_pb2.GetInfoRequest())
    assert (info.backend, info.capacity, info.devices, info.device, info.ready) == ("infinitetalk", 1, 2, "cpu x2",
                                                                                   True)
    samples = speech_like(FRAMES / 25, pause_every_sec=10.0, seed=2).astype(np.float32)
    chunk = Chunk(image=face_like_portrait(96, 120), samples=samples, width=48, height=64, frame_count=FRAMES,
                  sampling=common_pb2.SamplingOptions(preset="fast", steps=2))
    reply = collect(running.stub.Generate(chunk.requests()))
    (summary,) = reply.summaries
    assert (summary.frame_count, summary.width, summary.height) == (FRAMES, 48, 64)
