"""The quality report, proved on videos made to have a known answer."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from itk_common.constants import SAMPLES_PER_FRAME
from itk_common.quality.assess import AssessOptions, Measurements, assess, measure, summarise
from itk_common.quality.faces import SAME_PERSON_DISTANCE, FaceModels
from itk_common.quality.report import report_from_json, report_json
from itk_common.quality.sync import best_lag, loudness_db
from itk_common.wav import encode_wav
from tests.helpers.faces import mux_sound, other_face, portrait, speech, write_talking_video

SECONDS = 8.0


@pytest.fixture(scope="module")
def models() -> FaceModels:
    return FaceModels()


@pytest.fixture(scope="module")
def samples() -> np.ndarray:
    return speech(SECONDS)


@pytest.fixture(scope="module")
def reference() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(portrait()).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def talking(tmp_path_factory: pytest.TempPathFactory, samples: np.ndarray, models: FaceModels) -> Path:
    path = tmp_path_factory.mktemp("talking") / "talking.mp4"
    write_talking_video(path, samples, models)
    return path


def delayed(samples: np.ndarray, frames: int) -> np.ndarray:
    """The sound `frames` video frames later (earlier when negative)."""
    if frames >= 0:
        return np.concatenate([np.zeros(frames * SAMPLES_PER_FRAME, dtype=samples.dtype), samples])
    return samples[-frames * SAMPLES_PER_FRAME:]


@pytest.fixture(scope="module")
def measured(talking: Path, reference: bytes, models: FaceModels) -> Measurements:
    return measure(talking, models, reference)


@pytest.mark.parametrize("shift", [-3, -2, -1, 0, 1, 2, 3])
def test_sound_shifted_by_k_frames_reports_lag_k(measured: Measurements, samples: np.ndarray,
                                                   shift: int) -> None:
    sound = delayed(samples, shift)
    report = summarise(measured, sound, AssessOptions(segment_sec=4.0))
    assert report.sync_lag_frames == shift
    assert report.sync_correlation > 0.8
    assert [segment.sync_lag_frames for segment in report.segments] == [shift, shift]
    # The landmarks alone (the inner-lip gap) give the same lag: the mouth really opens.
    lips = np.asarray(measured.lips)
    fit = best_lag(lips, loudness_db(sound, len(lips)), 0, len(lips))
    assert fit is not None and fit.lag_frames == shift and fit.correlation > 0.8


def test_sound_track_of_the_video_itself(tmp_path: Path, talking: Path, samples: np.ndarray, reference: bytes,
                                         models: FaceModels) -> None:
    """`assess` reads the MP4's own AAC track when no audio file is given (the job's result)."""
    with_sound = tmp_path / "with-sound.mp4"
    mux_sound(talking, delayed(samples, 2)[: len(samples)], with_sound)
    report = assess(with_sound, reference=reference, models=models)
    assert report.sync_lag_frames == 2
    assert report.audio_duration_sec == pytest.approx(SECONDS, abs=0.05)


def test_report_of_a_faithful_video(talking: Path, samples: np.ndarray, reference: bytes,
                                    models: FaceModels, tmp_path: Path) -> None:
    audio = tmp_path / "speech.wav"
    audio.write_bytes(encode_wav(samples))
    report = assess(talking, audio=audio, reference=reference, models=models,
                    options=AssessOptions(boundary_frames=[81], segment_sec=4.0))
    assert report.state == "ready" and report.reference == "portrait"
    assert report.frame_count == len(report.segments) * 100 == 200
    assert report.video_duration_sec == pytest.approx(SECONDS)
    assert report.audio_duration_sec == pytest.approx(SECONDS)
    assert report.face_share == 1.0
    assert report.identity_distance < SAME_PERSON_DISTANCE
    assert report.face_colour_delta_e < 5 and report.frame_colour_delta_e < 3
    assert next(step.kind for step in report.steps) == "boundary" and report.steps[0].frame == 81
    assert report.step_p99 > 0
    assert report_from_json(report_json(report)) == report


def test_gradual_colour_shift_reports_rising_drift(tmp_path: Path, samples: np.ndarray, reference: bytes,
                                                  models: FaceModels) -> None:
    frame_count = round(SECONDS * 25)

    def warmer(index: int, rgb: np.ndarray) -> np.ndarray:
        # Up to +40 red and -20 blue at the end, growing evenly.
        amount = index / (frame_count - 1)
        shifted = rgb.astype(np.float32) + amount * np.array([40.0, 0.0, -20.0])
        return np.clip(shifted, 0, 255).astype(np.uint8)

    path = tmp_path / "drift.mp4"
    write_talking_video(path, samples, models, edit=warmer)
    report = assess(path, audio=_wav(tmp_path, samples), reference=reference,
                    models=models, options=AssessOptions(segment_sec=2.0))
    faces = [segment.face_colour_delta_e for segment in report.segments]
    frames = [segment.frame_colour_delta_e for segment in report.segments]
    assert len(faces) == 4
    assert all(a < b for a, b in itertools.pairwise(faces)), faces
    assert all(a < b for a, b in itertools.pairwise(frames)), frames
    assert report.face_colour_trend_per_min > 0
    assert faces[-1] > faces[0] + 5


def test_spliced_face_reports_identity_drop(tmp_path: Path, samples: np.ndarray, reference: bytes,
                                            models: FaceModels) -> None:
    base = portrait()
    face = models.find(base)
    assert face is not None
    left, top, right, _bottom = face.box
    margin = (right - left) // 3
    side = right - left + 2 * margin
    stranger = other_face(side)

    def splice(index: int, rgb: np.ndarray) -> np.ndarray:
        if 100 <= index < 150:  # the third of four 2-second segments
            rgb = rgb.copy()
            y0, x0 = max(0, top - margin), left - margin
            rgb[y0:y0 + side, x0:x0 + side] = stranger[: rgb.shape[0] - y0, : rgb.shape[1] - x0]
        return rgb

    path = tmp_path / "spliced.mp4"
    write_talking_video(path, samples, models, edit=splice)
    report = assess(path, audio=_wav(tmp_path, samples), reference=reference, models=models,
                    options=AssessOptions(segment_sec=2.0))
    distances = [segment.identity_distance for segment in report.segments]
    assert distances[2] > SAME_PERSON_DISTANCE, distances
    assert max(distances[:2] + distances[3:]) < SAME_PERSON_DISTANCE, distances


def _wav(folder: Path, samples: np.ndarray) -> Path:
    path = folder / "speech.wav"
    path.write_bytes(encode_wav(samples))
    return path
