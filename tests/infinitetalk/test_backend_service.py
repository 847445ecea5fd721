"""The generator gRPC service serving `infinitetalk` (tiny model directory) like it serves `preview`."""

from __future__ import annotations

import threading
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch

from infinitetalk.v1 import common_pb2, generator_pb2
from itk_common.source_video import VideoError
from itk_common.video import Mp4Writer, probe_video, read_frames
from itk_generator.backend import BackendError, Cancelled, ChunkJob, SamplingSettings
from itk_generator.backend_registry import create_backend
from itk_generator.infinitetalk.backend import InfiniteTalkBackend
from itk_generator.infinitetalk.settings import InfiniteTalkSettings
from tests.generator.conftest import Chunk, collect, face_like_portrait, rpc_error, serve  # noqa: F401 (fixture)
from tests.helpers.audio import speech_like

CLIP_FRAMES = 21
FRAMES = 30  # two clips: 21, then 12 new frames after 9 motion frames


def tiny_backend(model_dir: Path) -> InfiniteTalkBackend:
    return InfiniteTalkBackend(InfiniteTalkSettings(model_dir=model_dir, device="cpu", dtype="fp32", preset="fast",
                                                    clip_frames=CLIP_FRAMES, size=(32, 32)))


@pytest.fixture(scope="module")
def loaded_backend(tiny_model_dir: Path) -> InfiniteTalkBackend:
    backend = tiny_backend(tiny_model_dir)
    backend.load()
    return backend


def test_service_streams_progress_and_an_exact_mp4(serve, loaded_backend: InfiniteTalkBackend,  # noqa: F811
                                                   tmp_path: Path) -> None:
    running = serve(backend=loaded_backend)
    info = running.stub.GetInfo(generator_pb2.GetInfoRequest())
    assert info.backend == "infinitetalk" and info.ready
    # What it serves: the catalogue's presets and its own clip grid, for the gateway to check.
    assert list(info.presets) == ["quality", "fast", "turbo"]
    assert (info.clip_frames, info.motion_frames) == (CLIP_FRAMES, 9)
    assert list(info.resolutions) == ["480p", "720p"]

    samples = speech_like(FRAMES / 25, pause_every_sec=10.0, seed=2).astype(np.float32)
    chunk = Chunk(image=face_like_portrait(96, 120), samples=samples, width=48, height=64, frame_count=FRAMES,
                  sampling=common_pb2.SamplingOptions(preset="fast", steps=2))
    reply = collect(running.stub.Generate(chunk.requests()))

    denoise = [p for p in reply.progress if p.stage == "denoise"]
    assert [p.step for p in denoise] == [1, 2, 3, 4]  # 2 steps x 2 clips, one event per denoising step
    assert all(p.total_steps == 4 for p in denoise)
    assert reply.progress[-1].frames_done == FRAMES
    frames_done = [p.frames_done for p in reply.progress]
    assert frames_done == sorted(frames_done)

    (summary,) = reply.summaries
    assert (summary.backend, summary.frame_count, summary.width, summary.height) == ("infinitetalk", FRAMES, 48, 64)
    video = tmp_path / "chunk.mp4"
    video.write_bytes(reply.video)
    probed = probe_video(video)
    assert (probed.frame_count, probed.width, probed.height, probed.codec) == (FRAMES, 48, 64, "h264")

    # Each clip's frames came as they were decoded, as small MP4s that show the chunk's frames.
    clips: dict[int, bytearray] = {}
    for clip in reply.clips:
        clips.setdefault(clip.first_frame, bytearray()).extend(clip.data.data)
    assert sorted(clips) == [0, CLIP_FRAMES]
    whole = np.stack(list(read_frames(video))).astype(np.int16)
    for first, data in clips.items():
        path = tmp_path / f"clip-{first}.mp4"
        path.write_bytes(bytes(data))
        frames = np.stack(list(read_frames(path))).astype(np.int16)
        assert len(frames) == (CLIP_FRAMES if first == 0 else FRAMES - CLIP_FRAMES)
        assert np.abs(frames - whole[first:first + len(frames)]).mean() < 4  # two encodes of one picture


def test_service_rejects_an_unreadable_image(serve, loaded_backend: InfiniteTalkBackend) -> None:  # noqa: F811
    running = serve(backend=loaded_backend)
    samples = speech_like(0.6, pause_every_sec=10.0, seed=2).astype(np.float32)
    chunk = Chunk(image=b"not a picture", samples=samples, width=48, height=64, frame_count=15)
    error = rpc_error(running.stub.Generate(chunk.requests()))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_render_stops_when_cancelled_and_leaves_no_file(loaded_backend: InfiniteTalkBackend, tmp_path: Path) -> None:
    cancelled = threading.Event()
    events = []

    def progress(event) -> None:
        events.append(event)
        if event.stage == "denoise":
            cancelled.set()

    job = ChunkJob(job_id="j", chunk_index=0, image=face_like_portrait(64, 64),
                   audio=speech_like(0.8, seed=1).astype(np.float32), frame_count=20, width=32, height=32,
                   sampling=SamplingSettings(steps=3))
    output = tmp_path / "out.mp4"
    with pytest.raises(Cancelled):
        loaded_backend.render(job, output, progress, cancelled)
    assert not output.exists()
    assert list(tmp_path.iterdir()) == []
    assert [e.step for e in events if e.stage == "denoise"] == [1]


def two_clip_job() -> ChunkJob:
    return ChunkJob(job_id="j", chunk_index=0, image=face_like_portrait(64, 64),
                    audio=speech_like(FRAMES / 25, seed=1).astype(np.float32), frame_count=FRAMES, width=32,
                    height=32, sampling=SamplingSettings(steps=2))


def test_mp4_is_encoded_off_the_render_thread_and_exact(loaded_backend: InfiniteTalkBackend, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The device goes on with the next clip while the previous one is encoded; the file still
    holds every frame handed out, in order."""
    writers: list[str] = []
    original = Mp4Writer.write
    monkeypatch.setattr(Mp4Writer, "write", lambda self, rgb: writers.append(threading.current_thread().name)
                        or original(self, rgb))
    clips: list[np.ndarray] = []
    output = tmp_path / "out.mp4"
    loaded_backend.render(two_clip_job(), output, lambda e: e.clip is not None and clips.append(e.clip),
                          threading.Event())
    assert len(writers) == FRAMES and all(name.startswith("mp4-") for name in writers), set(writers)
    decoded = np.stack(list(read_frames(output)))
    handed_out = np.concatenate(clips)
    assert decoded.shape == handed_out.shape == (FRAMES, 32, 32, 3)
    # H.264 is lossy on these noisy 32x32 frames: each decoded frame is nearest the frame handed out
    # at its place.
    errors = np.abs(decoded[:, None].astype(int) - handed_out[None].astype(int)).mean(axis=(2, 3, 4))
    assert list(errors.argmin(axis=1)) == list(range(FRAMES))


@pytest.mark.parametrize("failure", ["cancelled in the second clip", "the encoder fails"])
def test_a_chunk_stopped_while_encoding_leaves_no_file(loaded_backend: InfiniteTalkBackend, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch, failure: str) -> None:
    cancelled = threading.Event()

    def progress(event) -> None:
        if failure.startswith("cancelled") and event.clip is not None:
            cancelled.set()  # the first clip's frames are with the encoder now

    if failure == "the encoder fails":
        def broken(self, rgb) -> None:
            raise VideoError("disk full while encoding")

        monkeypatch.setattr(Mp4Writer, "write", broken)
    expected = (Cancelled, "cancelled") if failure.startswith("cancelled") else (BackendError, "disk full")
    with pytest.raises(expected[0], match=expected[1]):
        loaded_backend.render(two_clip_job(), tmp_path / "out.mp4", progress, cancelled)
    assert list(tmp_path.iterdir()) == []


def test_bad_sampling_settings_are_backend_errors(loaded_backend: InfiniteTalkBackend, tmp_path: Path) -> None:
    job = ChunkJob(job_id="j", chunk_index=0, image=face_like_portrait(64, 64),
                   audio=speech_like(0.8, seed=1).astype(np.float32), frame_count=20, width=32, height=32,
                   sampling=SamplingSettings(resolution="1080p"))
    with pytest.raises(BackendError, match="resolution"):
        loaded_backend.render(job, tmp_path / "out.mp4", lambda _e: None, threading.Event())
    job = ChunkJob(job_id="j", chunk_index=0, image=face_like_portrait(64, 64),
                   audio=speech_like(0.8, seed=1).astype(np.float32), frame_count=20, width=32, height=32,
                   sampling=SamplingSettings(motion_frames=8))
    with pytest.raises(BackendError, match="motion_frames"):
        loaded_backend.render(job, tmp_path / "out.mp4", lambda _e: None, threading.Event())


def test_registry_builds_it_from_the_environment(monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path) -> None:
    monkeypatch.setenv("MODEL_DIR", str(tiny_model_dir))
    monkeypatch.setenv("INFINITETALK_PRESET", "fast")
    monkeypatch.setenv("DEVICE", "cpu")
    monkeypatch.setenv("BLOCK_OFFLOAD", "true")
    monkeypatch.setenv("INFINITETALK_SIZE", "64x32")
    backend = create_backend("infinitetalk")
    assert isinstance(backend, InfiniteTalkBackend)
    settings = backend.settings
    assert (settings.preset, settings.device, settings.block_offload, settings.size) == ("fast", "cpu", True, (64, 32))
    assert settings.compile_mode == "off"


def test_warm_up_renders_each_bucket_before_serving(tiny_model_dir: Path) -> None:
    """INFINITETALK_WARMUP_BUCKETS (on by default on a GPU): one step of a lane's later clip, which
    starts with motion frames, runs at each bucket without error before the generator serves."""
    backend = InfiniteTalkBackend(InfiniteTalkSettings(
        model_dir=tiny_model_dir, device="cpu", dtype="fp32", preset="fast", clip_frames=CLIP_FRAMES,
        size=(32, 32), warmup_buckets=("480p:32x32",)))
    backend.load()
    backend.warm_up()


def test_idle_offload_waits_for_the_warm_up(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """OFFLOAD_IDLE_SEC shorter than the warm-up: the weights are not parked while the warm-up runs
    (on an H100 that once moved them off the GPU mid-decode, and the generator failed to start); the
    idle time counts from the warm-up's end. The parking itself needs CUDA, so it is recorded here."""
    import time

    from itk_generator.infinitetalk.idle_offload import IdleOffload

    parked_at: list[float] = []
    monkeypatch.setattr(IdleOffload, "_park", lambda self: (parked_at.append(time.monotonic()),
                                                             setattr(self, "_parked", True)))
    backend = InfiniteTalkBackend(InfiniteTalkSettings(
        model_dir=tiny_model_dir, device="cpu", dtype="fp32", preset="fast", clip_frames=CLIP_FRAMES,
        size=(32, 32), warmup_buckets=("480p:32x32",)))
    backend.load()
    backend._idle = IdleOffload(lambda: [], torch.device("cpu"), idle_sec=0.02)
    backend._idle.start()
    try:
        started = time.monotonic()
        backend.warm_up()
        ended = time.monotonic()
        assert ended - started > 0.1  # the watcher (every 5 ms) would have parked without the guard
        deadline = time.monotonic() + 10
        while not parked_at and time.monotonic() < deadline:
            time.sleep(0.01)
        assert parked_at and parked_at[0] >= ended
    finally:
        backend._idle.stop()


def test_the_first_job_reuses_the_graphs_the_warm_up_compiled(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Compiled graphs are keyed on the grad mode their inputs were made in. The warm-up once ran
    under inference_mode while jobs run under no_grad, so the first job after a start compiled
    every graph again (on an H100: +1.3 s in its first clip with the VAE's compiled norms). The
    VAE's fused norms are compiled here on the CPU; the first job must add no graph."""
    from torch._dynamo.utils import counters

    from itk_generator.infinitetalk.vae_fast_paths import FusedRMSNorm

    backend = InfiniteTalkBackend(InfiniteTalkSettings(
        model_dir=tiny_model_dir, device="cpu", dtype="fp32", preset="fast", clip_frames=CLIP_FRAMES,
        size=(32, 32), warmup_buckets=("480p:32x32",), vae_fused_norms=True))
    backend.load()
    norms = [m for m in backend.pipeline.vae.model.modules() if isinstance(m, FusedRMSNorm)]
    assert norms
    for norm in norms:
        norm.compiled = True  # a GPU's path; the CPU default runs them uncompiled
    torch._dynamo.reset()
    counters.clear()
    backend.warm_up()
    warmed = counters["stats"]["unique_graphs"]
    assert warmed > 0
    backend.render(two_clip_job(), tmp_path / "out.mp4", lambda _e: None, threading.Event())
    assert counters["stats"]["unique_graphs"] == warmed
