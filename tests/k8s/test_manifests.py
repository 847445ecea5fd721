"""The checks of scripts/k8s_check.py on every rendered target, and proof that each check can fail."""

from __future__ import annotations

import copy
from functools import cache

import pytest

from scripts import k8s_check

Obj = k8s_check.Obj


@cache
def rendered(target: str) -> tuple[Obj, ...]:
    return tuple(k8s_check.render(k8s_check.REPO / k8s_check.TARGETS[target]))


def objects(target: str) -> list[Obj]:
    return copy.deepcopy(list(rendered(target)))


def deployment(objs: list[Obj], name: str) -> Obj:
    found = k8s_check.find(objs, "Deployment", name)
    assert found is not None, f"Deployment/{name} not rendered"
    return found


def container(objs: list[Obj], name: str) -> Obj:
    return deployment(objs, name)["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("check", k8s_check.CHECKS, ids=lambda c: c.name)
@pytest.mark.parametrize("target", list(k8s_check.TARGETS))
def test_target_passes(target: str, check: k8s_check.Check) -> None:
    assert check.run(target, objects(target)) == []


def test_every_kustomization_is_a_target() -> None:
    """A new overlay must be added to TARGETS, or CI would never render it."""
    roots = {p.parent.relative_to(k8s_check.REPO).as_posix()
             for p in (k8s_check.REPO / "k8s").rglob("kustomization.yaml")
             if "kind: Component" not in p.read_text()}
    pieces = {root for root in roots if root.startswith(k8s_check.PIECES_DIR + "/")}
    assert roots - pieces == set(k8s_check.TARGETS.values())


def test_gpu_overlay_generator_requests_and_limits_one_gpu() -> None:
    resources = container(objects("gpu"), "generator")["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == 1
    assert resources["limits"]["nvidia.com/gpu"] == 1


def test_cpu_preview_needs_no_gpu_and_runs_the_preview_backend() -> None:
    objs = objects("cpu-preview")
    generator = container(objs, "generator")
    assert "nvidia.com/gpu" not in generator["resources"].get("limits", {})
    config = next(o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("itk-generator"))
    assert config["data"]["GENERATOR_BACKEND"] == "preview"
    gpu_config = next(o for o in objects("gpu")
                      if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("itk-generator"))
    assert gpu_config["data"]["GENERATOR_BACKEND"] == "infinitetalk"


def test_gateway_targets_point_at_the_services() -> None:
    objs = objects("base")
    config = next(o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("itk-gateway"))
    services = {o["metadata"]["name"]: {p["port"] for p in o["spec"]["ports"]} for o in objs if o["kind"] == "Service"}
    for key in ("SPLITTER_TARGET", "STITCHER_TARGET", "GENERATOR_TARGETS"):
        host, _, port = config["data"][key].partition(":")
        assert int(port) in services[host], f"{key}={config['data'][key]} matches no Service port"


def test_schema_check_rejects_unknown_and_mistyped_fields() -> None:
    objs = objects("base")
    deployment(objs, "splitter")["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    assert any("imagePullPolicyy" in p for p in k8s_check.check_schema("base", objs))

    scaled = next(o for o in objects("gpu-autoscale") if o["kind"] == "ScaledObject")
    scaled["spec"]["triggers"][0]["metadata"]["threshold"] = 1  # KEDA wants the string "1"
    assert any("threshold" in p for p in k8s_check.schema_problems(scaled))


def test_non_root_check_catches_root_user() -> None:
    objs = objects("base")
    container(objs, "stitcher").setdefault("securityContext", {})["runAsUser"] = 0
    problems = k8s_check.check_non_root("base", objs)
    assert problems == ["Deployment/stitcher container stitcher: runAsUser is 0, need a non-zero uid"]


def test_non_root_check_needs_run_as_non_root() -> None:
    objs = objects("base")
    del deployment(objs, "gateway")["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"]
    assert k8s_check.check_non_root("base", objs) == [
        "Deployment/gateway container gateway: runAsNonRoot is not true"]


def test_non_root_check_needs_dropped_capabilities_and_seccomp() -> None:
    objs = objects("gpu")
    job = next(o for o in objs if o["kind"] == "Job")
    del job["spec"]["template"]["spec"]["securityContext"]["seccompProfile"]
    job["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"]["drop"] = []
    assert k8s_check.check_non_root("gpu", objs) == [
        "Job/model-weights-download container download: capabilities do not drop ALL",
        "Job/model-weights-download container download: seccompProfile is None, need RuntimeDefault",
    ]


def test_read_only_root_check_catches_writable_root() -> None:
    objs = objects("base")
    container(objs, "splitter")["securityContext"]["readOnlyRootFilesystem"] = False
    assert len(k8s_check.check_read_only_root("base", objs)) == 1


def test_resources_check_catches_missing_limit() -> None:
    objs = objects("base")
    del container(objs, "gateway")["resources"]["limits"]["memory"]
    assert k8s_check.check_resources("base", objs) == [
        "Deployment/gateway container gateway: no limits for memory"]


def test_probe_check_catches_a_port_the_container_does_not_expose() -> None:
    objs = objects("base")
    container(objs, "splitter")["readinessProbe"]["grpc"]["port"] = 50099
    problems = k8s_check.check_probes("base", objs)
    assert any("readinessProbe port 50099 is not a container port" in p for p in problems)


def test_gpu_check_catches_a_missing_gpu_limit() -> None:
    objs = objects("gpu")
    del container(objs, "generator")["resources"]["limits"]["nvidia.com/gpu"]
    assert any("nvidia.com/gpu requested and limited" in p for p in k8s_check.check_gpu("gpu", objs))


def test_gpu_check_catches_a_short_startup_probe() -> None:
    objs = objects("gpu")
    container(objs, "generator")["startupProbe"]["failureThreshold"] = 6
    assert any("startupProbe allows 60s" in p for p in k8s_check.check_gpu("gpu", objs))


def test_gateway_check_catches_rolling_update_and_replicas() -> None:
    objs = objects("base")
    spec = deployment(objs, "gateway")["spec"]
    spec["replicas"] = 2
    spec["strategy"] = {"type": "RollingUpdate"}
    assert len(k8s_check.check_gateway("base", objs)) == 2


def test_gateway_check_on_postgresql_needs_replicas_rollout_budget_and_shared_files() -> None:
    objs = objects("replicated")
    assert deployment(objs, "gateway")["spec"]["replicas"] == 3
    spec = deployment(objs, "gateway")["spec"]
    spec["replicas"] = 1
    spec["strategy"] = {"type": "Recreate"}
    objs = [o for o in objs if o["kind"] != "PodDisruptionBudget"]
    config = next(o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("itk-gateway"))
    config["data"]["BLOB_STORE"] = "local"
    problems = k8s_check.check_gateway("replicated", objs)
    assert len(problems) == 4, problems
    assert any("BLOB_STORE=s3 or /data on a ReadWriteMany volume" in p for p in problems)


def test_references_check_catches_required_secret_and_shipped_secret() -> None:
    objs = objects("base")
    env = container(objs, "gateway")["env"]
    next(e for e in env if e["name"] == "AWS_ACCESS_KEY_ID")["valueFrom"]["secretKeyRef"]["optional"] = False
    objs.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "itk-s3"}, "data": {}})
    assert len(k8s_check.check_references("base", objs)) == 2


def test_network_check_catches_an_open_internal_service() -> None:
    objs = objects("base")
    policy = next(o for o in objs if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "generator-from-gateway")
    policy["spec"]["ingress"][0]["from"].append({"namespaceSelector": {}})
    assert k8s_check.check_network_isolation("base", objs) == [
        "NetworkPolicy/generator-from-gateway: admits more than the gateway"]


def test_autoscale_check_catches_fixed_replicas() -> None:
    objs = objects("gpu-autoscale")
    deployment(objs, "generator")["spec"]["replicas"] = 3
    assert k8s_check.check_autoscale("gpu-autoscale", objs) == [
        "Deployment/generator: sets replicas, which would fight the autoscaler"]


def test_image_check_catches_an_untagged_image() -> None:
    objs = objects("base")
    container(objs, "gateway")["image"] = "infinitetalk/gateway"
    assert len(k8s_check.check_images("base", objs)) == 1


def test_providers_overlay_runs_each_provider_on_cpu_with_its_secret() -> None:
    objs = objects("providers")
    for provider, secret in k8s_check.PROVIDER_SECRETS.items():
        generator = container(objs, f"generator-{provider}")
        env = k8s_check.container_settings(objs, generator)
        assert env["GENERATOR_BACKEND"] == provider and int(env["GENERATOR_CAPACITY"]) >= 1
        assert {"secretRef": {"name": secret, "optional": True}} in generator["envFrom"]
    gateway_env = k8s_check.container_settings(objs, container(objs, "gateway"))
    assert gateway_env["GENERATOR_POOL_BEAM"] == "generator-beam:50052"
    assert gateway_env["DEFAULT_POOL"] == "runpod"


@pytest.mark.parametrize("breakage", ["pool", "secret", "policy", "gpu"])
def test_provider_check_catches_a_broken_pool(breakage: str) -> None:
    objs = objects("providers")
    generator = container(objs, "generator-modal")
    if breakage == "pool":
        config = next(o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("itk-gateway"))
        del config["data"]["GENERATOR_POOL_MODAL"]
    elif breakage == "secret":
        next(s for s in generator["envFrom"] if "secretRef" in s)["secretRef"]["name"] = "itk-runpod"
    elif breakage == "policy":
        policy = next(o for o in objs if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "generator-modal")
        policy["spec"]["ingress"][0]["from"].append({"namespaceSelector": {}})
    else:
        generator["resources"]["limits"]["nvidia.com/gpu"] = 1
    problems = k8s_check.check_provider_pools("providers", objs)
    assert len(problems) == 1 and "modal" in problems[0]


def test_main_prints_a_table_and_succeeds(capsys: pytest.CaptureFixture[str]) -> None:
    assert k8s_check.main([]) == 0
    out = capsys.readouterr().out
    assert "all " in out and "checks passed" in out
    for target in k8s_check.TARGETS:
        assert target in out


def test_multi_gpu_overlay_runs_one_rank_per_gpu_of_the_pod() -> None:
    objs = objects("gpu-multi")
    resources = container(objs, "generator")["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == 2
    config = k8s_check._generator_config(objs)
    assert (config["GENERATOR_BACKEND"], config["PARALLEL_DEVICES"], config["GENERATOR_CAPACITY"]) == (
        "infinitetalk", "2", "1")
    assert container(objs, "generator")["command"] == ["itk-generator"]  # rank 0 starts the others


def test_parallel_devices_check_catches_a_gpu_count_mismatch_and_a_missing_shm() -> None:
    objs = objects("gpu-multi")
    container(objs, "generator")["resources"]["limits"]["nvidia.com/gpu"] = 4
    container(objs, "generator")["resources"]["requests"]["nvidia.com/gpu"] = 4
    assert k8s_check.check_parallel_devices("gpu-multi", objs) == [
        "Deployment/generator: PARALLEL_DEVICES=2 but the pod gets 4 GPU(s)"]
    objs = objects("gpu-multi")
    spec = deployment(objs, "generator")["spec"]["template"]["spec"]
    spec["volumes"] = [v for v in spec["volumes"] if v["name"] != "dshm"]
    assert any("/dev/shm" in p for p in k8s_check.check_parallel_devices("gpu-multi", objs))
    objs = objects("gpu")
    next(o for o in objs if o["kind"] == "ConfigMap"
         and o["metadata"]["name"].startswith("itk-generator"))["data"]["PARALLEL_DEVICES"] = "2"
    assert k8s_check.check_parallel_devices("gpu", objs) == [
        "Deployment/generator: PARALLEL_DEVICES=2 but the pod gets 1 GPU(s)"]


@pytest.mark.parametrize("target", list(k8s_check.TARGETS))
def test_every_target_requires_api_keys_from_the_secret(target: str) -> None:
    """No overlay publishes an open gateway: keys are required and come from the Secret itk-api-keys."""
    objs = objects(target)
    gateway = container(objs, "gateway")
    env: dict[str, str] = {}
    for source in gateway["envFrom"]:
        config = k8s_check.find(objs, "ConfigMap", source["configMapRef"]["name"])
        assert config is not None
        env.update(config["data"])
    assert env["BIND_HOST"] == "0.0.0.0" and env["AUTH"] == "required"
    keys_dir = env["API_KEYS_FILE"].rsplit("/", 1)[0]
    mount = next(m for m in gateway["volumeMounts"] if m["mountPath"] == keys_dir)
    assert mount["readOnly"] is True
    volume = next(v for v in deployment(objs, "gateway")["spec"]["template"]["spec"]["volumes"]
                  if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == "itk-api-keys"
    # Prometheus scrapes a port of its own, which the Ingress does not publish.
    assert env["METRICS_PORT"] == "9090"
    assert {"name": "metrics", "containerPort": 9090} in gateway["ports"]
    for ingress in (o for o in objs if o["kind"] == "Ingress"):
        backends = [p["backend"]["service"]["port"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]]
        assert all(port.get("name") == "http" for port in backends)
