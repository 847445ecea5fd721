"""The preview backend's own output is in sync: its report says lag 0, on the mouth-dark signal."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from itk_common.constants import frames_for_samples
from itk_common.quality.assess import AssessOptions, measure, summarise
from itk_common.quality.faces import FaceModels
from itk_common.quality.sync import best_lag, loudness_db
from itk_generator.backend import ChunkJob
from itk_generator.preview.backend import PreviewBackend
from tests.helpers.faces import portrait, speech


def test_preview_output_reports_lag_zero(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.fromarray(portrait()).save(buffer, format="PNG")
    audio = speech(8.0)
    height, width = portrait().shape[:2]
    job = ChunkJob("job-quality", 0, buffer.getvalue(), audio, frames_for_samples(len(audio)), width, height)
    video = tmp_path / "preview.mp4"
    PreviewBackend().render(job, video, lambda event: None, threading.Event())

    measured = measure(video, FaceModels(), buffer.getvalue())
    report = summarise(measured, audio, AssessOptions(segment_sec=4.0))
    assert report.face_share > 0.95
    assert report.sync_lag_frames == 0
    assert report.sync_correlation > 0.8
    assert {segment.sync_signal for segment in report.segments} == {"mouth-dark"}
    # What the report does not claim: the drawn ellipse leaves the landmarks' lips closed, so the
    # inner-lip gap does not follow the sound (see itk_common.quality.assess).
    lips = np.asarray(measured.lips)
    fit = best_lag(lips, loudness_db(audio, len(lips)), 0, len(lips))
    assert fit is None or fit.correlation < 0.5
