"""The CPU `preview` backend: the portrait with a mouth that opens with the audio's loudness.

A multi-person chunk gets one mouth per speaker, on the face in that speaker's box (or, without
boxes, in their strip of the frame), each opening with that speaker's own track.

When the chunk comes with a source video (dubbing), each frame is the source video's frame at
that time, fitted to the output size like the portrait, with the mouth drawn where the chunk's
first frame has it.

It honours lanes: the portrait sways slowly (see motion.py), and a piece continues the sway of
the motion frames it is given and returns its own last frames for the next piece.

It needs no weights and no GPU, so the whole pipeline (split, parallel generation, stitch) can
run and be tested anywhere; `PREVIEW_COST_PER_AUDIO_SEC` adds artificial render time so
benchmarks can model a slow model.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from itk_common.config import env_float, env_str
from itk_common.constants import FPS
from itk_common.motion import uint8_to_motion
from itk_common.source_video import SourceFrames, VideoError
from itk_common.video import Mp4Writer

from ..backend import Backend, BackendError, Cancelled, ChunkJob, ProgressCallback, ProgressEvent, RenderedChunk
from ..images import ImageDecodeError, decode_image
from .layout import (
    DEFAULT_FACE_CASCADE,
    Box,
    FaceFinder,
    fit_image,
    locate_mouth,
    locate_person_mouths,
    output_size,
)
from .motion import random_steps, shifted, state_from_motion, sway_offsets
from .mouth import draw_mouth, mouth_openness

FRAMES_PER_STEP = FPS
DEFAULT_MOTION_FRAMES = 9
# Artificial cost is slept in slices this long so cancellation is noticed promptly.
SLEEP_SLICE_SEC = 0.05


class PreviewBackend(Backend):
    name = "preview"

    def __init__(self, cost_per_audio_sec: float = 0.0, face_cascade: str = DEFAULT_FACE_CASCADE) -> None:
        if cost_per_audio_sec < 0:
            raise ValueError("cost_per_audio_sec must not be negative")
        self.cost_per_audio_sec = cost_per_audio_sec
        self.face_cascade = face_cascade
        self.faces: FaceFinder | None = None

    @classmethod
    def from_env(cls) -> PreviewBackend:
        return cls(
            cost_per_audio_sec=env_float("PREVIEW_COST_PER_AUDIO_SEC", 0.0, minimum=0.0),
            face_cascade=env_str("PREVIEW_FACE_CASCADE", DEFAULT_FACE_CASCADE),
        )

    def load(self) -> None:
        self.faces = FaceFinder(self.face_cascade)

    def _face_finder(self) -> FaceFinder:
        if self.faces is None:
            self.load()
        assert self.faces is not None
        return self.faces

    @property
    def person_counts(self) -> tuple[int, ...]:
        return (1, 2)

    def mouth_box(self, rgb: np.ndarray, width: int, height: int) -> Box:
        return locate_mouth(rgb, *output_size(width, height), self._face_finder())

    def mouth_boxes(self, job: ChunkJob, rgb: np.ndarray, width: int, height: int) -> list[Box]:
        """One mouth per speaker, in the order of `job.person_tracks`."""
        if not job.persons:
            return [self.mouth_box(rgb, width, height)]
        return locate_person_mouths(rgb, width, height, self._face_finder(),
                                    [person.box for person in job.persons])

    def render(self, job: ChunkJob, output: Path, progress: ProgressCallback,
               cancelled: threading.Event) -> RenderedChunk:
        started = time.monotonic()
        try:
            portrait = decode_image(job.image)
        except ImageDecodeError as exc:
            raise BackendError(str(exc)) from exc
        width, height = output_size(job.width, job.height)
        background = fit_image(portrait, width, height)
        boxes = self.mouth_boxes(job, portrait, width, height)
        openness = [mouth_openness(track, job.frame_count) for track in job.person_tracks]
        sway = sway_offsets(state_from_motion(background, job.motion),
                            random_steps(job.seed, job.lane, job.lane_first_frame, job.frame_count))
        keep = job.sampling.motion_frames or DEFAULT_MOTION_FRAMES
        last_frames: list[np.ndarray] = []
        total_steps = -(-job.frame_count // FRAMES_PER_STEP)
        source = self._open_source(job)
        try:
            with Mp4Writer(output, width, height, frame_count=job.frame_count) as writer:
                for step, start in enumerate(range(0, job.frame_count, FRAMES_PER_STEP), start=1):
                    if cancelled.is_set():
                        raise Cancelled()
                    stop = min(start + FRAMES_PER_STEP, job.frame_count)
                    for index in range(start, stop):
                        # A dubbed video brings its own motion; a portrait sways.
                        frame = (shifted(background, sway[index]) if source is None
                                 else fit_image(source.frame(index), width, height))
                        for box, person_openness in zip(boxes, openness, strict=True):
                            draw_mouth(frame, box, float(person_openness[index]))
                        writer.write(frame)
                        if index >= job.frame_count - keep:
                            last_frames.append(frame)
                    self._pace(started, stop / FPS, cancelled)
                    progress(ProgressEvent(step=step, total_steps=total_steps, frames_done=stop, stage="render"))
        except VideoError as exc:
            raise BackendError(str(exc)) from exc
        finally:
            if source is not None:
                source.close()
        return RenderedChunk(path=output, frame_count=job.frame_count, width=width, height=height,
                             motion=uint8_to_motion(np.stack(last_frames)))

    @staticmethod
    def _open_source(job: ChunkJob) -> SourceFrames | None:
        if job.source_video is None:
            return None
        try:
            return SourceFrames(job.source_video)
        except VideoError as exc:
            raise BackendError(str(exc)) from exc

    def _pace(self, started: float, audio_seconds_done: float, cancelled: threading.Event) -> None:
        """Wait until `cost_per_audio_sec` seconds per audio second have passed since `started`.

        The cost is the chunk's whole duration, rendering included, not an addition to it, so a
        benchmark that sets it knows exactly what the generators cost (as a GPU's time per second
        of audio is fixed) and measures only what the orchestration adds.
        """
        deadline = started + audio_seconds_done * self.cost_per_audio_sec
        while (remaining := deadline - time.monotonic()) > 0:
            if cancelled.wait(min(SLEEP_SLICE_SEC, remaining)):
                raise Cancelled()


def mouth_box(image: bytes | np.ndarray, width: int, height: int,
              face_cascade: str = DEFAULT_FACE_CASCADE) -> tuple[int, int, int, int]:
    """Where the preview draws the mouth for this portrait at this requested size.

    `image` is the uploaded file's bytes or an RGB array; the box (x0, y0, x1, y1) is in pixels of
    the rendered frame, whose size is width x height rounded down to even numbers.
    """
    rgb = decode_image(image) if isinstance(image, bytes) else image
    return locate_mouth(rgb, *output_size(width, height), FaceFinder(face_cascade)).as_tuple()




def person_mouth_boxes(image: bytes | np.ndarray, width: int, height: int,
                       boxes: list[tuple[float, float, float, float] | None],
                       face_cascade: str = DEFAULT_FACE_CASCADE) -> list[tuple[int, int, int, int]]:
    """Where the preview draws each speaker's mouth in a multi-person chunk (`boxes`: each
    speaker's face box as fractions of the image, or None for the default split), in pixels of
    the rendered frame."""
    rgb = decode_image(image) if isinstance(image, bytes) else image
    mouths = locate_person_mouths(rgb, *output_size(width, height), FaceFinder(face_cascade), boxes)
    return [mouth.as_tuple() for mouth in mouths]
