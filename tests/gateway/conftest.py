"""A gateway built in-process over real splitter, stitcher and generator servers on 127.0.0.1."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from itk_gateway.config import Settings
from itk_gateway.server import Gateway, build_gateway
from tests.helpers.audio import encode_audio, speech_like
from tests.helpers.rest import call
from tests.helpers.services import BackendServices, GeneratorHandle, start_backend_services, start_generator

ROOT = Path(__file__).resolve().parents[2]
PORTRAIT = ROOT / "assets" / "sample" / "portrait.png"
SIZE = 64


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackendServices]:
    started = start_backend_services(tmp_path_factory.mktemp("backends"), generators=2)
    yield started
    started.stop()


def gateway_settings(data_dir: Path, services: BackendServices, **overrides: object) -> Settings:
    base = Settings(
        port=0, grpc_port=0, data_dir=data_dir, splitter_target=services.splitter_target,
        stitcher_target=services.stitcher_target, generator_targets=services.generator_targets,
        chunk_target_sec=3.0, resolve_interval_sec=0.5, retry_backoff_sec=0.05, generator_wait_sec=30.0,
        # Reports are computed by the tests of test_quality.py; the others need no face analysis.
        quality_report=False,
    )
    return replace(base, **overrides)


@pytest.fixture
def make_gateway(tmp_path: Path, services: BackendServices) -> Iterator[Callable[..., Gateway]]:
    """Build and start gateways (stopped at the end); keyword arguments override Settings."""
    started: list[Gateway] = []

    def make(**overrides: object) -> Gateway:
        overrides.setdefault("data_dir", tmp_path / "gateway")
        gateway = build_gateway(gateway_settings(services=services, **overrides))
        gateway.start()
        started.append(gateway)
        return gateway

    yield make
    for gateway in started:
        if gateway.serving:
            gateway.stop()


@pytest.fixture
def gateway(make_gateway: Callable[..., Gateway]) -> Gateway:
    return make_gateway()


@pytest.fixture
def slow_generator(tmp_path: Path) -> Iterator[GeneratorHandle]:
    """A generator of its own taking 2 s per second of audio, so a job stays in flight."""
    handle = start_generator(tmp_path / "slow-generator", cost_per_audio_sec=2.0)
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def portrait() -> bytes:
    return PORTRAIT.read_bytes()


def speech_wav(seconds: float = 7.0, seed: int = 0) -> bytes:
    return encode_audio(speech_like(seconds, seed=seed), 16_000, "wav")


def silence_wav(seconds: float = 3.0) -> bytes:
    return encode_audio(np.zeros(int(seconds * 16_000), dtype=np.float32), 16_000, "wav")


def json_job(image: bytes, audio: bytes, **fields: object) -> bytes:
    body = {"image_base64": base64.b64encode(image).decode(), "audio_base64": base64.b64encode(audio).decode(),
            "width": SIZE, "height": SIZE, **fields}
    return json.dumps(body).encode()


def post_json(gateway: Gateway, body: bytes | dict) -> tuple[int, dict]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return call("POST", f"{gateway.rest_url}/jobs", raw)


def leftovers(gateway: Gateway) -> list[Path]:
    """Files the gateway keeps for jobs: work folders and results."""
    data = gateway.settings.data_dir
    return sorted([*(data / "jobs").iterdir(), *(data / "results").iterdir()])
