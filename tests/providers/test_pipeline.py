"""Whole jobs on RunPod, Beam and Modal pools, against the fake providers, through REST and gRPC.

One gateway with a preview default pool and one generator per provider (capacity 2: two provider
jobs in flight), each a real gRPC server on loopback whose backend talks HTTP to its fake.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from infinitetalk.v1 import gateway_pb2, gateway_pb2_grpc
from itk_common.constants import SAMPLE_RATE
from itk_common.grpc_server import insecure_channel, wait_for_serving
from itk_common.streaming import data_pieces, join_pieces
from itk_gateway.config import Settings
from itk_gateway.server import Gateway, build_gateway
from itk_generator.preview import mouth_box
from itk_generator.server import GeneratorServer
from itk_generator.server import start_server as start_generator_server
from tests.e2e.checks import check_video
from tests.helpers.audio import encode_audio, speech_like
from tests.helpers.rest import call, wait_for_job
from tests.helpers.services import HOST, BackendServices, start_backend_services, wait_until
from tests.providers.conftest import (
    BEAM_TOKEN,
    MODAL_ID,
    MODAL_SECRET,
    PROVIDERS,
    RUNPOD_KEY,
    build_backend,
    start_fake,
)
from tests.providers.fakes.server import FakeProvider

SIZE = 64
CAPACITY = 2
MAX_ATTEMPTS = 3


@dataclass
class Deployment:
    gateway: Gateway
    services: BackendServices
    fakes: dict[str, FakeProvider]
    generators: dict[str, GeneratorServer]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str, input_bucket) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("providers")
    services = start_backend_services(root / "backends", generators=1)
    fakes = {name: start_fake(name, queue_sec=0.15, run_sec=0.25) for name in PROVIDERS}
    generators: dict[str, GeneratorServer] = {}
    pools: dict[str, list[str]] = {}
    for name, fake in fakes.items():
        (root / f"generator-{name}").mkdir()
        server, port = start_generator_server(HOST, 0, backend=build_backend(name, fake, s3_endpoint),
                                              capacity=CAPACITY, temp_dir=root / f"generator-{name}")
        wait_for_serving(f"{HOST}:{port}", timeout=30)
        generators[name], pools[name] = server, [f"{HOST}:{port}"]
    settings = Settings(port=0, grpc_port=0, data_dir=root / "gateway", splitter_target=services.splitter_target,
                        stitcher_target=services.stitcher_target, generator_targets=services.generator_targets,
                        generator_pools=pools, chunk_target_sec=3.0, resolve_interval_sec=0.5,
                        retry_backoff_sec=0.05, generator_wait_sec=30.0, generator_max_attempts=MAX_ATTEMPTS)
    gateway = build_gateway(settings)
    gateway.start()
    yield Deployment(gateway, services, fakes, generators)
    gateway.stop()
    for server in generators.values():
        server.stop(0)
    for fake in fakes.values():
        fake.stop()
    services.stop()


@pytest.fixture
def fresh(deployment: Deployment) -> Iterator[Deployment]:
    """The deployment with every fake's failure switches and timing reset afterwards."""
    yield deployment
    for fake in deployment.fakes.values():
        fake.fail_jobs, fake.lose_next, fake.run_sec = "", 0, 0.25
        fake.http_failures.clear()


def seed_body(image: bytes, audio: bytes, **fields: object) -> bytes:
    return json.dumps({"image_base64": base64.b64encode(image).decode(),
                       "audio_base64": base64.b64encode(audio).decode(),
                       "width": SIZE, "height": SIZE, **fields}).encode()


def submit(gateway: Gateway, body: bytes) -> str:
    status, created = call("POST", f"{gateway.rest_url}/jobs", body)
    assert status == 202, created
    return created["id"]


def jobs_of(fake: FakeProvider, before: int) -> list:
    return fake.submitted()[before:]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_multi_chunk_job_in_sync_and_parallel(fresh: Deployment, provider: str, portrait: bytes,
                                              tmp_path: Path) -> None:
    samples = speech_like(11.0, seed=3)
    fake = fresh.fakes[provider]
    before, fake.peak_in_flight = len(fake.submitted()), 0
    job_id = submit(fresh.gateway, seed_body(portrait, encode_audio(samples, SAMPLE_RATE, "wav"), provider=provider,
                                             prompt="A person talking"))
    final = wait_for_job(fresh.gateway.rest_url, job_id, timeout=120)
    assert final["status"] == "COMPLETED", final
    assert final["provider"] == provider and final["chunk_count"] >= 3
    video = tmp_path / "job.mp4"
    video.write_bytes(base64.b64decode(final["video_base64"]))
    # Exact frames and size although the fake rendered at its own frame rate, 4n+1 count and size.
    check_video(video, samples, SIZE, mouth_box=mouth_box(portrait, SIZE, SIZE))
    submitted = jobs_of(fake, before)
    assert len(submitted) == final["chunk_count"]
    assert {job.frames % 4 for job in submitted} == {1}
    prompts = {job.body["input"]["prompt"] if provider == "runpod" else job.body["prompt"] for job in submitted}
    assert prompts == {"A person talking"}
    assert fake.peak_in_flight == CAPACITY  # chunks ran in parallel, never past the capacity
    assert fresh.services.rendered(job_id) == {}  # nothing went to the default pool


def test_seed_request_body_with_provider_beam(fresh: Deployment, portrait: bytes) -> None:
    """The seed README's 'Using Beam' request, unchanged (384x540)."""
    audio = encode_audio(speech_like(3.0, seed=4), SAMPLE_RATE, "wav")
    body = json.dumps({"image_base64": base64.b64encode(portrait).decode(),
                       "audio_base64": base64.b64encode(audio).decode(),
                       "width": 384, "height": 540, "provider": "beam", "push_to_s3": False, "dry_run": False})
    before = len(fresh.fakes["beam"].submitted())
    final = wait_for_job(fresh.gateway.rest_url, submit(fresh.gateway, body.encode()), timeout=120)
    assert final["status"] == "COMPLETED" and final["provider"] == "beam", final
    sent = jobs_of(fresh.fakes["beam"], before)[0].body
    assert (sent["width"], sent["height"], sent["force_offload"]) == (384, 540, True)
    assert sent["prompt"] and base64.b64decode(sent["wav_base64"])[:4] == b"RIFF"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_grpc_job(fresh: Deployment, provider: str, portrait: bytes, tmp_path: Path) -> None:
    audio = encode_audio(speech_like(4.0, seed=5), SAMPLE_RATE, "wav")

    def requests() -> Iterator[gateway_pb2.CreateJobRequest]:
        yield gateway_pb2.CreateJobRequest(options=gateway_pb2.JobOptions(width=SIZE, height=SIZE, provider=provider))
        for piece in data_pieces(portrait):
            yield gateway_pb2.CreateJobRequest(image=piece)
        for piece in data_pieces(audio):
            yield gateway_pb2.CreateJobRequest(audio=piece)

    with insecure_channel(fresh.gateway.grpc_target) as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        created = stub.CreateJob(requests())
        assert created.provider == provider
        *_, job = stub.WatchJob(gateway_pb2.WatchJobRequest(id=created.id), timeout=120)
        assert job.status == gateway_pb2.COMPLETED, job.error
        data = join_pieces(stub.DownloadVideo(gateway_pb2.DownloadVideoRequest(id=job.id)))
    assert job.frames_total == 100 and len(data) > 0


@pytest.mark.parametrize("provider", PROVIDERS)
def test_cancel_cancels_the_provider_jobs(fresh: Deployment, provider: str, portrait: bytes) -> None:
    fake = fresh.fakes[provider]
    fake.run_sec = 60.0
    before = len(fake.submitted())
    job_id = submit(fresh.gateway, seed_body(portrait, encode_audio(speech_like(8.0, seed=6), SAMPLE_RATE, "wav"),
                                             provider=provider))
    wait_until(lambda: len(jobs_of(fake, before)) == CAPACITY, timeout=30, message="provider jobs submitted")
    status, _ = call("POST", f"{fresh.gateway.rest_url}/jobs/{job_id}/cancel")
    assert status in (200, 202)
    ids = {job.id for job in jobs_of(fake, before)}
    wait_until(lambda: ids <= set(fake.cancelled), timeout=30, message="provider jobs cancelled")
    assert wait_for_job(fresh.gateway.rest_url, job_id, timeout=30)["status"] == "CANCELLED"
    assert not fake.in_flight


@pytest.mark.parametrize("provider", PROVIDERS)
def test_provider_failure_fails_the_job_after_the_retries(fresh: Deployment, provider: str, portrait: bytes) -> None:
    fake = fresh.fakes[provider]
    fake.fail_jobs = "CUDA out of memory"
    before = len(fake.submitted())
    job_id = submit(fresh.gateway, seed_body(portrait, encode_audio(speech_like(2.5, seed=7), SAMPLE_RATE, "wav"),
                                             provider=provider))
    final = wait_for_job(fresh.gateway.rest_url, job_id, timeout=60)
    assert final["status"] == "FAILED"
    assert f"failed on {MAX_ATTEMPTS} attempts" in final["error"] and provider in final["error"]
    assert len(jobs_of(fake, before)) == MAX_ATTEMPTS
    if provider != "modal":  # Modal's result endpoint answers a failed call with a bare 500
        assert "CUDA out of memory" in final["error"]
    assert not any(secret in final["error"] for secret in (RUNPOD_KEY, BEAM_TOKEN, MODAL_ID, MODAL_SECRET))


def test_transient_errors_and_a_lost_job_are_retried(fresh: Deployment, portrait: bytes) -> None:
    fake = fresh.fakes["runpod"]
    fake.http_failures.extend([429, 503, 502])
    fake.lose_next = 1
    job_id = submit(fresh.gateway, seed_body(portrait, encode_audio(speech_like(2.5, seed=8), SAMPLE_RATE, "wav"),
                                             provider="runpod"))
    final = wait_for_job(fresh.gateway.rest_url, job_id, timeout=60)
    assert final["status"] == "COMPLETED", final
    assert not fake.http_failures and fake.lose_next == 0


def test_provider_names_select_pools(deployment: Deployment, portrait: bytes, tmp_path: Path) -> None:
    """Without a runpod pool `runpod` means the default pool; without a modal pool `modal` is refused."""
    settings = replace(deployment.gateway.settings, data_dir=tmp_path / "gw", port=0, grpc_port=0,
                       generator_pools={"beam": deployment.gateway.settings.generator_pools["beam"]})
    gateway = build_gateway(settings)
    gateway.start()
    try:
        audio = encode_audio(np.zeros(SAMPLE_RATE, dtype=np.float32), SAMPLE_RATE, "wav")
        status, reply = call("POST", f"{gateway.rest_url}/jobs", seed_body(portrait, audio, provider="modal"))
        assert status == 400 and reply["code"] == "VALIDATION_ERROR"
        assert "modal is not configured" in reply["error"]
        assert "infinitetalk" in reply["error"] and "beam" in reply["error"]
        final = wait_for_job(gateway.rest_url, submit(gateway, seed_body(portrait, audio, provider="runpod")), 60)
        assert final["status"] == "COMPLETED" and final["provider"] == "infinitetalk"
    finally:
        gateway.stop()
