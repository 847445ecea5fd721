"""Presets and the clip grid as the generators report them: `turbo` asked for per job through REST
(JSON and multipart), gRPC and the Modal-style API; refused with a clear 400 where no pool serves it;
a generator whose clip grid differs from the gateway's plan gets no chunks, and says why."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from infinitetalk.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from itk_common.catalogue import ClipGrid
from itk_common.grpc_server import insecure_channel, wait_for_serving
from itk_gateway.server import Gateway
from itk_generator.backend import ChunkJob, Offer, ProgressCallback, RenderedChunk
from itk_generator.server import GeneratorServer
from itk_generator.server import start_server as start_generator_server
from tests.gateway.conftest import PORTRAIT, json_job, post_json, speech_wav
from tests.gateway.test_grpc_api import create_requests
from tests.helpers.file_server import FileServer, file_server
from tests.helpers.rest import submit_multipart, wait_for_job
from tests.helpers.services import HOST, CountingBackend, wait_until


class RecordingBackend(CountingBackend):
    """The preview, recording the preset each chunk asked for; `grid` is the clip grid it reports."""

    def __init__(self, grid: ClipGrid | None = None) -> None:
        super().__init__()
        self.grid = grid
        self.presets: list[str] = []
        self._seen = threading.Lock()

    def offer(self) -> Offer:
        return Offer(clip_grid=self.grid)

    def render(self, job: ChunkJob, output: Path, progress: ProgressCallback,
               cancelled: threading.Event) -> RenderedChunk:
        with self._seen:
            self.presets.append(job.sampling.preset)
        return super().render(job, output, progress, cancelled)


@dataclass
class Generator:
    server: GeneratorServer
    target: str
    backend: RecordingBackend


@pytest.fixture
def start_generator(tmp_path: Path) -> Iterator[Callable[..., Generator]]:
    started: list[Generator] = []

    def start(presets: tuple[str, ...] | None = None, grid: ClipGrid | None = None) -> Generator:
        backend = RecordingBackend(grid)
        server, port = start_generator_server(HOST, 0, backend=backend, temp_dir=tmp_path / f"g{len(started)}",
                                              presets=presets)
        generator = Generator(server, f"{HOST}:{port}", backend)
        wait_for_serving(generator.target, timeout=60)
        started.append(generator)
        return generator

    yield start
    for generator in started:
        generator.server.stop(grace=0)


@pytest.fixture(scope="module")
def files() -> Iterator[FileServer]:
    with file_server() as started:
        started.files["portrait.png"] = PORTRAIT.read_bytes()
        started.files["speech.wav"] = speech_wav(1.5, seed=3)
        yield started


def test_turbo_per_job_on_every_api(make_gateway: Callable[..., Gateway], start_generator, portrait: bytes,
                                    files: FileServer) -> None:
    generator = start_generator()
    gateway = make_gateway(generator_targets=[generator.target], url_allow_hosts=["127.0.0.1"])
    audio = speech_wav(1.5, seed=1)
    jobs = []
    status, reply = post_json(gateway, json_job(portrait, audio, sampling={"preset": "turbo"}))
    assert status == 202, reply
    jobs.append(reply["id"])
    status, reply = post_json(gateway, json_job(portrait, audio, preset="turbo"))
    assert status == 202, reply
    jobs.append(reply["id"])
    jobs.append(submit_multipart(gateway.rest_url, portrait, audio, width=64, height=64, preset="turbo"))
    with insecure_channel(gateway.grpc_target) as channel:
        options = gateway_pb2.JobOptions(width=64, height=64, sampling=common_pb2.SamplingOptions(preset="turbo"))
        jobs.append(gateway_pb2_grpc.GatewayStub(channel).CreateJob(create_requests(options, portrait, audio)).id)
    reply = httpx.post(f"{gateway.rest_url}/modal/submit", timeout=60, json={
        "image": files.url("portrait.png"), "audio1": files.url("speech.wav"), "width": 64, "height": 64,
        "preset": "turbo"})
    assert reply.status_code == 200, reply.text
    jobs.append(reply.json()["call_id"])
    for job_id in jobs:
        assert wait_for_job(gateway.rest_url, job_id, timeout=120)["status"] == "COMPLETED"
    # Every chunk of every job reached the generator asking for turbo.
    assert generator.backend.presets and set(generator.backend.presets) == {"turbo"}
    config = httpx.get(f"{gateway.rest_url}/config").json()
    assert config["presets"] == ["quality", "fast", "turbo"]
    assert config["preset_labels"]["turbo"] == "turbo (4 steps)"


def test_preset_no_pool_serves_is_refused_clearly(make_gateway: Callable[..., Gateway], start_generator,
                                                  portrait: bytes, files: FileServer) -> None:
    full = start_generator()
    quality_only = start_generator(presets=("quality", "fast"))
    gateway = make_gateway(generator_targets=[quality_only.target], generator_pools={"turbo-pool": [full.target]},
                           url_allow_hosts=["127.0.0.1"])
    pool = gateway.backends.pools[gateway.settings.default_pool]
    wait_until(lambda: pool.served_presets() is not None, timeout=30, message="generator probed")
    audio = speech_wav(1.5, seed=1)
    status, reply = post_json(gateway, json_job(portrait, audio, sampling={"preset": "turbo"}))
    assert status == 400, reply
    message = reply["error"]
    assert "sampling.preset: turbo is not served by pool infinitetalk" in message
    assert "serve quality, fast" in message and "pool turbo-pool serves it" in message, message
    reply = httpx.post(f"{gateway.rest_url}/modal/submit", timeout=60, json={
        "image": files.url("portrait.png"), "audio1": files.url("speech.wav"), "preset": "turbo"})
    assert reply.status_code == 400 and "turbo is not served" in reply.text
    with pytest.raises(RuntimeError, match="turbo is not served"):
        submit_multipart(gateway.rest_url, portrait, audio, width=64, height=64, preset="turbo")
    # The pool that serves it takes it.
    job_id = submit_multipart(gateway.rest_url, portrait, audio, width=64, height=64, preset="turbo",
                              provider="turbo-pool")
    assert wait_for_job(gateway.rest_url, job_id, timeout=120)["status"] == "COMPLETED"
    assert quality_only.backend.presets == [] and set(full.backend.presets) == {"turbo"}


def test_generator_with_another_clip_grid_is_refused(make_gateway: Callable[..., Gateway], start_generator,
                                                     portrait: bytes, caplog: pytest.LogCaptureFixture) -> None:
    odd = start_generator(grid=ClipGrid(21, 9))
    gateway = make_gateway(generator_targets=[odd.target], generator_wait_sec=2.0)
    pool = gateway.backends.pools[gateway.settings.default_pool]
    wait_until(lambda: pool.refusals(), timeout=30, message="generator refused")
    (reason,) = pool.refusals()
    assert f"generator {odd.target}" in reason
    assert "renders 21-frame clips continuing from 9 motion frames" in reason
    assert "this gateway plans 81-frame clips continuing from 9 motion frames" in reason
    assert "INFINITETALK_CLIP_FRAMES" in reason and "CLIP_FRAMES" in reason
    assert reason in caplog.text  # logged at registration
    # No chunk goes there; the job fails saying why.
    job_id = submit_multipart(gateway.rest_url, portrait, speech_wav(1.5, seed=1), width=64, height=64)
    state = wait_for_job(gateway.rest_url, job_id, timeout=120)
    assert state["status"] == "FAILED" and "renders 21-frame clips" in state["error"], state
    assert odd.backend.started == {}
