"""One pass over a finished video that fills its QualityReport.

Per frame: dlib landmarks (a HOG detection every DETECT_EVERY frames, near the last face when
there was one, the landmarks of every frame from the latest detection's box), two mouth-openness
signals, and the step from the frame before (mean absolute difference of the decoded luma, in grey
levels). Every COLOUR_EVERY frames the mean colours; every IDENTITY_EVERY frames a face embedding.
Then the video is cut into segments of about SEGMENT_SEC and each gets its lip sync, identity and
colour.

The two openness signals, and why two: "lips" is the inner-lip gap of the 68 landmarks (in eye
distances), what the landmark model was trained to find on real lips. "mouth-dark" is the share of
the mouth region (under the nose to the chin, between the mouth corners) darker than half the
face's median brightness: an open mouth shows its dark inside. Landmarks do not move for a mouth
that is only painted on (the preview backend draws a dark ellipse; its landmarks stay where the
portrait's closed lips are), while the dark area does. Each segment reports the signal whose best
lag correlates better and names it.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from infinitetalk.v1 import quality_pb2
from itk_common.constants import SAMPLE_RATE

from .colour import delta_e, fit_cover, mean_lab
from .faces import Face, FaceModels
from .media import MediaError, picture, sound, video_frames, video_rate
from .sync import SyncFit, best_lag, loudness_db

SEGMENT_SEC = 10.0
DETECT_EVERY = 10
COLOUR_EVERY = 5
IDENTITY_EVERY = 50
DARK_SHARE_OF_MEDIAN = 0.5
LARGEST_STEPS = 3
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class AssessOptions:
    """What the caller knows about how the video was made (frame numbers in the video)."""

    boundary_frames: Sequence[int] = ()
    seam_frames: Sequence[int] = ()
    fade_frames: int = 0
    segment_sec: float = SEGMENT_SEC


@dataclass
class Measurements:
    """Per-frame measurements of one video; NaN where no face was found."""

    lips: list[float] = field(default_factory=list)
    dark: list[float] = field(default_factory=list)
    steps: list[float] = field(default_factory=list)
    face_lab: dict[int, np.ndarray] = field(default_factory=dict)
    frame_lab: dict[int, np.ndarray] = field(default_factory=dict)
    identity: dict[int, float] = field(default_factory=dict)
    fps: float = 0.0
    size: tuple[int, int] = (0, 0)
    reference_label: str = ""
    reference_face_lab: np.ndarray | None = None
    reference_frame_lab: np.ndarray | None = None
    seconds: float = 0.0

    @property
    def frame_count(self) -> int:
        return len(self.steps)


class _Reference:
    def __init__(self, rgb: np.ndarray, models: FaceModels, label: str) -> None:
        self.rgb = rgb
        self.label = label
        self.face = models.find(rgb)
        self.embedding = None if self.face is None else models.embedding(rgb, self.face)
        height, width = rgb.shape[:2]
        self.face_lab = None if self.face is None else mean_lab(rgb, self.face.face_region(height, width))
        self._frame_lab: dict[tuple[int, int], np.ndarray] = {}

    def frame_lab(self, width: int, height: int) -> np.ndarray:
        """The mean colour of the picture fitted to the video's size, as the generators fit it."""
        if (width, height) not in self._frame_lab:
            self._frame_lab[width, height] = mean_lab(fit_cover(self.rgb, width, height))
        return self._frame_lab[width, height]


def _dark_share(rgb: np.ndarray, face: Face) -> float:
    height, width = rgb.shape[:2]
    left, top, right, bottom = face.mouth_region(height, width)
    f_left, f_top, f_right, f_bottom = face.face_region(height, width)
    mouth = rgb[top:bottom, left:right].astype(np.float32) @ LUMA
    skin = rgb[f_top:f_bottom, f_left:f_right].astype(np.float32) @ LUMA
    if mouth.size == 0 or skin.size == 0:
        return float("nan")
    return float((mouth < DARK_SHARE_OF_MEDIAN * np.median(skin)).mean())


def measure(video: Path, models: FaceModels, reference_data: bytes | None = None,
            cancelled: Callable[[], bool] = lambda: False) -> Measurements:
    """The pass over the frames (the costly part: decoding, faces, colours)."""
    started = time.monotonic()
    frames = Measurements(fps=video_rate(video))
    reference: _Reference | None = None
    if reference_data is not None:
        reference = _Reference(picture(reference_data), models, "portrait")
    box: tuple[int, int, int, int] | None = None
    previous: np.ndarray | None = None
    size = (0, 0)
    for index, (rgb, luma) in enumerate(video_frames(video)):
        if index % 25 == 0 and cancelled():
            raise InterruptedError("quality assessment cancelled")
        height, width = rgb.shape[:2]
        size = (width, height)
        if reference is None:
            reference = _Reference(rgb, models, "first frame")
        grey = luma.astype(np.int16)
        frames.steps.append(0.0 if previous is None else float(np.abs(grey - previous).mean()))
        previous = grey
        if box is None and index % DETECT_EVERY == 0:
            box = models.detect(rgb)
        elif box is not None and index % DETECT_EVERY == 0:
            box = models.detect_near(rgb, box) or models.detect(rgb)
        face = None if box is None else models.landmarks(rgb, box)
        frames.lips.append(float("nan") if face is None else face.lip_gap())
        frames.dark.append(float("nan") if face is None else _dark_share(rgb, face))
        if index % COLOUR_EVERY == 0:
            frames.frame_lab[index] = mean_lab(rgb)
            if face is not None:
                frames.face_lab[index] = mean_lab(rgb, face.face_region(height, width))
        if index % IDENTITY_EVERY == 0 and face is not None and reference.embedding is not None:
            frames.identity[index] = float(np.linalg.norm(models.embedding(rgb, face) - reference.embedding))
    if reference is None:
        raise MediaError("the video has no frames")
    frames.size = size
    frames.reference_label = reference.label
    frames.reference_face_lab = reference.face_lab
    frames.reference_frame_lab = reference.frame_lab(*size)
    frames.seconds = time.monotonic() - started
    return frames


def _within(values: dict[int, float] | dict[int, np.ndarray], first: int, stop: int) -> list:
    return [value for index, value in values.items() if first <= index < stop]


def _slope_per_min(times_sec: list[float], values: list[float]) -> float | None:
    if len(values) < 2:
        return None
    return float(np.polyfit(np.asarray(times_sec) / 60.0, np.asarray(values), 1)[0])


def _segment_bounds(frame_count: int, fps: float, segment_sec: float) -> list[tuple[int, int]]:
    count = max(1, round(frame_count / (segment_sec * fps)))
    edges = np.linspace(0, frame_count, count + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges) if b > a]


def _sync(lips: np.ndarray, dark: np.ndarray, loudness: np.ndarray, first: int,
          stop: int) -> tuple[SyncFit | None, str]:
    fits = {name: best_lag(signal, loudness, first, stop) for name, signal in (("lips", lips), ("mouth-dark", dark))}
    usable = {name: fit for name, fit in fits.items() if fit is not None}
    if not usable:
        return None, ""
    name = max(usable, key=lambda key: usable[key].correlation)
    return usable[name], name


def _steps(report: quality_pb2.QualityReport, steps: np.ndarray, options: AssessOptions) -> None:
    count = len(steps)
    special = np.zeros(count, dtype=bool)
    special[0] = True
    for frame in options.boundary_frames:
        if 0 < frame < count:
            special[frame] = True
    for frame in options.seam_frames:
        special[max(0, frame - options.fade_frames):min(count, frame + options.fade_frames + 1)] = True
    inside = steps[~special]
    p99 = float(np.percentile(inside, 99)) if inside.size else 0.0
    report.step_p99 = p99

    def add(frame: int, kind: str) -> float:
        step = float(steps[frame])
        report.steps.add(frame=frame, kind=kind, step=step, ratio_to_p99=step / p99 if p99 > 0 else 0.0)
        return step

    # A seam's step is the largest one across its cross-fade.
    for frame in sorted(set(options.seam_frames)):
        if 0 < frame < count:
            low, high = max(1, frame - options.fade_frames), min(count, frame + options.fade_frames + 1)
            worst = low + int(np.argmax(steps[low:high]))
            report.max_seam_step = max(report.max_seam_step, add(worst, "seam"))
    for frame in sorted(set(options.boundary_frames) - set(options.seam_frames)):
        if 0 < frame < count:
            report.max_boundary_step = max(report.max_boundary_step, add(frame, "boundary"))
    listed = {step.frame for step in report.steps}
    order = np.argsort(steps)[::-1]
    for frame in [int(f) for f in order if f > 0 and int(f) not in listed][:LARGEST_STEPS]:
        add(frame, "largest")


def assess(video: Path, *, audio: Path | None = None, reference: bytes | None = None,
           options: AssessOptions | None = None, models: FaceModels | None = None,
           cancelled: Callable[[], bool] = lambda: False) -> quality_pb2.QualityReport:
    """The report of `video` against `audio` (default: the video's own sound track) and the
    `reference` picture (default: the video's first frame). Raises MediaError for unreadable input."""
    started = time.monotonic()
    samples = sound(audio or video)
    measured = measure(video, models or FaceModels(), reference, cancelled)
    report = summarise(measured, samples, options or AssessOptions())
    report.compute_sec = time.monotonic() - started
    return report


def summarise(measured: Measurements, samples: np.ndarray, options: AssessOptions) -> quality_pb2.QualityReport:
    """The report from the frames' measurements and the sound (16 kHz mono)."""
    fps, frame_count = measured.fps, measured.frame_count
    loudness = loudness_db(samples, max(frame_count, -(-len(samples) * round(fps) // SAMPLE_RATE)))
    lips, dark = np.asarray(measured.lips), np.asarray(measured.dark)
    report = quality_pb2.QualityReport(
        state="ready", frame_count=frame_count, fps=fps, video_duration_sec=frame_count / fps,
        audio_duration_sec=len(samples) / SAMPLE_RATE, reference=measured.reference_label,
        face_share=float((~np.isnan(lips)).mean()) if frame_count else 0.0, compute_sec=measured.seconds,
    )
    mids, identities, face_colours, frame_colours = [], [], [], []
    for first, stop in _segment_bounds(frame_count, fps, options.segment_sec):
        segment = report.segments.add(start_sec=first / fps, end_sec=stop / fps,
                                      max_step=float(max(measured.steps[max(first, 1):stop], default=0.0)),
                                      face_share=float((~np.isnan(lips[first:stop])).mean()))
        mid = (first + stop) / 2 / fps
        fit, signal = _sync(lips, dark, loudness, first, stop)
        if fit is not None:
            segment.sync_lag_frames, segment.sync_correlation, segment.sync_signal = (
                fit.lag_frames, fit.correlation, signal)
        distances = _within(measured.identity, first, stop)
        if distances:
            segment.identity_distance = float(np.mean(distances))
            mids.append(mid)
            identities.append(segment.identity_distance)
        faces = _within(measured.face_lab, first, stop)
        if faces and measured.reference_face_lab is not None:
            segment.face_colour_delta_e = delta_e(np.mean(faces, axis=0), measured.reference_face_lab)
            face_colours.append((mid, segment.face_colour_delta_e))
        whole = _within(measured.frame_lab, first, stop)
        if whole and measured.reference_frame_lab is not None:
            segment.frame_colour_delta_e = delta_e(np.mean(whole, axis=0), measured.reference_frame_lab)
            frame_colours.append(segment.frame_colour_delta_e)
    _headline(report, mids, identities, face_colours, frame_colours)
    _steps(report, np.asarray(measured.steps), options)
    return report


def _headline(report: quality_pb2.QualityReport, mids: list[float], identities: list[float],
              face_colours: list[tuple[float, float]], frame_colours: list[float]) -> None:
    """Over the whole video: the median lag, the mean correlation and identity distance, the
    largest (worst) colour differences, and the trends per minute."""
    synced = [s for s in report.segments if s.HasField("sync_lag_frames")]
    if synced:
        report.sync_lag_frames = round(float(np.median([s.sync_lag_frames for s in synced])))
        report.sync_correlation = float(np.mean([s.sync_correlation for s in synced]))
    if identities:
        report.identity_distance = float(np.mean(identities))
        trend = _slope_per_min(mids, identities)
        if trend is not None:
            report.identity_trend_per_min = trend
    if face_colours:
        report.face_colour_delta_e = max(value for _, value in face_colours)
        trend = _slope_per_min([t for t, _ in face_colours], [value for _, value in face_colours])
        if trend is not None:
            report.face_colour_trend_per_min = trend
    if frame_colours:
        report.frame_colour_delta_e = max(frame_colours)
