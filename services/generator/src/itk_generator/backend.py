"""The interface between the generator service and whatever renders video.

A backend is loaded once when the service starts and then renders one chunk per call. The
service owns everything else (gRPC, capacity, draining, health), so a new backend (the
InfiniteTalk model, or a remote GPU provider that submits, polls and downloads) is one class
and one entry in `BACKENDS` (backend_registry.py).
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
    # On unless a job turns it off: it keeps a long lane's colours on the reference image's.
    color_correction: bool = True
    resolution: str = ""


@dataclass(frozen=True)
class Person:
    """One speaker of a multi-person chunk.

    `box` is the speaker's face region (x0, y0, x1, y1) as fractions of the uploaded image's width
    and height, x0 < x1 and y0 < y1, all in [0, 1]; None when none was given, and the backend then
    uses its own default split of the frame (the reference: person 1 the left half, person 2 the
    right half).
    """

    box: tuple[float, float, float, float] | None = None


@dataclass(frozen=True)
class ChunkJob:
    """Everything a backend needs to render one chunk (a piece of a lane's stream).

    Lanes: a piece continues its lane's stream. When `motion` is set, the piece starts from
    those frames (the previous piece's last decoded frames) instead of the portrait alone, as a
    clip of the reference follows the clip before; a backend returns its own last frames in
    `RenderedChunk.motion` for the piece after it. Randomness must come from (seed, lane,
    frame offset in the lane), never from the piece alone, so no two pieces share a starting
    noise and a lane renders the same however it is cut.
    """

    job_id: str
    chunk_index: int
    image: bytes  # the reference image file as uploaded (PNG, JPEG, ...)
    audio: np.ndarray  # float32 mono samples in [-1, 1) at 16 kHz: the piece's own samples
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
    lane: int = 0
    lane_first_frame: int = 0  # offset of the piece's first frame from its lane's start
    # The piece's audio with its neighbours' on both sides (for audio features that look across
    # the cut); `audio` is context_audio[context_before : context_before + len(audio)].
    context_audio: np.ndarray | None = None
    context_before: int = 0
    # float16 [T, H, W, 3] in [-1, 1]: the previous piece's last frames (itk_common.motion), or None.
    motion: np.ndarray | None = None
    # Multi-person chunks: the speakers in order (person 1 first). Empty: one person, and only
    # `audio` / `context_audio` matter. With two or more, `person_audio` holds each speaker's own
    # track, row i for persons[i], and `audio` / `context_audio` are their mix (the video's sound).
    persons: tuple[Person, ...] = ()
    # float32 [persons, samples]: each speaker's samples, with the same context as `context_audio`
    # (context_before samples before the piece's own); None for a one-person chunk.
    person_audio: np.ndarray | None = None

    @property
    def person_count(self) -> int:
        return max(1, len(self.persons))

    @property
    def person_tracks(self) -> np.ndarray:
        """float32 [persons, samples]: each speaker's own samples of the piece (no context); a
        one-person chunk gives its audio as one row."""
        if self.person_audio is None:
            return self.audio[None, :]
        return self.person_audio[:, self.context_before : self.context_before + len(self.audio)]

    @property
    def person_tracks_with_context(self) -> tuple[np.ndarray, int]:
        """([persons, samples] with context, where the piece's own samples start in them)."""
        if self.person_audio is None:
            samples, start = self.audio_with_context
            return samples[None, :], start
        return self.person_audio, self.context_before

    @property
    def audio_with_context(self) -> tuple[np.ndarray, int]:
        """(samples, where the piece's own samples start in them)."""
        if self.context_audio is None:
            return self.audio, 0
        return self.context_audio, self.context_before


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
    # The piece's last frames for the next piece of the lane (float16 [T, H, W, 3] in [-1, 1]);
    # None when the backend keeps no motion state.
    motion: np.ndarray | None = None


class BackendError(Exception):
    """Rendering failed for a reason that retrying elsewhere will not fix (bad input)."""


class Cancelled(Exception):  # noqa: N818 - a public name backends raise
    """The caller went away; the backend stopped early."""


ProgressCallback = Callable[[ProgressEvent], None]


class Backend(ABC):
    name: str = "abstract"
    # Whether render() continues from ChunkJob.motion. A backend that cannot (it starts every
    # piece from the portrait) sets False, and the gateway then plans no lanes for its pool.
    continues_motion: bool = True
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

    @property
    def person_counts(self) -> tuple[int, ...]:
        """Speaker counts this backend renders (reported as GeneratorInfo.person_counts). The
        service refuses a chunk with another count before calling render(). A backend that renders
        several speakers reads `ChunkJob.persons` and `ChunkJob.person_tracks`."""
        return (1,)

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
