"""The Dockerfiles and the build script agree with the repository: what they copy exists, what they
run is a declared console script, and every image the manifests use has a Dockerfile."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from scripts import k8s_check

REPO = k8s_check.REPO
DOCKERFILES = sorted((REPO / "docker").glob("*.Dockerfile"))


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_one_dockerfile_per_image() -> None:
    assert {f"infinitetalk/{p.name.removesuffix('.Dockerfile')}" for p in DOCKERFILES} == k8s_check.IMAGE_NAMES


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_copy_sources_exist(dockerfile: Path) -> None:
    copies = [args for keyword, args in instructions(dockerfile) if keyword == "COPY"]
    from_context = [args.split() for args in copies if not args.startswith("--from")]
    assert from_context, "copies nothing from the build context"
    for parts in from_context:
        for source in parts[:-1]:
            assert (REPO / source).exists(), f"{dockerfile.name}: COPY source {source} not in the repository"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_cmd_is_a_declared_console_script_and_user_is_not_root(dockerfile: Path) -> None:
    steps = instructions(dockerfile)
    cmd = [args for keyword, args in steps if keyword == "CMD"]
    assert len(cmd) == 1
    program = json.loads(cmd[0])[0]
    assert program in k8s_check.declared_console_scripts()
    users = [args for keyword, args in steps if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in {"0", "root"}


def test_manifest_commands_are_declared_console_scripts() -> None:
    scripts = k8s_check.declared_console_scripts()
    for target, folder in k8s_check.TARGETS.items():
        for obj, _spec, container in k8s_check.workloads(k8s_check.render(REPO / folder)):
            if container["image"].rpartition(":")[0] in k8s_check.THIRD_PARTY_IMAGES:
                continue  # the trial PostgreSQL runs its image's own entrypoint
            assert container["command"][0] in scripts, f"{target}: {k8s_check.where(obj, container)}"


def test_slim_images_install_no_torch() -> None:
    for name in ("gateway", "splitter", "stitcher", "generator-cpu"):
        dockerfile = REPO / "docker" / f"{name}.Dockerfile"
        assert "python:3.11-slim" in dockerfile.read_text()
        runs = " ".join(args for keyword, args in instructions(dockerfile) if keyword == "RUN")
        assert "pip install" in runs
        assert "[infinitetalk]" not in runs and "torch" not in runs.lower()


def test_generator_image_makes_flash_attn_optional() -> None:
    text = (REPO / "docker" / "generator.Dockerfile").read_text()
    assert "ARG WITH_FLASH_ATTN=1" in text
    # the fp8 extra (cuDNN's FP8 attention frontend) comes with the model in the GPU image
    assert '"/src/services/generator[infinitetalk,fp8]"' in text


def test_build_script_names_images_like_the_kustomization(tmp_path: Path) -> None:
    """Run the script with a stand-in `docker` that records its arguments."""
    log = tmp_path / "calls"
    fake = tmp_path / "docker"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    fake.chmod(0o755)
    result = subprocess.run(
        [str(REPO / "scripts" / "build_images.sh")],
        env={"PATH": "/usr/bin:/bin", "DOCKER": str(fake), "REGISTRY": "registry.example.com/team",
             "IMAGE_TAG": "1.2.3", "PUSH": "1", "WITH_FLASH_ATTN": "0"},
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    for name in sorted(k8s_check.IMAGE_NAMES):
        ref = f"registry.example.com/team/{name}:1.2.3"
        assert any(c.startswith("build ") and f"-t {ref} " in c for c in calls), ref
        assert f"push {ref}" in calls
    generator_build = next(c for c in calls if "-f docker/generator.Dockerfile" in c)
    assert "--build-arg WITH_FLASH_ATTN=0" in generator_build
    assert "newName: registry.example.com/team/infinitetalk/gateway" in result.stdout
