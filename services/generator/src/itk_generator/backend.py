"""The interface between the generator service and whatever renders video.

A backend is loaded once when the service starts and then renders one chunk per call. The
service owns everything else (gRPC, capacity, draining, health), so a new backend (the
InfiniteTalk model, or a remote GPU provider that submits, polls and downloads) is one class
and one entry in `BACKENDS`.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class SamplingSettings:
    """Client overrides; zero / empty means "the backend's default"."""

    preset: str = ""
    steps: int = 0
    shift: float = 0.0
    text_guidance: float = 0.0
    audio_guidance: float = 0.0
    motion_frames: int = 0
    teacache: bool = False
    color_correction: bool = False
    resolution: str = ""


@dataclass(frozen=True)
class ChunkJob:
    """Everything a backend needs to render one chunk."""

    job_id: str
    chunk_index: int
    image: bytes  # the reference image file as uploaded (PNG, JPEG, ...)
    audio: np.ndarray  # float32 mono samples in [-1, 1) at 16 kHz, as the chunk's WAV holds them
    frame_count: int  # exact number of 25 fps frames to produce
    width: int
    height: int
    prompt: str = ""
    seed: int = 0
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    force_offload: bool = False
    # Dubbing: the source video over this chunk's span (25 fps MP4, frame i at the chunk's frame i,
    # see itk_common.source_video); `image` is then its first frame. None: a still portrait.
    source_video: bytes | None = None


@dataclass(frozen=True)
class ProgressEvent:
    step: int
    total_steps: int
    frames_done: int
    stage: str = "denoise"


@dataclass(frozen=True)
class RenderedChunk:
    path: Path  # the MP4 the backend wrote
    frame_count: int
    width: int
    height: int


class BackendError(Exception):
    """Rendering failed for a reason that retrying elsewhere will not fix (bad input)."""


class Cancelled(Exception):  # noqa: N818 - a public name backends raise
    """The caller went away; the backend stopped early."""


ProgressCallback = Callable[[ProgressEvent], None]


class Backend(ABC):
    name: str = "abstract"
    # Chunks rendered at once when GENERATOR_CAPACITY is unset: one per device for local models.
    default_capacity: int = 1

    @abstractmethod
    def load(self) -> None:
        """Load weights / connect. Called once before the service reports SERVING."""

    @property
    def device(self) -> str:
        return "cpu"

    @property
    def parallel_devices(self) -> int:
        """Devices one chunk is rendered across (the capacity stays one chunk per generator)."""
        return 1

    @abstractmethod
    def render(
        self,
        job: ChunkJob,
        output: Path,
        progress: ProgressCallback,
        cancelled: threading.Event,
    ) -> RenderedChunk:
        """Write exactly `job.frame_count` frames of H.264 MP4 to `output`.

        Call `progress` at least once per denoising step (or per frame batch); check `cancelled`
        between steps and raise `Cancelled` when it is set. Raise `BackendError` for bad input.
        """

    def unload(self) -> None:  # noqa: B027 - optional hook
        """Release memory (called on shutdown and, with force_offload, after a chunk)."""
