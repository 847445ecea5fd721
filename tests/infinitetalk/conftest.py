"""A tiny InfiniteTalk model directory (real layout and formats, toy sizes), built once per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from itk_generator.infinitetalk.tiny import build_tiny_model_dir


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared and read-only: tests that alter files use `tiny_model_copy`."""
    return build_tiny_model_dir(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture
def tiny_model_copy(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny model directory that a test may break."""
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
