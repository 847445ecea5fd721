"""Rendering chunks through a real Generator server with the preview backend."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from infinitetalk.v1 import common_pb2
from itk_common.constants import MAX_PIECE_BYTES, frames_for_samples
from itk_common.video import probe_video
from itk_generator.preview import mouth_box
from itk_generator.preview.mouth import frame_loudness_db
from tests.helpers.sync import best_lag, lagged_correlation, mouth_openness_series

from .conftest import SAMPLE_PORTRAIT, Chunk, collect, face_like_portrait


def render(generator, chunk: Chunk, tmp_path: Path, **request_options) -> tuple[Path, object]:
    reply = collect(generator.stub.Generate(chunk.requests(**request_options), timeout=60))
    path = tmp_path / f"chunk-{chunk.chunk_index}.mp4"
    path.write_bytes(reply.video)
    return path, reply


@pytest.mark.parametrize("audio_first", [False, True])
def test_chunk_has_exact_frames_size_and_summary(generator, portrait, speech, tmp_path, audio_first):
    chunk = Chunk(portrait, speech, width=320, height=240)
    path, reply = render(generator, chunk, tmp_path, audio_first=audio_first)

    frames = frames_for_samples(len(speech))
    info = probe_video(path)
    assert (info.frame_count, info.width, info.height, info.codec) == (frames, 320, 240, "h264")
    [summary] = reply.summaries
    assert summary.backend == "preview"
    assert (summary.frame_count, summary.width, summary.height) == (frames, 320, 240)
    assert summary.duration_sec == pytest.approx(frames / 25)
    assert summary.video_size == len(reply.video) == path.stat().st_size
    assert summary.seconds_spent > 0


def test_progress_is_monotonic_and_reaches_the_frame_count(generator, portrait, speech, tmp_path):
    _, reply = render(generator, Chunk(portrait, speech), tmp_path)
    frames = frames_for_samples(len(speech))
    done = [event.frames_done for event in reply.progress]
    steps = [event.step for event in reply.progress]
    assert len(reply.progress) == -(-frames // 25)
    assert done == sorted(done) and done[-1] == frames
    assert steps == list(range(1, len(steps) + 1))
    assert {event.total_steps for event in reply.progress} == {len(steps)}


def test_odd_sizes_round_down_to_even(generator, portrait, speech, tmp_path):
    path, reply = render(generator, Chunk(portrait, speech[:6400], width=201, height=99), tmp_path)
    assert (probe_video(path).width, probe_video(path).height) == (200, 98)
    assert (reply.summaries[0].width, reply.summaries[0].height) == (200, 98)


def test_large_video_streams_in_pieces_of_at_most_one_mib(generator, speech, tmp_path):
    # Noise barely compresses, so even one second at this size is several MiB.
    noise = np.random.default_rng(0).integers(0, 256, (1536, 1536, 3), dtype=np.uint8)
    image = cv2.imencode(".png", noise)[1].tobytes()
    path, reply = render(generator, Chunk(image, speech[:8000], width=1536, height=1536), tmp_path)
    assert len(reply.pieces) > 1
    assert all(len(piece.data) <= MAX_PIECE_BYTES for piece in reply.pieces)
    assert [piece.last for piece in reply.pieces] == [False] * (len(reply.pieces) - 1) + [True]
    assert probe_video(path).frame_count == 13


def test_temporary_files_are_removed(generator, portrait, speech, tmp_path):
    render(generator, Chunk(portrait, speech[:8000]), tmp_path)
    assert list(generator.work_dir.iterdir()) == []


def portraits() -> list:
    drawn = pytest.param(face_like_portrait(), id="drawn")
    sample = pytest.param(SAMPLE_PORTRAIT, id="astronaut", marks=pytest.mark.skipif(
        not SAMPLE_PORTRAIT.exists(), reason="assets/sample/portrait.png not present"))
    return [drawn, sample]


@pytest.mark.parametrize("image", portraits())
def test_mouth_moves_in_sync_with_loudness(generator, speech, tmp_path, image):
    image = image.read_bytes() if isinstance(image, Path) else image
    path, _ = render(generator, Chunk(image, speech, width=384, height=384), tmp_path)

    openness = mouth_openness_series(path, mouth_box(image, 384, 384))
    loudness = frame_loudness_db(speech, frames_for_samples(len(speech)))
    assert len(openness) == len(loudness)
    assert best_lag(openness, loudness, max_lag=10) == 0
    assert lagged_correlation(openness, loudness, 0) > 0.9


def test_a_chunk_later_in_a_job_renders_the_same_way(generator, portrait, speech, tmp_path):
    """Chunks of one job are independent requests: index and job id do not change the picture."""
    first, _ = render(generator, Chunk(portrait, speech[:9600], chunk_index=0), tmp_path)
    later, _ = render(generator, Chunk(portrait, speech[:9600], chunk_index=7), tmp_path)
    assert first.read_bytes() == later.read_bytes()


def test_sampling_options_are_accepted(generator, portrait, speech, tmp_path):
    sampling = common_pb2.SamplingOptions(preset="fast", steps=8, resolution="480p", motion_frames=9)
    _, reply = render(generator, Chunk(portrait, speech[:6400], sampling=sampling), tmp_path)
    assert reply.summaries[0].frame_count == 10
