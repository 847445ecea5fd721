"""The services start from the environment the manifests give them.

Each container's environment is assembled from the rendered ConfigMaps and env entries of the
cpu-preview overlay, with only what cannot work outside a cluster rewritten: listen on 127.0.0.1
and free ports, Service names become those local ports, /data, /tmp and /cache become folders
under tmp_path. Then the pods' own commands run, and the probes the manifests declare are asked
what the kubelet would ask: gRPC health, the gateway's HTTP /health, and the gauge the autoscaler
reads from /metrics.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from itk_common.grpc_server import wait_for_serving
from scripts import k8s_check
from scripts.stack import free_port

BIN = Path(sys.executable).parent
MOUNTS = ("/data", "/tmp", "/cache", "/models", "/etc/itk")
API_KEY = "manifest-test-key-0123456789"
START_TIMEOUT_SEC = 60.0


def container_env(objs: list[k8s_check.Obj], deployment: str) -> tuple[list[str], dict[str, str]]:
    """(command, environment) of the Deployment's container as Kubernetes would set them."""
    found = k8s_check.find(objs, "Deployment", deployment)
    assert found is not None
    container = found["spec"]["template"]["spec"]["containers"][0]
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        config_map = k8s_check.find(objs, "ConfigMap", source["configMapRef"]["name"])
        assert config_map is not None
        env.update(config_map.get("data", {}))
    env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    return container["command"], env


def localise(env: dict[str, str], tmp: Path, services: dict[str, int]) -> dict[str, str]:
    """Rewrite cluster addresses and mount paths to local ones; keep every other value as is."""
    local = {}
    for key, value in env.items():
        for mount in MOUNTS:
            if value == mount or value.startswith(mount + "/"):
                value = str(tmp / mount.strip("/")) + value[len(mount):]
        for service, port in services.items():
            if value.startswith(f"{service}:"):
                value = f"127.0.0.1:{port}"
        local[key] = value
    local["BIND_HOST"] = "127.0.0.1"
    for mount in MOUNTS:
        (tmp / mount.strip("/")).mkdir(exist_ok=True)
    return local


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[dict[str, int]]:
    objs = k8s_check.render(k8s_check.REPO / k8s_check.TARGETS["cpu-preview"])
    ports = {name: free_port() for name in ("splitter", "stitcher", "generator", "gateway", "gateway-http",
                                            "gateway-metrics")}
    # The Secret itk-api-keys as the gateway's volume would hold it.
    keys = tmp_path / "etc" / "itk" / "api-keys" / "keys"
    keys.parent.mkdir(parents=True)
    keys.write_text(f"ci:{hashlib.sha256(API_KEY.encode()).hexdigest()}\n")
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for name in ("splitter", "stitcher", "generator", "gateway"):
            command, env = container_env(objs, name)
            env = localise(env, tmp_path, {s: ports[s] for s in ("splitter", "stitcher", "generator")})
            env["GRPC_PORT"] = str(ports[name])
            if name == "gateway":
                env["PORT"] = str(ports["gateway-http"])
                env["METRICS_PORT"] = str(ports["gateway-metrics"])
            log = (tmp_path / f"{name}.log").open("wb")
            processes.append(subprocess.Popen(
                [str(BIN / command[0]), *command[1:]],
                env={"PATH": os.environ.get("PATH", ""), **env}, stdout=log, stderr=subprocess.STDOUT,
            ))
            try:
                wait_for_serving(f"127.0.0.1:{ports[name]}", timeout=START_TIMEOUT_SEC)
            except TimeoutError:
                log.flush()
                pytest.fail(f"{name} never served with the manifest env:\n"
                            f"{(tmp_path / f'{name}.log').read_text()[-3000:]}")
        yield ports
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.mark.slow
def test_services_serve_with_the_manifest_environment(stack: dict[str, int]) -> None:
    base = f"http://127.0.0.1:{stack['gateway-http']}"
    assert httpx.get(f"{base}/health", timeout=10).status_code == 200
    # Keys are required, and come from the mounted Secret.
    assert httpx.get(f"{base}/jobs/job-1-00000000", timeout=10).status_code == 401
    key = {"Authorization": f"Bearer {API_KEY}"}
    assert httpx.get(f"{base}/jobs/job-1-00000000", headers=key, timeout=10).status_code == 404
    # Prometheus scrapes the metrics port without a key.
    metrics = httpx.get(f"http://127.0.0.1:{stack['gateway-metrics']}/metrics", timeout=10).text
    # The ScaledObject's query reads these two gauges.
    assert "\nitk_chunks_pending " in metrics
    assert "\nitk_chunks_running " in metrics
    # The gateway found the generator through GENERATOR_TARGETS as the manifests set it.
    assert 'itk_generator_endpoints{state="known"} 1.0' in metrics


def test_gpu_generator_settings_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    """The GPU overlay's generator settings are accepted by the InfiniteTalk backend's parser."""
    pytest.importorskip("torch")
    from itk_generator.infinitetalk.settings import InfiniteTalkSettings

    objs = k8s_check.render(k8s_check.REPO / k8s_check.TARGETS["gpu"])
    _command, env = container_env(objs, "generator")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = InfiniteTalkSettings.from_env()
    assert settings.model_dir == Path("/models")
    assert settings.preset == "quality"
    assert settings.lora_path is None
    assert settings.block_offload is False


@pytest.mark.parametrize("provider", ["runpod", "beam", "modal"])
def test_provider_generator_settings_build_the_backend(provider: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The providers overlay's settings, plus the keys the docs tell users to put in the
    provider's Secret, are all a provider generator needs to start."""
    from itk_generator.backend_registry import create_backend

    objs = k8s_check.render(k8s_check.REPO / k8s_check.TARGETS["providers"])
    found = k8s_check.find(objs, "Deployment", f"generator-{provider}")
    assert found is not None
    env = k8s_check.container_settings(objs, found["spec"]["template"]["spec"]["containers"][0])
    secret = {
        "runpod": {"RUNPOD_API_KEY": "rp-key", "RUNPOD_ENDPOINT_ID": "abc123"},
        "beam": {"BEAM_TOKEN": "beam-token", "BEAM_QUEUE_URL": "https://app.beam.cloud/taskqueue/itk/v1"},
        "modal": {"MODAL_SUBMIT_URL": "https://me--infinitetalk-api-model-submit.modal.run",
                  "MODAL_RESULT_URL": "https://me--infinitetalk-api-api-result.modal.run",
                  "MODAL_TOKEN_ID": "wk-id", "MODAL_TOKEN_SECRET": "ws-secret"},
    }[provider]
    # Modal's inputs go to the gateway's bucket, which a site overlay sets (S3_BUCKET is empty here).
    site = {"S3_BUCKET": "my-bucket"} if provider == "modal" else {}
    for key, value in {**env, **secret, **site}.items():
        monkeypatch.setenv(key, value)
    backend = create_backend(env["GENERATOR_BACKEND"])
    assert backend.name == provider
    assert backend.policy.retries == 3 and backend.policy.request_timeout_sec == 30.0
