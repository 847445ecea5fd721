"""Lanes through a real Generator server: motion frames in and out, and the preview's sway carried on."""

from __future__ import annotations

import grpc
import numpy as np

from itk_common.constants import SAMPLES_PER_FRAME
from itk_common.motion import decode_motion, encode_motion
from itk_common.video import read_frames
from itk_generator.images import decode_image
from itk_generator.preview.layout import fit_image
from itk_generator.preview.motion import SWAY_MAX_PX, measure_offset
from tests.helpers.audio import speech_like

from .conftest import Chunk, collect, rpc_error

SIZE = 128
SPEECH = speech_like(6.0, pause_every_sec=10.0, seed=5)


def piece(portrait: bytes, start: int, stop: int, motion: bytes | None = None) -> Chunk:
    return Chunk(portrait, SPEECH[start * SAMPLES_PER_FRAME: stop * SAMPLES_PER_FRAME], width=SIZE, height=SIZE,
                 seed=21, lane=1, lane_first_frame=start, motion=motion)


def offsets(video: bytes, portrait: bytes, tmp_path) -> list[tuple[float, float]]:
    path = tmp_path / "piece.mp4"
    path.write_bytes(video)
    background = fit_image(decode_image(portrait), SIZE, SIZE)
    return [measure_offset(background, frame) for frame in read_frames(path)]


def test_pieces_return_motion_frames_and_continue_the_sway(generator, portrait, tmp_path) -> None:
    first = collect(generator.stub.Generate(piece(portrait, 0, 100).requests(), timeout=60))
    [summary] = first.summaries
    motion = decode_motion(first.motion)
    assert motion.shape == (9, SIZE, SIZE, 3) and summary.motion_frames == 9
    assert summary.motion_size == len(first.motion) and all(len(p.data) <= 1024 * 1024 for p in first.motion_pieces)
    first_offsets = offsets(first.video, portrait, tmp_path)
    # A lane's first piece starts still at the portrait's position, then sways (a few pixels at most).
    assert np.hypot(*first_offsets[0]) < 0.5
    assert max(np.hypot(*o) for o in first_offsets) > 0.5
    assert max(max(abs(x), abs(y)) for x, y in first_offsets) <= SWAY_MAX_PX + 0.5

    second = collect(generator.stub.Generate(piece(portrait, 100, 150, first.motion).requests(), timeout=60))
    continued = offsets(second.video, portrait, tmp_path)
    # The next piece goes on from where the first one ended, not from the portrait.
    assert np.hypot(continued[0][0] - first_offsets[-1][0], continued[0][1] - first_offsets[-1][1]) < 0.6
    restarted = offsets(collect(generator.stub.Generate(piece(portrait, 100, 150).requests(),
                                                        timeout=60)).video, portrait, tmp_path)
    assert np.hypot(*restarted[0]) < 0.5


def test_motion_frames_of_another_size_are_fitted(generator, portrait) -> None:
    other = encode_motion(np.zeros((9, 64, 96, 3), dtype=np.float16))
    reply = collect(generator.stub.Generate(piece(portrait, 100, 150, other).requests(), timeout=60))
    assert reply.summaries[0].frame_count == 50


def test_bad_motion_frames_are_refused(generator, portrait) -> None:
    for motion, words in ((b"not an array", "motion: not a .npy array"),
                          (encode_motion(np.zeros((9, 8, 8), dtype=np.float16)[..., None]), "motion: expected shape")):
        error = rpc_error(generator.stub.Generate(piece(portrait, 0, 50, motion).requests(), timeout=60))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and words in error.details()
