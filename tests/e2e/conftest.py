"""Fixtures for end-to-end tests: the four services as separate processes on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from scripts.stack import Stack
from tests.helpers.audio import encode_audio, speech_like

ROOT = Path(__file__).resolve().parents[2]
PORTRAIT = ROOT / "assets" / "sample" / "portrait.png"
SPEECH_SEC = 130.0


@pytest.fixture(scope="session")
def portrait() -> bytes:
    return PORTRAIT.read_bytes()


@pytest.fixture(scope="session")
def speech_samples() -> np.ndarray:
    """Two minutes and ten seconds of speech-like audio with pauses every few seconds."""
    return speech_like(SPEECH_SEC, seed=11)


@pytest.fixture(scope="session")
def speech_wav(speech_samples: np.ndarray) -> bytes:
    return encode_audio(speech_samples, 16_000, "wav")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Two preview generators; 30 s chunks so a two-minute recording becomes several chunks."""
    with Stack(tmp_path_factory.mktemp("stack"), generators=2,
               gateway_env={"CHUNK_TARGET_SEC": "30"}) as running:
        yield running
