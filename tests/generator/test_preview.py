"""The preview backend on its own: framing, face and mouth placement, frame counts, cancellation."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from itk_common.constants import SAMPLES_PER_FRAME
from itk_common.video import probe_video, read_frames
from itk_generator.backend import BackendError, Cancelled, ChunkJob
from itk_generator.images import decode_image
from itk_generator.preview import PreviewBackend, mouth_box
from itk_generator.preview.layout import FaceFinder, fit_image
from itk_generator.preview.mouth import mouth_openness

from .conftest import SAMPLE_PORTRAIT

needs_sample = pytest.mark.skipif(not SAMPLE_PORTRAIT.exists(), reason="assets/sample/portrait.png not present")


@pytest.fixture(scope="module")
def backend() -> PreviewBackend:
    loaded = PreviewBackend()
    loaded.load()
    return loaded


def job(image: bytes, samples: np.ndarray, frames: int | None = None, size: tuple[int, int] = (96, 96)) -> ChunkJob:
    count = frames if frames is not None else -(-len(samples) // SAMPLES_PER_FRAME)
    return ChunkJob("job", 0, image, samples, count, *size)


@needs_sample
def test_finds_the_face_in_the_astronaut_portrait():
    face = FaceFinder().find(decode_image(SAMPLE_PORTRAIT.read_bytes()))
    assert face is not None
    # Her face spans roughly x 170-280, y 60-170 of the 512 x 512 picture.
    assert 150 < (face.x0 + face.x1) / 2 < 300 and 50 < (face.y0 + face.y1) / 2 < 180


@needs_sample
def test_mouth_sits_in_the_lower_part_of_the_face():
    image = SAMPLE_PORTRAIT.read_bytes()
    face = FaceFinder().find(decode_image(image))
    x0, y0, x1, y1 = mouth_box(image, 512, 512)
    assert face.x0 < x0 < x1 < face.x1
    assert face.y0 + (face.y1 - face.y0) / 2 < (y0 + y1) / 2 < face.y1
    # The same portrait framed as a tall 256 x 448 shot: the box follows the resize and crop.
    tall = mouth_box(image, 256, 448)
    assert abs((tall[0] + tall[2]) / 2 - ((x0 + x1) / 2 * 448 / 512 - (448 - 256) / 2)) <= 2


def test_without_a_face_the_mouth_goes_to_the_lower_middle():
    blank = np.full((300, 200, 3), 128, np.uint8)
    x0, y0, x1, y1 = mouth_box(blank, 200, 300)
    assert abs((x0 + x1) / 2 - 100) <= 1
    assert 0.6 * 300 < (y0 + y1) / 2 < 0.85 * 300


def test_fit_covers_and_crops_the_centre():
    wide = np.zeros((100, 400, 3), np.uint8)
    wide[:, 150:250] = 255  # a white centre band
    fitted = fit_image(wide, 100, 100)
    assert fitted.shape == (100, 100, 3)
    assert fitted.min() == 255  # only the centre band remains after cropping the sides


def test_openness_follows_loudness():
    quiet, medium, loud = (np.full(SAMPLES_PER_FRAME, level, np.float32) for level in (0.0, 0.03, 0.4))
    openness = mouth_openness(np.concatenate([quiet, medium, loud]), 3)
    assert openness[0] == 0.0 and 0.0 < openness[1] < openness[2] == 1.0


@pytest.mark.parametrize("frames", [1, 25, 26, 51])
def test_writes_exactly_the_frame_count(backend, frames, tmp_path):
    image = cv2.imencode(".png", np.full((80, 60, 3), 90, np.uint8))[1].tobytes()
    samples = np.zeros(frames * SAMPLES_PER_FRAME - 100, np.float32)
    events = []
    rendered = backend.render(job(image, samples, frames), tmp_path / "out.mp4", events.append,
                              threading.Event())
    assert probe_video(rendered.path).frame_count == rendered.frame_count == frames
    assert [event.frames_done for event in events][-1] == frames


def test_mouth_height_is_proportional_to_openness(backend, tmp_path):
    image = cv2.imencode(".png", np.full((200, 200, 3), 200, np.uint8))[1].tobytes()
    levels = np.repeat([0.0, 0.02, 0.06, 0.5], SAMPLES_PER_FRAME).astype(np.float32)
    rendered = backend.render(job(image, levels, size=(200, 200)), tmp_path / "out.mp4", lambda _: None,
                              threading.Event())
    x0, y0, x1, y1 = mouth_box(image, 200, 200)
    column = [(frame[y0:y1, (x0 + x1) // 2].mean(axis=1) < 60).sum() for frame in read_frames(rendered.path)]
    expected = mouth_openness(levels, 4) * ((y1 - y0) // 2 - 1) * 2 + 1
    assert np.allclose(column, expected, atol=2)


def test_cancelled_render_stops_mid_step_and_leaves_no_file(tmp_path):
    # The first step alone would take 5 s of artificial cost; cancelling wakes it at once.
    slow = PreviewBackend(cost_per_audio_sec=5.0)
    slow.load()
    cancelled = threading.Event()
    image = cv2.imencode(".png", np.full((64, 64, 3), 90, np.uint8))[1].tobytes()
    events = []
    timer = threading.Timer(0.2, cancelled.set)
    timer.start()
    with pytest.raises(Cancelled):
        slow.render(job(image, np.zeros(16000 * 4, np.float32)), tmp_path / "out.mp4", events.append, cancelled)
    timer.join()
    assert events == []
    assert not (tmp_path / "out.mp4").exists()


def test_undecodable_image_is_a_backend_error(backend, tmp_path):
    with pytest.raises(BackendError):
        backend.render(job(b"nope", np.zeros(640, np.float32)), tmp_path / "out.mp4", lambda _: None,
                       threading.Event())


def test_negative_cost_is_refused():
    with pytest.raises(ValueError):
        PreviewBackend(cost_per_audio_sec=-1)


def test_cost_setting_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("PREVIEW_COST_PER_AUDIO_SEC", "0.5")
    assert PreviewBackend.from_env().cost_per_audio_sec == 0.5
    assert Path(PreviewBackend.from_env().face_cascade).name == "haarcascade_frontalface_default.xml"


def test_a_piece_continues_the_sway_where_the_previous_one_left_it():
    """The sway state read back from a piece's motion frames (as float16, like the RPC carries
    them) puts the next piece's first frame within 0.1 px of the uninterrupted sway; phase
    correlation alone was up to 0.5 px off, a visible jump at the piece boundary."""
    from itk_generator.preview.motion import SwayState, random_steps, shifted, state_from_motion, sway_offsets

    portrait = cv2.cvtColor(cv2.imread(str(SAMPLE_PORTRAIT)), cv2.COLOR_BGR2RGB)
    errors = []
    for seed in range(6):
        steps = random_steps(seed, 0, 0, 160)
        uninterrupted = sway_offsets(SwayState(), steps)
        cut = 150
        frames = np.stack([shifted(portrait, uninterrupted[i]) for i in range(cut - 9, cut)])
        motion = (frames.astype(np.float32) / 127.5 - 1.0).astype(np.float16)
        continued = sway_offsets(state_from_motion(portrait, motion), steps[cut:cut + 1])[0]
        errors.append(float(np.abs(continued - uninterrupted[cut]).max()))
    assert max(errors) < 0.1, errors
