"""A provider generator as a real process, configured only by the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from infinitetalk.v1 import generator_pb2, generator_pb2_grpc
from itk_common.grpc_server import insecure_channel, wait_for_serving
from tests.generator.test_process import bound_port
from tests.providers.conftest import RUNPOD_KEY, provider_env


def test_a_runpod_generator_starts_from_its_environment(tmp_path: Path, fake_provider) -> None:
    fake = fake_provider("runpod")
    env = {**os.environ, "BIND_HOST": "127.0.0.1", "GRPC_PORT": "0", "TEMP_DIR": str(tmp_path),
           "GENERATOR_BACKEND": "runpod", **provider_env("runpod", fake, "")}
    log_path = tmp_path / "generator.log"
    with log_path.open("w") as log:
        process = subprocess.Popen([sys.executable, "-m", "itk_generator.server"], env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
    try:
        target = f"127.0.0.1:{bound_port(process, log_path)}"
        wait_for_serving(target)
        with insecure_channel(target) as channel:
            info = generator_pb2_grpc.GeneratorStub(channel).GetInfo(generator_pb2.GetInfoRequest())
        # Capacity defaults to the provider jobs kept in flight, not one per device.
        assert (info.backend, info.capacity, info.device, info.ready) == ("runpod", 4, "remote:runpod", True)
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0
    assert fake.unauthorized == 0 and RUNPOD_KEY not in log_path.read_text()


def test_a_missing_credential_stops_the_generator_naming_it(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RUNPOD_")}
    result = subprocess.run([sys.executable, "-m", "itk_generator.server"], capture_output=True, text=True,
                            env={**env, "GENERATOR_BACKEND": "runpod", "GRPC_PORT": "0"}, timeout=60)
    assert result.returncode == 2
    assert "RUNPOD_API_KEY must be set for GENERATOR_BACKEND=runpod" in result.stdout + result.stderr
