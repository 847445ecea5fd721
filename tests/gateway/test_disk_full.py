"""A full data volume is a server condition: 507 with Retry-After, `/ready` 503 and a metric, and
jobs in flight wait for room and go on (or fail naming the full volume). On a real small tmpfs."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from itk_common.grpc_server import insecure_channel
from itk_gateway.server import Gateway
from tests.gateway.conftest import json_job, post_json, speech_wav
from tests.helpers.rest import call, download, submit_multipart, wait_for_job
from tests.helpers.services import GeneratorHandle, start_generator, wait_until

VOLUME_MB = 48


@pytest.fixture
def volume(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of VOLUME_MB MiB for the gateway's DATA_DIR (mounting needs root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path = tmp_path / "volume"
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={VOLUME_MB}m", "tmpfs", str(path)], check=True)
    yield path
    subprocess.run(["umount", "-l", str(path)], check=False)


def fill(volume: Path, leave_bytes: int = 0) -> Path:
    """Fill the volume up to `leave_bytes` of free space (0: until writes fail)."""
    ballast = volume / "ballast"
    block = b"\0" * (256 * 1024)
    with ballast.open("ab") as handle:
        try:
            while True:
                stats = os.statvfs(volume)
                room = stats.f_bavail * stats.f_frsize - leave_bytes
                if leave_bytes and room <= 0:
                    break
                handle.write(block if not leave_bytes else block[: max(1, min(len(block), room))])
                handle.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return ballast


def grpc_health(gateway: Gateway) -> str:
    with insecure_channel(gateway.grpc_target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


@pytest.fixture
def slow_generator(tmp_path: Path) -> Iterator[GeneratorHandle]:
    handle = start_generator(tmp_path / "slow", cost_per_audio_sec=1.0)
    yield handle
    handle.stop()


def test_full_volume_refuses_new_jobs_as_a_server_condition(make_gateway, volume: Path, portrait: bytes) -> None:
    gateway: Gateway = make_gateway(data_dir=volume / "data", min_free_disk_mb=8)
    ballast = fill(volume, leave_bytes=4 * 2**20)
    status, reply = post_json(gateway, json_job(portrait, speech_wav(3.0)))
    assert status == 507, reply
    assert reply["code"] == "INSUFFICIENT_STORAGE" and "data volume" in reply["error"], reply
    assert call("GET", f"{gateway.rest_url}/ready")[0] == 503
    assert call("GET", f"{gateway.rest_url}/health")[0] == 200  # alive, only not ready
    # Kubernetes' readiness probe asks gRPC health: it follows /ready.
    wait_until(lambda: grpc_health(gateway) == "NOT_SERVING", timeout=10, message="gRPC health NOT_SERVING")
    assert "itk_data_free_bytes" in gateway.metrics.render().decode()
    ballast.unlink()
    assert call("GET", f"{gateway.rest_url}/ready")[0] == 200
    wait_until(lambda: grpc_health(gateway) == "SERVING", timeout=10, message="gRPC health SERVING again")
    status, reply = post_json(gateway, json_job(portrait, speech_wav(3.0)))
    assert status == 202, reply
    assert wait_for_job(gateway.rest_url, reply["id"], timeout=120)["status"] == "COMPLETED"


@pytest.mark.parametrize("form", ["json", "multipart"])
def test_volume_filling_during_an_upload_is_507_not_400_or_500(make_gateway, volume: Path, portrait: bytes,
                                                               form: str) -> None:
    # No reserve: the upload itself runs into the full volume.
    gateway: Gateway = make_gateway(data_dir=volume / "data", min_free_disk_mb=0)
    fill(volume, leave_bytes=64 * 1024)
    audio = speech_wav(8.0)  # larger than the room left
    if form == "json":
        status, reply = post_json(gateway, json_job(portrait, audio))
    else:
        with pytest.raises(RuntimeError) as refused:
            submit_multipart(gateway.rest_url, portrait, audio, width=64, height=64)
        status = int(str(refused.value).split()[2])
        reply = {"error": str(refused.value)}
    assert status == 507, reply
    assert "full" in reply["error"], reply


def test_job_in_flight_waits_for_room_and_completes(make_gateway, volume: Path, portrait: bytes,
                                                    slow_generator: GeneratorHandle, tmp_path: Path) -> None:
    gateway: Gateway = make_gateway(data_dir=volume / "data", min_free_disk_mb=1,
                                    generator_targets=[slow_generator.target])
    status, reply = post_json(gateway, json_job(portrait, speech_wav(6.0, seed=4)))
    assert status == 202, reply
    job_id = reply["id"]
    wait_until(lambda: any(c.status == "running" for c in gateway.store.chunks(job_id)), timeout=60,
               message="a chunk rendering")
    ballast = fill(volume)
    wait_until(lambda: gateway.metrics.jobs_waiting_for_space._value.get() == 1, timeout=60,
               message="the job waiting for room")
    state = call("GET", f"{gateway.rest_url}/jobs/{job_id}?include_video=false")[1]
    assert state["status"] == "RUNNING", state
    ballast.unlink()
    final = wait_for_job(gateway.rest_url, job_id, timeout=180)
    assert final["status"] == "COMPLETED", final
    video = tmp_path / "result.mp4"
    video.write_bytes(download(gateway.rest_url, job_id))
    assert video.stat().st_size > 1000


def test_job_fails_naming_the_full_volume_when_room_does_not_return(make_gateway, volume: Path, portrait: bytes,
                                                                    slow_generator: GeneratorHandle) -> None:
    gateway: Gateway = make_gateway(data_dir=volume / "data", min_free_disk_mb=1, disk_full_wait_sec=2.0,
                                    generator_targets=[slow_generator.target])
    status, reply = post_json(gateway, json_job(portrait, speech_wav(4.0, seed=5)))
    assert status == 202, reply
    wait_until(lambda: any(c.status == "running" for c in gateway.store.chunks(reply["id"])), timeout=60,
               message="a chunk rendering")
    fill(volume)
    final = wait_for_job(gateway.rest_url, reply["id"], timeout=120)
    assert final["status"] == "FAILED", final
    assert "data volume" in final["error"] and "DISK_FULL_WAIT_SEC" in final["error"], final
