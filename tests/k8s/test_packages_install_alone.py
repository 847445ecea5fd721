"""Each torch-free image installs one service with nothing but its declared dependencies: build
the same install in a clean virtual environment and import the service's server module.

Slow (a venv and a pip install per service; pip's cache makes reruns quicker); needs PyPI.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# image -> (what its Dockerfile pip-installs, the module its console script runs, the script)
SERVICES = {
    "splitter": (["common[media]", "services/splitter"], "itk_splitter.server", "itk-splitter"),
    "stitcher": (["common[media,quality]", "services/stitcher"], "itk_stitcher.server", "itk-stitcher"),
    "gateway": (["common", "gateway"], "itk_gateway.server", "itk-gateway"),
    "generator-cpu": (["common[media]", "services/generator[providers]"], "itk_generator.server", "itk-generator"),
    # Not an image: the client people install on their own machines, with no server dependency.
    "client": (["client"], "itk_client.cli", "itk"),
}

PROBE = """
import importlib, importlib.util, sys
module = importlib.import_module(sys.argv[1])
assert callable(getattr(module, "main", None)), f"{sys.argv[1]} has no main()"
leaked = [name for name in ("torch", "transformers", "diffusers") if importlib.util.find_spec(name)]
assert not leaked, f"installed without being declared for this service: {leaked}"
print("ok")
"""


def copy_package(folder: str, into: Path) -> Path:
    """A clean copy, so pip's in-tree build leaves nothing in the checkout and sees no stale egg-info."""
    target = into / folder
    shutil.copytree(REPO / folder, target,
                    ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "build", "dist"))
    return target


@pytest.mark.slow
@pytest.mark.parametrize("image", list(SERVICES))
def test_service_installs_alone_without_torch(image: str, tmp_path: Path) -> None:
    requirements, module, script = SERVICES[image]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    sources = tmp_path / "src"
    targets = []
    for requirement in requirements:
        folder, _, extra = requirement.partition("[")
        path = copy_package(folder, sources)
        targets.append(f"{path}[{extra}" if extra else str(path))
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", *targets],
        capture_output=True, text=True, check=False,
    )
    assert install.returncode == 0, install.stderr[-4000:]
    probe = subprocess.run([str(python), "-c", PROBE, module], capture_output=True, text=True, check=False)
    assert probe.returncode == 0, probe.stderr[-4000:]
    assert (venv / "bin" / script).is_file(), f"console script {script} not installed"
