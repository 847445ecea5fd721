"""The `itk` command and the Python client against a running stack (the four services as
separate processes, as `make up` starts them), progress output captured."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from itk_client import AsyncClient, Client, GatewayError
from itk_common.constants import FPS
from itk_common.video import probe_video
from scripts.stack import Stack
from tests.helpers.audio import encode_audio, speech_like
from tests.helpers.two_persons import conversation, two_person_portrait

ROOT = Path(__file__).resolve().parents[2]
PORTRAIT = ROOT / "assets" / "sample" / "portrait.png"
SECONDS = 8.0

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Two preview generators paced at 0.4 s per audio second; 3 s chunks."""
    with Stack(tmp_path_factory.mktemp("stack"), generators=2,
               generator_env={"PREVIEW_COST_PER_AUDIO_SEC": "0.4"},
               gateway_env={"CHUNK_TARGET_SEC": "3"}) as running:
        yield running


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("media") / "speech.wav"
    path.write_bytes(encode_audio(speech_like(SECONDS, seed=8), 16_000, "wav"))
    return path


def itk(stack: Stack, *args: str, api_key: str = "") -> subprocess.CompletedProcess[str]:
    # FORCE_COLOR makes rich draw its live progress bar although stderr is a pipe here.
    env = {**os.environ, "ITK_URL": stack.rest_url, "ITK_API_KEY": api_key, "FORCE_COLOR": "1", "COLUMNS": "140"}
    return subprocess.run([sys.executable, "-m", "itk_client.cli", *args], env=env, capture_output=True,
                          text=True, timeout=180, check=False)


def test_submit_draws_progress_and_writes_the_video(stack: Stack, speech: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    done = itk(stack, "submit", str(PORTRAIT), str(speech), "-o", str(out), "--size", "96x128",
               "--preset", "fast", "--provider", "runpod", "--prompt", "a talk")
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()
    assert re.fullmatch(r"job-\d+-[0-9a-f]{32}", job_id)
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", done.stderr)
    # The bar moved through several frame counts, showed pieces, and ended complete.
    counts = {int(n) for n in re.findall(r"frames (\d+)/200", plain)}
    assert len(counts) >= 3 and max(counts) == round(SECONDS * FPS), plain[-2000:]
    assert "pieces" in plain and "COMPLETED" in plain and f"wrote {out}" in plain.replace("\n", "")
    info = probe_video(out)
    assert info.frame_count == round(SECONDS * FPS) and (info.width, info.height) == (96, 128)

    listed = itk(stack, "list", "--limit", "5")
    assert listed.returncode == 0 and job_id in listed.stdout
    status = itk(stack, "status", job_id)
    assert status.returncode == 0 and "COMPLETED" in status.stdout and "infinitetalk" in status.stdout
    again = tmp_path / "again.mp4"
    fetched = itk(stack, "download", job_id, "-o", str(again))
    assert fetched.returncode == 0 and again.read_bytes() == out.read_bytes()


def test_cancel_watch_and_errors(stack: Stack, speech: Path) -> None:
    started = itk(stack, "submit", str(PORTRAIT), str(speech), "--size", "64x64", "--no-wait")
    job_id = started.stdout.strip()
    cancelled = itk(stack, "cancel", job_id)
    assert cancelled.returncode == 0 and f"{job_id} CANCELLED" in cancelled.stdout
    watched = itk(stack, "watch", job_id)
    assert watched.returncode == 1 and "CANCELLED" in watched.stderr
    refused = itk(stack, "submit", str(PORTRAIT), str(speech), "--size", "64x64", "--provider", "nowhere")
    assert refused.returncode == 2 and "VALIDATION_ERROR" in refused.stderr and "nowhere" in refused.stderr
    missing = itk(stack, "submit", "missing.png", str(speech))
    assert missing.returncode == 2 and "no such file" in missing.stderr
    unknown = itk(stack, "status", "job-1-00000000")
    assert unknown.returncode == 2 and "JOB_NOT_FOUND" in unknown.stderr


def test_python_api_sync_and_async(stack: Stack, speech: Path, tmp_path: Path) -> None:
    with Client(stack.rest_url) as client:
        job = client.submit(PORTRAIT, speech, 64, 64, idempotency_key="api-test-1")
        assert client.submit(PORTRAIT, speech, 64, 64, idempotency_key="api-test-1").id == job.id
        kinds = [event.kind for event in client.events(job.id)]
        assert kinds[0] == "status" and kinds[-1] == "end" and "progress" in kinds
        with pytest.raises(GatewayError) as refused:
            client.cancel(job.id)
        assert refused.value.status == 409

    async def run() -> tuple[str, int, list[str]]:
        async with AsyncClient(stack.rest_url) as client:
            created = await client.submit(PORTRAIT, speech, 64, 64, preset="fast")
            seen: list[str] = []
            final = await client.wait(created.id, on_update=lambda j: seen.append(j.status))
            size = await client.download(created.id, tmp_path / "async.mp4")
            return final.status, size, seen

    status, size, seen = asyncio.run(run())
    assert status == "COMPLETED" and size > 0 and seen[-1] == "COMPLETED"
    assert probe_video(tmp_path / "async.mp4").frame_count == round(SECONDS * FPS)


def test_submit_two_people(stack: Stack, tmp_path: Path) -> None:
    first, second = conversation(seconds=3.0, seed=9)
    paths = [tmp_path / "one.wav", tmp_path / "two.wav", tmp_path / "two.png"]
    paths[0].write_bytes(encode_audio(first, 16_000, "wav"))
    paths[1].write_bytes(encode_audio(second, 16_000, "wav"))
    paths[2].write_bytes(two_person_portrait())
    out = tmp_path / "two.mp4"
    done = itk(stack, "submit", str(paths[2]), str(paths[0]), "--audio-2", str(paths[1]), "--box", "150,40,300,200",
               "--box", "724,40,874,200", "--audio-type", "add", "--size", "128x64", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert probe_video(out).frame_count == round(6.0 * FPS)  # person 1's three seconds, then person 2's
    wrong = itk(stack, "submit", str(paths[2]), str(paths[0]), "--audio-2", str(paths[1]), "--box", "0,0,9,9")
    assert wrong.returncode == 2 and "2 speakers' tracks for 1 box(es)" in wrong.stderr.replace("\n", "")
