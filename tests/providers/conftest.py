"""Fake providers on loopback, an S3 endpoint (moto server mode) for Modal's inputs, and backends
built against them with fast polling and retries."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from itk_generator.providers.base import ProviderBackend
from itk_generator.providers.beam import BeamBackend
from itk_generator.providers.modal import ModalBackend
from itk_generator.providers.policy import CallPolicy
from itk_generator.providers.runpod import RunPodBackend
from itk_generator.providers.staging import S3Staging
from tests.providers.fakes.beam import FakeBeam
from tests.providers.fakes.modal import FakeModal
from tests.providers.fakes.runpod import FakeRunPod
from tests.providers.fakes.server import FakeProvider

ROOT = Path(__file__).resolve().parents[2]
PORTRAIT = ROOT / "assets" / "sample" / "portrait.png"
RUNPOD_KEY = "rp-secret-key-123"
BEAM_TOKEN = "beam-secret-token-456"
MODAL_ID, MODAL_SECRET = "wk-modal-id", "ws-modal-secret-789"
INPUT_BUCKET = "itk-provider-inputs"
PROVIDERS = ["runpod", "beam", "modal"]
FAST = CallPolicy(request_timeout_sec=5.0, retries=3, retry_backoff_sec=0.05, poll_interval_sec=0.05,
                  chunk_timeout_sec=60.0)


@pytest.fixture(scope="session")
def portrait() -> bytes:
    return PORTRAIT.read_bytes()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def s3_credentials() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        yield


@pytest.fixture(scope="session")
def input_bucket(s3_endpoint: str, s3_credentials: None):
    client = boto3.client("s3", region_name="us-east-1", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket=INPUT_BUCKET)
    return client


def start_fake(provider: str, **timing: float) -> FakeProvider:
    if provider == "runpod":
        return FakeRunPod(RUNPOD_KEY, "ep-test", **timing).start()
    if provider == "beam":
        return FakeBeam(BEAM_TOKEN, **timing).start()
    return FakeModal(MODAL_ID, MODAL_SECRET, **timing).start()


def build_backend(provider: str, fake: FakeProvider, s3_endpoint: str = "", policy: CallPolicy = FAST,
                  **credentials: str) -> ProviderBackend:
    if provider == "runpod":
        assert isinstance(fake, FakeRunPod)
        return RunPodBackend(credentials.get("key", RUNPOD_KEY), fake.endpoint_id, fake.base_url, policy)
    if provider == "beam":
        assert isinstance(fake, FakeBeam)
        return BeamBackend(credentials.get("key", BEAM_TOKEN), fake.queue_url, fake.url, policy)
    staging = S3Staging(bucket=INPUT_BUCKET, region="us-east-1", endpoint_url=s3_endpoint, url_expiry_sec=60)
    return ModalBackend(f"{fake.url}/submit", f"{fake.url}/result", MODAL_ID, credentials.get("key", MODAL_SECRET),
                        staging, cancel_url=f"{fake.url}/cancel", policy=policy)


def provider_env(provider: str, fake: FakeProvider, s3_endpoint: str) -> dict[str, str]:
    """The environment a generator process would get for this provider (what k8s sets from Secrets)."""
    if provider == "runpod":
        assert isinstance(fake, FakeRunPod)
        return {"RUNPOD_API_KEY": RUNPOD_KEY, "RUNPOD_ENDPOINT_ID": fake.endpoint_id, "RUNPOD_BASE_URL": fake.base_url}
    if provider == "beam":
        assert isinstance(fake, FakeBeam)
        return {"BEAM_TOKEN": BEAM_TOKEN, "BEAM_QUEUE_URL": fake.queue_url, "BEAM_API_BASE_URL": fake.url}
    return {"MODAL_SUBMIT_URL": f"{fake.url}/submit", "MODAL_RESULT_URL": f"{fake.url}/result",
            "MODAL_TOKEN_ID": MODAL_ID, "MODAL_TOKEN_SECRET": MODAL_SECRET, "MODAL_CANCEL_URL": f"{fake.url}/cancel",
            "S3_BUCKET": INPUT_BUCKET, "S3_REGION": "us-east-1", "S3_ENDPOINT_URL": s3_endpoint}


@pytest.fixture
def fake_provider(request: pytest.FixtureRequest) -> Iterator[Callable[..., FakeProvider]]:
    started: list[FakeProvider] = []

    def make(provider: str, **timing: float) -> FakeProvider:
        fake = start_fake(provider, **timing)
        started.append(fake)
        return fake

    yield make
    for fake in started:
        fake.stop()
