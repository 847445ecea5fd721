"""Whole jobs through the REST bridge: the seed API's JSON flow, multipart, ranges, cancel, dry runs."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from email.message import Message
from pathlib import Path

import pytest

from itk_client import Client, GatewayError
from itk_common.constants import FPS
from itk_common.video import probe_video
from itk_gateway.server import Gateway
from tests.gateway.conftest import SIZE, json_job, leftovers, post_json, silence_wav, speech_wav
from tests.helpers.rest import call, wait_for_job
from tests.helpers.services import BackendServices, GeneratorHandle, wait_until

SECONDS = 7.0


def get_raw(url: str, headers: dict[str, str] | None = None) -> tuple[int, Message, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, reply.headers, reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def check_mp4(data: bytes, tmp_path: Path, seconds: float) -> None:
    path = tmp_path / "check.mp4"
    path.write_bytes(data)
    info = probe_video(path)
    assert info.frame_count == round(seconds * FPS)
    assert info.has_audio
    assert (info.width, info.height) == (SIZE, SIZE)


def test_seed_json_flow(gateway: Gateway, services: BackendServices, portrait: bytes, tmp_path: Path) -> None:
    status, created = post_json(gateway, json_job(portrait, speech_wav(SECONDS), provider="runpod"))
    assert status == 202, created
    assert set(created) == {"id", "status"} and created["status"] == "IN_QUEUE"
    assert created["id"].startswith("job-")

    final = wait_for_job(gateway.rest_url, created["id"], timeout=120)
    assert final["status"] == "COMPLETED", final
    assert final["progress"] == 100
    assert final["provider"] == "infinitetalk"
    assert "error" not in final and "video_url" not in final
    assert final["chunk_count"] >= 2 and final["chunks_done"] == final["chunk_count"]
    assert final["frames_done"] == final["frames_total"] == round(SECONDS * FPS)
    assert final["seed"] > 0
    check_mp4(base64.b64decode(final["video_base64"]), tmp_path, SECONDS)
    assert sorted(services.rendered(created["id"]).values()) == [1] * final["chunk_count"]
    # The job's temporary files are gone; only the result stays until it is deleted.
    assert leftovers(gateway) == [gateway.files.result(created["id"])]

    for _ in range(2):  # idempotent
        status, body = call("POST", f"{gateway.rest_url}/jobs/{created['id']}/video/delete")
        assert status == 204, body
    assert leftovers(gateway) == []
    after = call("GET", f"{gateway.rest_url}/jobs/{created['id']}")[1]
    assert after["status"] == "COMPLETED" and "video_base64" not in after and not after["video_available"]
    status, body = call("GET", f"{gateway.rest_url}/jobs/{created['id']}/video")
    assert status == 409 and body["code"] == "VALIDATION_ERROR" and "deleted" in body["error"]


def test_multipart_upload_with_the_client_and_ranges(gateway: Gateway, portrait: bytes, tmp_path: Path) -> None:
    image, audio = tmp_path / "portrait.png", tmp_path / "speech.wav"
    image.write_bytes(portrait)
    audio.write_bytes(speech_wav(SECONDS, seed=4))
    client = Client(gateway.rest_url)
    updates: list = []
    job_id = client.submit(image, audio, SIZE, SIZE, seed=1234, prompt="a person talking").id
    final = client.wait(job_id, timeout=120, on_update=updates.append)
    assert final.status == "COMPLETED", final
    assert final.seed == 1234
    progress = [update.progress for update in updates]
    assert progress == sorted(progress) and progress[-1] == 100

    out = tmp_path / "out.mp4"
    size = client.download(job_id, out)
    video = out.read_bytes()
    assert size == len(video)
    check_mp4(video, tmp_path, SECONDS)

    url = f"{gateway.rest_url}/jobs/{job_id}/video"
    status, headers, body = get_raw(url, {"Range": "bytes=100-199"})
    assert status == 206 and body == video[100:200]
    assert headers["Content-Range"] == f"bytes 100-199/{len(video)}"
    assert headers["Accept-Ranges"] == "bytes"
    status, headers, body = get_raw(url, {"Range": "bytes=-50"})
    assert status == 206 and body == video[-50:]
    status, headers, body = get_raw(url, {"Range": f"bytes={len(video) - 10}-"})
    assert status == 206 and body == video[-10:]
    for bad in (f"bytes={len(video)}-", "bytes=50-10", "bytes=abc", "pages=1-2", "bytes=-0"):
        status, headers, body = get_raw(url, {"Range": bad})
        assert status == 416, bad
        assert headers["Content-Range"] == f"bytes */{len(video)}"
        assert json.loads(body)["code"] == "VALIDATION_ERROR"

    client.delete_video(job_id)
    with pytest.raises(GatewayError) as raised:
        client.download(job_id, tmp_path / "again.mp4")
    assert raised.value.status == 409


def test_dry_run_splits_without_generating(gateway: Gateway, services: BackendServices, portrait: bytes) -> None:
    client = Client(gateway.rest_url)
    job_id = client.submit_json(portrait, speech_wav(SECONDS), SIZE, SIZE, dry_run=True)
    final = client.wait(job_id, timeout=60)
    created = {"id": job_id}
    assert final.status == "COMPLETED" and final.progress == 100
    assert final.chunk_count >= 2
    assert "video_base64" not in final.raw and not final.video_available
    assert services.rendered(created["id"]) == {}
    assert leftovers(gateway) == []


def test_all_silence_audio_is_a_valid_job(gateway: Gateway, portrait: bytes, tmp_path: Path) -> None:
    status, created = post_json(gateway, json_job(portrait, silence_wav(3.0)))
    assert status == 202, created
    final = wait_for_job(gateway.rest_url, created["id"], timeout=60)
    assert final["status"] == "COMPLETED", final
    check_mp4(base64.b64decode(final["video_base64"]), tmp_path, 3.0)


def test_cancel_stops_the_job_and_cleans_up(make_gateway, slow_generator: GeneratorHandle,
                                            portrait: bytes) -> None:
    slow = slow_generator
    gateway = make_gateway(generator_targets=[slow.target])
    status, created = post_json(gateway, json_job(portrait, speech_wav(SECONDS)))
    job_id = created["id"]
    wait_until(lambda: slow.backend.started[(job_id, 0)] == 1, timeout=30, message="chunk 0 started")
    status, cancelled = call("POST", f"{gateway.rest_url}/jobs/{job_id}/cancel")
    assert status == 200 and cancelled["status"] == "CANCELLED", cancelled
    wait_until(lambda: not gateway.files.work_dir(job_id).exists(), message="work folder removed")
    # The generator stopped rendering: the chunk never finished.
    wait_until(lambda: slow.server.slots.active == 0, message="generator slot freed")
    assert slow.backend.rendered[(job_id, 0)] == 0
    assert leftovers(gateway) == []
    status, body = call("POST", f"{gateway.rest_url}/jobs/{job_id}/cancel")
    assert status == 409 and "CANCELLED" in body["error"]
    assert call("GET", f"{gateway.rest_url}/jobs/{job_id}")[1]["status"] == "CANCELLED"


def test_job_timeout(make_gateway, slow_generator: GeneratorHandle, portrait: bytes) -> None:
    gateway = make_gateway(generator_targets=[slow_generator.target], job_timeout_sec=1.0)
    _, created = post_json(gateway, json_job(portrait, speech_wav(SECONDS)))
    final = wait_for_job(gateway.rest_url, created["id"], timeout=30)
    assert final["status"] == "TIMED_OUT" and "JOB_TIMEOUT_SEC" in final["error"]
    assert leftovers(gateway) == []


def test_health_openapi_and_metrics(gateway: Gateway, portrait: bytes) -> None:
    status, body = call("GET", f"{gateway.rest_url}/health")
    assert (status, body) == (200, {"status": "ok"})
    status, spec = call("GET", f"{gateway.rest_url}/openapi.json")
    assert status == 200
    assert {"/jobs", "/jobs/{job_id}", "/jobs/{job_id}/video", "/jobs/{job_id}/cancel",
            "/jobs/{job_id}/video/delete", "/health", "/jobs/{job_id}/events", "/jobs/{job_id}/hls/index.m3u8",
            "/jobs/{job_id}/hls/{name}", "/config"} <= set(spec["paths"])
    assert {"get", "post"} <= set(spec["paths"]["/jobs"])
    assert set(spec["paths"]["/jobs"]["post"]["requestBody"]["content"]) == {
        "application/json", "multipart/form-data"}

    status, created = post_json(gateway, json_job(portrait, speech_wav(3.0)))
    wait_for_job(gateway.rest_url, created["id"], timeout=60)
    status, _, raw = get_raw(f"{gateway.rest_url}/metrics")
    text = raw.decode()
    assert status == 200
    endpoints = len(gateway.settings.generator_targets)
    for line in ("itk_chunks_pending 0.0", "itk_chunks_running 0.0", 'itk_jobs{status="COMPLETED"} 1.0',
                 "itk_jobs_total 1.0", f'itk_generator_endpoints{{state="known"}} {endpoints}.0',
                 f'itk_generator_endpoints{{state="ready"}} {endpoints}.0',
                 f"itk_generator_devices {endpoints}.0"):
        assert line in text, line
    assert "itk_chunk_seconds_count" in text
    assert "itk_video_seconds_total 3.0" in text


def metrics(gateway: Gateway, *names: str) -> tuple[float, ...]:
    """The values of unlabelled metrics, from one scrape."""
    _, _, raw = get_raw(f"{gateway.rest_url}/metrics")
    values = {line.split()[0]: float(line.split()[1]) for line in raw.decode().splitlines()
              if line and not line.startswith("#")}
    missing = [name for name in names if name not in values]
    assert not missing, f"{missing} not exported"
    return tuple(values[name] for name in names)


def test_chunk_gauges_follow_the_work(make_gateway, slow_generator: GeneratorHandle, portrait: bytes) -> None:
    gateway = make_gateway(generator_targets=[slow_generator.target], min_lane_sec=2.0)
    # Two lanes asked for on one generator of capacity 1: one lane's piece runs, the other lane's
    # first piece waits for the generator (what the autoscaler sees).
    # Either lane may take the generator first; the other's piece waits meanwhile.
    _, created = post_json(gateway, json_job(portrait, speech_wav(SECONDS), lanes=2))
    job_id = created["id"]
    wait_until(lambda: metrics(gateway, "itk_chunks_running", "itk_chunks_pending") == (1, 1), timeout=30,
               message="one chunk running and one pending")
    call("POST", f"{gateway.rest_url}/jobs/{job_id}/cancel")
    wait_until(lambda: metrics(gateway, "itk_chunks_running", "itk_chunks_pending") == (0, 0),
               timeout=10, message="gauges back to zero")
