"""Two-person chunks through the generator service on the tiny InfiniteTalk model: the person
counts it serves follow its adapters, a chunk with a WAV channel per person renders end to end
(boxes or the default split), the boxes bind the voices, and bad persons are clear errors."""

from __future__ import annotations

import threading
from pathlib import Path

import grpc
import numpy as np
import pytest

from infinitetalk.v1 import common_pb2, generator_pb2
from itk_common.video import probe_video, read_frames
from itk_generator.backend import BackendError, ChunkJob, Person
from itk_generator.infinitetalk.backend import InfiniteTalkBackend
from itk_generator.infinitetalk.settings import InfiniteTalkSettings
from tests.generator.conftest import Chunk, collect, rpc_error, serve  # noqa: F401 (fixture)
from tests.helpers.two_persons import conversation, two_person_portrait

CLIP_FRAMES = 21
FRAMES = 30  # two clips: 21, then 12 new frames after 9 motion frames
SIZE = (64, 32)  # generated width x height: 4 x 2 tokens a latent frame
BOXES = [(0.05, 0.1, 0.45, 0.9), (0.55, 0.1, 0.95, 0.9)]
FAST = common_pb2.SamplingOptions(preset="fast", steps=2)


def tiny_backend(model_dir: Path, adapters: tuple[str, ...] = ()) -> InfiniteTalkBackend:
    return InfiniteTalkBackend(InfiniteTalkSettings(model_dir=model_dir, device="cpu", dtype="fp32", preset="fast",
                                                    clip_frames=CLIP_FRAMES, size=SIZE, adapters=adapters))


@pytest.fixture(scope="module")
def loaded_backend(tiny_model_dir: Path) -> InfiniteTalkBackend:
    backend = tiny_backend(tiny_model_dir)
    backend.load()
    return backend


def persons(boxes: list[tuple[float, float, float, float] | None]) -> list[generator_pb2.Person]:
    return [generator_pb2.Person() if box is None else generator_pb2.Person(x0=box[0], y0=box[1], x1=box[2], y1=box[3])
            for box in boxes]


def tracks() -> np.ndarray:
    return conversation(seconds=FRAMES / 25)


def render(running, boxes: list, samples: np.ndarray, tmp_path: Path, name: str) -> np.ndarray:
    chunk = Chunk(image=two_person_portrait(), samples=samples, width=96, height=48, frame_count=FRAMES,
                  sampling=FAST, persons=persons(boxes))
    reply = collect(running.stub.Generate(chunk.requests(), timeout=600))
    video = tmp_path / f"{name}.mp4"
    video.write_bytes(reply.video)
    probed = probe_video(video)
    assert (probed.frame_count, probed.width, probed.height) == (FRAMES, 96, 48)
    return np.stack(list(read_frames(video)))


def test_person_counts_follow_the_adapters(tiny_model_copy: Path) -> None:
    assert tiny_backend(tiny_model_copy).person_counts == (1, 2)
    assert tiny_backend(tiny_model_copy, ("single",)).person_counts == (1,)
    assert tiny_backend(tiny_model_copy, ("multi",)).person_counts == (2,)
    (tiny_model_copy / "InfiniteTalk" / "single" / "infinitetalk.safetensors").unlink()
    assert tiny_backend(tiny_model_copy).person_counts == (2,)
    with pytest.raises(BackendError, match=r"INFINITETALK_ADAPTERS.*single-person adapter"):
        _ = tiny_backend(tiny_model_copy, ("single",)).person_counts


def test_two_person_chunks_render_and_the_boxes_bind_the_voices(serve, loaded_backend: InfiniteTalkBackend,  # noqa: F811
                                                               tmp_path: Path) -> None:
    running = serve(backend=loaded_backend)
    assert list(running.stub.GetInfo(generator_pb2.GetInfoRequest()).person_counts) == [1, 2]
    samples = tracks()
    boxed = render(running, BOXES, samples, tmp_path, "boxes")
    assert loaded_backend.pipeline.dit.adapter == "multi"
    swapped = render(running, BOXES[::-1], samples, tmp_path, "swapped")
    assert not np.array_equal(boxed, swapped), "swapping the persons' boxes must change who speaks"
    render(running, [None, None], samples, tmp_path, "split")  # no boxes: the reference's default split
    # A one-person chunk on the same generator switches back to the single-person adapter.
    single = Chunk(image=two_person_portrait(), samples=samples.sum(axis=0), width=96, height=48,
                   frame_count=FRAMES, sampling=FAST)
    collect(running.stub.Generate(single.requests(), timeout=600))
    assert loaded_backend.pipeline.dit.adapter == "single"


def test_a_box_too_small_for_a_token_is_refused(serve, loaded_backend: InfiniteTalkBackend) -> None:  # noqa: F811
    running = serve(backend=loaded_backend)
    tiny_box = (0.6, 0.5, 0.61, 0.52)  # inside one 16-pixel cell, but not on its sampled pixel
    chunk = Chunk(image=two_person_portrait(), samples=tracks(), width=96, height=48, frame_count=FRAMES,
                  sampling=FAST, persons=persons([BOXES[0], tiny_box]))
    error = rpc_error(running.stub.Generate(chunk.requests(), timeout=600))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "person 2" in error.details() and "larger box" in error.details()


def test_three_persons_and_missing_tracks_are_backend_errors(loaded_backend: InfiniteTalkBackend,
                                                             tmp_path: Path) -> None:
    samples = tracks()
    base = {"job_id": "j", "chunk_index": 0, "image": two_person_portrait(), "audio": samples.sum(axis=0),
            "frame_count": FRAMES, "width": 96, "height": 48}
    three = ChunkJob(**base, persons=(Person(), Person(), Person()),
                     person_audio=np.concatenate([samples, samples[:1]]))
    with pytest.raises(BackendError, match="renders 2 persons, the chunk has 3"):
        loaded_backend.render(three, tmp_path / "out.mp4", lambda _e: None, threading.Event())
    partly = ChunkJob(**base, persons=(Person(BOXES[0]), Person()), person_audio=samples)
    with pytest.raises(BackendError, match="box for every person or for none"):
        loaded_backend.render(partly, tmp_path / "out.mp4", lambda _e: None, threading.Event())
    assert list(tmp_path.iterdir()) == []

