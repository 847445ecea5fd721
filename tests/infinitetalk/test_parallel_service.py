"""A generator whose chunks render across 2 processes (PARALLEL_DEVICES=2, gloo on the CPU) on the
tiny model directory: one endpoint of capacity 1 reporting 2 devices, the same video as one
process, and a cancelled chunk that leaves the ranks ready for the next."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from infinitetalk.v1 import common_pb2, generator_pb2, generator_pb2_grpc
from itk_common.grpc_server import insecure_channel, wait_for_serving
from itk_common.video import read_frames
from itk_generator.backend import Cancelled, ChunkJob, ProgressEvent, SamplingSettings
from itk_generator.infinitetalk.backend import InfiniteTalkBackend
from itk_generator.infinitetalk.pipeline import ChunkRequest
from itk_generator.infinitetalk.sampling import preset_plan, with_overrides
from itk_generator.infinitetalk.settings import InfiniteTalkSettings
from tests.generator.conftest import Chunk, collect, face_like_portrait, serve  # noqa: F401 (fixture)
from tests.generator.test_process import bound_port, launch
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
    """The chunk's frames as the pipeline handed them out, clip by clip (what the MP4 holds
    before H.264 compression: libx264 was seen to code the B-frames of identical 32x32 frames
    differently between renders in one process)."""
    cancelled = threading.Event()
    clips: list[np.ndarray] = []

    def progress(event: ProgressEvent) -> None:
        if event.stage == "denoise" and event.step == cancel_at_step:
            cancelled.set()
        if event.clip is not None:
            clips.append(event.clip.copy())

    backend.render(chunk, path, progress, cancelled)
    assert len(list(read_frames(path))) == chunk.frame_count
    return np.concatenate(clips)


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


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:  # the field after the state is the parent's pid
            found.append(int(stat.parent.name))
    return found


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_generator_process_starts_its_ranks_and_drains_them_on_sigterm(tiny_model_dir: Path, tmp_path: Path) -> None:
    """`itk-generator` as the pod runs it: rank 0 serves, rank 1 is its child; on SIGTERM the chunk in
    hand finishes, then the process exits 0 and leaves no rank behind."""
    process, log_path = launch(tmp_path, GENERATOR_BACKEND="infinitetalk", MODEL_DIR=str(tiny_model_dir),
                               PARALLEL_DEVICES="2", DEVICE="cpu", DTYPE="fp32", INFINITETALK_PRESET="fast",
                               INFINITETALK_CLIP_FRAMES="21", INFINITETALK_SIZE="32x32")
    try:
        target = f"127.0.0.1:{bound_port(process, log_path)}"
        wait_for_serving(target, timeout=120)
        ranks = children_of(process.pid)
        assert ranks, log_path.read_text()
        with insecure_channel(target) as channel:
            stub = generator_pb2_grpc.GeneratorStub(channel)
            assert stub.GetInfo(generator_pb2.GetInfoRequest()).devices == 2
            samples = speech_like(FRAMES / 25, pause_every_sec=10.0, seed=2).astype(np.float32)
            chunk = Chunk(image=face_like_portrait(64, 64), samples=samples, width=32, height=32, frame_count=FRAMES,
                          sampling=common_pb2.SamplingOptions(steps=2))
            first_step = threading.Event()
            replies: list = []
            call = stub.Generate(chunk.requests(), timeout=300)
            reader = threading.Thread(target=lambda: replies.append(collect(call, first_step)))
            reader.start()
            assert first_step.wait(120)
            process.send_signal(signal.SIGTERM)
            reader.join(300)
            [reply] = replies
            assert reply.summaries[0].frame_count == FRAMES
        assert process.wait(60) == 0, log_path.read_text()
        deadline = time.monotonic() + 10
        while any(running(pid) for pid in ranks) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(running(pid) for pid in ranks)
        assert "rank 1" in log_path.read_text()  # the worker logged into the same stream
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
