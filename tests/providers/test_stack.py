"""The documented RunPod recipe, as processes: the stack of `make up` with a RunPod generator beside it,
registered by GENERATOR_POOL_RUNPOD, rendering on the fake RunPod."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from itk_common.grpc_server import wait_for_serving
from scripts.stack import Stack
from tests.generator.test_process import bound_port
from tests.helpers.audio import encode_audio, speech_like
from tests.helpers.rest import call, wait_for_job
from tests.providers.conftest import provider_env

pytestmark = pytest.mark.e2e


def test_make_up_with_a_runpod_pool(tmp_path: Path, fake_provider, portrait: bytes) -> None:
    fake = fake_provider("runpod", queue_sec=0.2, run_sec=0.3)
    log_path = tmp_path / "generator-runpod.log"
    env = {**os.environ, "BIND_HOST": "127.0.0.1", "GRPC_PORT": "0", "TEMP_DIR": str(tmp_path),
           "GENERATOR_BACKEND": "runpod", "PROVIDER_POLL_INTERVAL_SEC": "0.1", **provider_env("runpod", fake, "")}
    with log_path.open("w") as log:
        generator = subprocess.Popen([sys.executable, "-m", "itk_generator.server"], env=env, stdout=log,
                                     stderr=subprocess.STDOUT)
    try:
        target = f"127.0.0.1:{bound_port(generator, log_path)}"
        wait_for_serving(target)
        with Stack(tmp_path / "stack", generators=1,
                   gateway_env={"GENERATOR_POOL_RUNPOD": target, "CHUNK_TARGET_SEC": "3"}) as stack:
            audio = encode_audio(speech_like(7.0, seed=12), 16_000, "wav")
            body = {"image_base64": base64.b64encode(portrait).decode(),
                    "audio_base64": base64.b64encode(audio).decode(), "width": 64, "height": 64, "provider": "runpod"}
            status, created = call("POST", f"{stack.rest_url}/jobs", json.dumps(body).encode())
            assert status == 202, created
            final = wait_for_job(stack.rest_url, created["id"], timeout=120)
    finally:
        generator.terminate()
        generator.wait(timeout=30)
    assert final["status"] == "COMPLETED" and final["provider"] == "runpod", final
    assert len(fake.submitted()) == final["chunk_count"] >= 2
