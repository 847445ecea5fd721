"""Each provider backend against its fake: a chunk rendered to exact frames, retries, lost jobs,
credentials, deadline, cancel, Modal's staged inputs, and the settings each backend needs."""

from __future__ import annotations

import base64
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from itk_common.config import ConfigError
from itk_common.constants import frames_for_samples
from itk_common.video import probe_video
from itk_common.wav import decode_wav, mix_tracks
from itk_generator.backend import Cancelled, ChunkJob, Person, ProgressEvent
from itk_generator.backend_registry import create_backend
from itk_generator.images import decode_image
from itk_generator.providers.errors import (
    ProviderDeadlineError,
    ProviderError,
    ProviderJobLostError,
    SubmitOutcomeUnknownError,
)
from itk_generator.providers.http import CallScope, ProviderHttp
from itk_generator.providers.policy import CallPolicy
from tests.helpers.audio import speech_like
from tests.helpers.services import wait_until
from tests.providers.conftest import FAST, INPUT_BUCKET, PROVIDERS, RUNPOD_KEY, build_backend, provider_env

SIZE = 64


@pytest.fixture(scope="module")
def chunk(portrait: bytes) -> ChunkJob:
    audio = speech_like(2.0, seed=2)
    return ChunkJob("job-test", 0, portrait, audio, frames_for_samples(len(audio)), SIZE, SIZE, prompt="hello")


def render(backend, chunk: ChunkJob, tmp_path: Path, cancelled: threading.Event | None = None):
    events: list[ProgressEvent] = []
    result = backend.render(chunk, tmp_path / "out.mp4", events.append, cancelled or threading.Event())
    return result, events


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_chunk_becomes_exact_frames(provider: str, fake_provider, s3_endpoint: str, input_bucket, chunk: ChunkJob,
                                      tmp_path: Path) -> None:
    # Queued long enough that the first poll (0.05 s after the submit) finds it waiting, even on a busy machine.
    fake = fake_provider(provider, queue_sec=0.6, run_sec=0.2)
    result, events = render(build_backend(provider, fake, s3_endpoint), chunk, tmp_path)
    info = probe_video(result.path)
    assert (info.frame_count, info.fps, info.width, info.height) == (chunk.frame_count, 25.0, SIZE, SIZE)
    (job,) = fake.submitted()
    assert job.frames % 4 == 1 and job.frames != chunk.frame_count  # the fake's own 4n+1 count and rate
    assert events[-1].frames_done == chunk.frame_count
    assert any(provider in event.stage and event.frames_done == 0 for event in events[1:])  # waiting
    if provider == "modal":
        assert all("Signature=" in url or "X-Amz-Signature=" in url for url in fake.fetched_urls)
        # The staged inputs are gone once the chunk is done.
        assert input_bucket.list_objects_v2(Bucket=INPUT_BUCKET).get("KeyCount", 0) == 0


@pytest.mark.parametrize("provider", PROVIDERS)
def test_429_and_5xx_are_retried(provider: str, fake_provider, s3_endpoint: str, input_bucket, chunk: ChunkJob,
                                 tmp_path: Path) -> None:
    """A submit refused with 429 or 503 is sent again; so is a status poll answered with any 5xx."""
    fake = fake_provider(provider, queue_sec=0.05, run_sec=0.05)
    fake.http_failures.extend([429, 503, 0, 500, 502])  # submit, submit, submit (answered), poll, poll
    result, _ = render(build_backend(provider, fake, s3_endpoint), chunk, tmp_path)
    assert result.frame_count == chunk.frame_count and not fake.http_failures
    assert len(fake.submitted()) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_submit_whose_answer_is_lost_is_not_sent_again(provider: str, fake_provider, s3_endpoint: str,
                                                         input_bucket, chunk: ChunkJob, tmp_path: Path) -> None:
    """The submit reaches the provider, which starts the job, but answers only after the call's timeout:
    the backend does not submit a second job beside it (the old retry left the first rendering, unpolled)."""
    fake = fake_provider(provider, queue_sec=0.05, run_sec=0.05)
    fake.delays.append(1.5)
    policy = CallPolicy(request_timeout_sec=0.3, retry_backoff_sec=0.05, poll_interval_sec=0.05)
    with pytest.raises(SubmitOutcomeUnknownError, match=f"{provider}: submit: .*answer was lost.*not sent again"):
        render(build_backend(provider, fake, s3_endpoint, policy=policy), chunk, tmp_path)
    if provider != "modal":  # Modal's staged inputs are gone with the attempt: a late start cannot fetch them
        wait_until(lambda: len(fake.submitted()) == 1, timeout=30, message="the delayed submit's job")
    assert fake.api_requests == 1 and len(fake.submitted()) <= 1


@pytest.mark.parametrize("status", [500, 502, 504])
def test_a_submit_answered_with_an_error_that_may_follow_a_start_is_not_sent_again(
        status: int, fake_provider, chunk: ChunkJob, tmp_path: Path) -> None:
    fake = fake_provider("runpod")
    fake.http_failures.append(status)
    with pytest.raises(SubmitOutcomeUnknownError, match=f"HTTP {status}"):
        render(build_backend("runpod", fake), chunk, tmp_path)
    assert fake.api_requests == 1


def test_a_submit_that_never_connected_is_sent_again(chunk: ChunkJob, tmp_path: Path) -> None:
    """Connection refused: the request never left, so sending it again cannot start a second job."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    http = ProviderHttp("runpod", CallPolicy(retries=2, retry_backoff_sec=0.01), secrets=[])
    scope = CallScope(threading.Event(), time.monotonic() + 30)
    with pytest.raises(ProviderError, match="submit failed after 3 attempts: ConnectError") as raised:
        http.request("POST", f"http://127.0.0.1:{port}/run", scope, what="submit", json={}, idempotent=False)
    assert not isinstance(raised.value, SubmitOutcomeUnknownError)


def test_retries_run_out(fake_provider, chunk: ChunkJob, tmp_path: Path) -> None:
    fake = fake_provider("beam")
    fake.http_failures.extend([503] * 4)
    with pytest.raises(ProviderError, match="beam: submit failed after 4 attempts: HTTP 503"):
        render(build_backend("beam", fake), chunk, tmp_path)


def test_a_lost_job_fails_the_attempt(fake_provider, chunk: ChunkJob, tmp_path: Path) -> None:
    fake = fake_provider("runpod")
    fake.lose_next = 1
    with pytest.raises(ProviderJobLostError, match="not found"):
        render(build_backend("runpod", fake), chunk, tmp_path)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_refused_credentials_are_named_but_not_shown(provider: str, fake_provider, s3_endpoint: str, input_bucket,
                                                     chunk: ChunkJob, tmp_path: Path) -> None:
    fake = fake_provider(provider)
    with pytest.raises(ProviderError) as raised:
        render(build_backend(provider, fake, s3_endpoint, key="wrong-secret-value"), chunk, tmp_path)
    assert "refused the credentials (HTTP 401" in str(raised.value)
    assert "wrong-secret-value" not in str(raised.value) and fake.unauthorized == 1  # a 401 is not retried


def test_echoed_credentials_are_scrubbed() -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, text=f"bad request with header {request.headers['authorization']}")

    http = ProviderHttp("runpod", FAST, [RUNPOD_KEY], transport=httpx.MockTransport(echo))
    scope = CallScope(threading.Event(), time.monotonic() + 10)
    with pytest.raises(ProviderError) as raised:
        http.request("POST", "https://api.example/run", scope, what="submit",
                     headers={"Authorization": f"Bearer {RUNPOD_KEY}"})
    assert RUNPOD_KEY not in str(raised.value) and "Bearer ***" in str(raised.value)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_deadline_fails_the_chunk_and_cancels_the_provider_job(provider: str, fake_provider, s3_endpoint: str,
                                                                   input_bucket, chunk: ChunkJob,
                                                                   tmp_path: Path) -> None:
    fake = fake_provider(provider, run_sec=60.0)
    policy = CallPolicy(request_timeout_sec=5, retry_backoff_sec=0.05, poll_interval_sec=0.05, chunk_timeout_sec=1.0)
    with pytest.raises(ProviderDeadlineError, match="did not finish within 1 s"):
        render(build_backend(provider, fake, s3_endpoint, policy=policy), chunk, tmp_path)
    assert [job.id for job in fake.submitted()] == fake.cancelled


def test_cancel_stops_waiting_and_cancels_the_provider_job(fake_provider, chunk: ChunkJob, tmp_path: Path) -> None:
    fake = fake_provider("runpod", run_sec=60.0)
    cancelled = threading.Event()
    threading.Timer(0.5, cancelled.set).start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        render(build_backend("runpod", fake), chunk, tmp_path, cancelled)
    assert time.monotonic() - started < 5
    assert [job.id for job in fake.submitted()] == fake.cancelled


@pytest.mark.parametrize(("provider", "first_setting"), [
    ("runpod", "RUNPOD_API_KEY"), ("beam", "BEAM_TOKEN"), ("modal", "MODAL_SUBMIT_URL")])
def test_each_backend_names_a_missing_setting(provider: str, first_setting: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RUNPOD_API_KEY", "BEAM_TOKEN", "MODAL_SUBMIT_URL", "S3_BUCKET"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match=f"{first_setting} must be set for GENERATOR_BACKEND={provider}"):
        create_backend(provider)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_backends_build_from_the_environment(provider: str, fake_provider, s3_endpoint: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_provider(provider)
    for name, value in provider_env(provider, fake, s3_endpoint).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PROVIDER_POLL_INTERVAL_SEC", "0.5")
    backend = create_backend(provider)
    assert backend.name == provider and backend.default_capacity == 4
    assert backend.policy.poll_interval_sec == 0.5 and backend.policy.retries == 3


def test_modal_needs_a_bucket_for_its_inputs(fake_provider, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_provider("modal")
    for name, value in provider_env("modal", fake, s3_endpoint).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("S3_BUCKET")
    with pytest.raises(ConfigError, match="S3_BUCKET must be set for GENERATOR_BACKEND=modal"):
        create_backend("modal")


def test_a_large_portrait_is_sent_scaled_down(fake_provider, portrait: bytes, chunk: ChunkJob,
                                              tmp_path: Path) -> None:
    fake = fake_provider("runpod", queue_sec=0.05, run_sec=0.05)
    policy = CallPolicy(retry_backoff_sec=0.05, poll_interval_sec=0.05, max_image_side=200)
    render(build_backend("runpod", fake, policy=policy), chunk, tmp_path)
    sent = decode_image(fake.submitted()[0].image)
    assert sent.shape[:2] == (200, 200)  # the 512x512 portrait, aspect kept
    render(build_backend("runpod", fake), chunk, tmp_path)
    assert fake.submitted()[1].image == portrait  # small enough: sent as uploaded


def test_a_call_past_its_timeout_is_retried(fake_provider, chunk: ChunkJob, tmp_path: Path) -> None:
    fake = fake_provider("beam", queue_sec=0.05, run_sec=0.05)
    fake.delays.extend([0.0, 3.0])  # the submit answers, the first status poll hangs past the timeout
    policy = CallPolicy(request_timeout_sec=0.3, retry_backoff_sec=0.05, poll_interval_sec=0.05)
    started = time.monotonic()
    result, _ = render(build_backend("beam", fake, policy=policy), chunk, tmp_path)
    assert result.frame_count == chunk.frame_count and not fake.delays
    assert time.monotonic() - started < 2.5  # the hung poll was given up after 0.3 s and sent again


@pytest.mark.parametrize(("status", "cancelled"), [("FAILED", False), ("RETRY", True)])
def test_beam_failures_end_the_attempt_and_a_retry_is_cancelled(status: str, cancelled: bool, fake_provider,
                                                                 chunk: ChunkJob, tmp_path: Path) -> None:
    fake = fake_provider("beam", queue_sec=0.05, run_sec=0.05)
    fake.fail_jobs, fake.failed_status = "worker crashed", status
    with pytest.raises(ProviderError, match=f"ended {status}: worker crashed"):
        render(build_backend("beam", fake), chunk, tmp_path)
    assert bool(fake.cancelled) is cancelled


def test_runpod_takes_two_people_and_the_others_refuse(fake_provider, s3_endpoint: str, portrait: bytes,
                                                      tmp_path: Path) -> None:
    tracks = np.stack([speech_like(2.0, seed=3), speech_like(2.0, seed=4)])
    two = ChunkJob("job-two", 0, portrait, mix_tracks(tracks), frames_for_samples(tracks.shape[1]), SIZE, SIZE,
                   persons=(Person(), Person()), person_audio=tracks)
    fake = fake_provider("runpod", queue_sec=0.1, run_sec=0.1)
    backend = build_backend("runpod", fake, s3_endpoint)
    assert backend.person_counts == (1, 2)
    render(backend, two, tmp_path)
    (job,) = fake.submitted()
    given = job.body["input"]
    assert given["person_count"] == "multi"
    np.testing.assert_allclose(decode_wav(base64.b64decode(given["wav_base64_2"])), tracks[1], atol=1 / 16000)
    np.testing.assert_allclose(decode_wav(job.wav), tracks[0], atol=1 / 16000)
    for provider in ("beam", "modal"):
        assert build_backend(provider, fake_provider(provider), s3_endpoint).person_counts == (1,)
