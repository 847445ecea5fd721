"""The generator as a real process: `python -m itk_generator.server`, configured by env, stopped by SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from infinitetalk.v1 import generator_pb2_grpc
from itk_common.grpc_server import insecure_channel, wait_for_serving

from .conftest import Chunk, collect, rpc_error

LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")


def launch(tmp_path: Path, **env: str) -> tuple[subprocess.Popen, Path]:
    log_path = tmp_path / "generator.log"
    settings = {**os.environ, "BIND_HOST": "127.0.0.1", "GRPC_PORT": "0", "TEMP_DIR": str(tmp_path), **env}
    with log_path.open("w") as log:
        process = subprocess.Popen([sys.executable, "-m", "itk_generator.server"], env=settings,
                                   stdout=log, stderr=subprocess.STDOUT)
    return process, log_path


def bound_port(process: subprocess.Popen, log_path: Path, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = LISTENING.search(log_path.read_text())
        if match:
            return int(match.group(1))
        assert process.poll() is None, log_path.read_text()
        time.sleep(0.05)
    raise TimeoutError(log_path.read_text())


def test_sigterm_finishes_the_chunk_in_hand_then_exits_zero(tmp_path, portrait, speech):
    # 2 s of audio at 1 s of work per second of audio: a chunk takes about 2 s, one progress step a second.
    process, log_path = launch(tmp_path, PREVIEW_COST_PER_AUDIO_SEC="1.0")
    try:
        target = f"127.0.0.1:{bound_port(process, log_path)}"
        wait_for_serving(target)
        with insecure_channel(target) as channel:
            stub = generator_pb2_grpc.GeneratorStub(channel)
            health = health_pb2_grpc.HealthStub(channel)
            first_step = threading.Event()
            replies = []
            call = stub.Generate(Chunk(portrait, speech[:32000]).requests(), timeout=60)
            worker = threading.Thread(target=lambda: replies.append(collect(call, first_step)))
            worker.start()
            assert first_step.wait(30)

            process.send_signal(signal.SIGTERM)
            while health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == \
                    health_pb2.HealthCheckResponse.SERVING:
                time.sleep(0.02)
            error = rpc_error(stub.Generate(Chunk(portrait, speech[:640]).requests(), timeout=10))
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            assert "draining" in error.details()

            worker.join(60)
            [reply] = replies
            assert reply.summaries[0].frame_count == 50
            assert reply.progress[-1].frames_done == 50
        assert process.wait(30) == 0, log_path.read_text()
        assert [p for p in tmp_path.iterdir() if p.name.startswith("itk-chunk-")] == []
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_unknown_backend_exits_listing_the_known_ones(tmp_path):
    process, log_path = launch(tmp_path, GENERATOR_BACKEND="magic")
    assert process.wait(60) != 0
    assert "known backends: beam, infinitetalk, modal, preview, runpod" in log_path.read_text()


def test_backend_that_fails_to_load_exits_non_zero(tmp_path):
    process, log_path = launch(tmp_path, PREVIEW_FACE_CASCADE=str(tmp_path / "missing.xml"))
    assert process.wait(60) == 1
    assert "backend preview failed to load" in log_path.read_text()


def test_the_preview_never_imports_torch():
    code = (
        "import sys\n"
        "from itk_generator.backend_registry import create_backend\n"
        "import itk_generator.server\n"
        "create_backend('preview').load()\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
