"""Multi-person chunks through a real Generator server: one WAV channel per person, a mouth per
speaker in the preview, and the checks on persons and channels."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np

from infinitetalk.v1 import generator_pb2
from itk_generator.preview import PreviewBackend, person_mouth_boxes
from tests.generator.conftest import Chunk, collect, rpc_error
from tests.helpers.two_persons import check_mouths_follow_their_speakers, conversation, two_person_portrait

SIZE = (320, 160)
BOXES = [(0.0, 0.0, 0.5, 1.0), (0.5, 0.0, 1.0, 1.0)]


class SinglePersonPreview(PreviewBackend):
    @property
    def person_counts(self) -> tuple[int, ...]:
        return (1,)


def persons(boxes: list[tuple[float, float, float, float] | None]) -> list[generator_pb2.Person]:
    return [generator_pb2.Person() if box is None else generator_pb2.Person(x0=box[0], y0=box[1], x1=box[2], y1=box[3])
            for box in boxes]


def test_info_reports_the_person_counts(serve) -> None:
    assert list(serve().stub.GetInfo(generator_pb2.GetInfoRequest()).person_counts) == [1, 2]
    assert list(serve(SinglePersonPreview()).stub.GetInfo(generator_pb2.GetInfoRequest()).person_counts) == [1]


def test_each_mouth_follows_its_own_track(generator, tmp_path: Path) -> None:
    image, tracks = two_person_portrait(), conversation(seconds=12.0)
    for name, boxes in (("boxes", BOXES), ("split", [None, None])):
        chunk = Chunk(image=image, samples=tracks, width=SIZE[0], height=SIZE[1], persons=persons(boxes))
        reply = collect(generator.stub.Generate(chunk.requests(), timeout=120))
        video = tmp_path / f"{name}.mp4"
        video.write_bytes(reply.video)
        mouths = person_mouth_boxes(image, *SIZE, boxes)
        assert mouths[0][2] <= SIZE[0] // 2 <= mouths[1][0], "person 1's mouth is on the left face"
        check_mouths_follow_their_speakers(video, tracks, mouths)


def test_channels_must_match_the_persons(generator) -> None:
    image, tracks = two_person_portrait(), conversation(seconds=1.0)
    three = np.concatenate([tracks, tracks[:1]])
    error = rpc_error(generator.stub.Generate(Chunk(image=image, samples=three, persons=persons(BOXES)).requests()))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "3 channel(s)" in error.details() and "2 persons" in error.details()
    mono = Chunk(image=image, samples=tracks[0], persons=persons(BOXES))
    assert "1 channel(s)" in rpc_error(generator.stub.Generate(mono.requests())).details()


def test_bad_boxes_and_one_listed_person_are_refused(generator) -> None:
    image, tracks = two_person_portrait(), conversation(seconds=1.0)
    outside = Chunk(image=image, samples=tracks, persons=persons([BOXES[0], (0.5, 0.0, 1.2, 1.0)]))
    error = rpc_error(generator.stub.Generate(outside.requests()))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "spec.persons[1] box" in error.details()
    alone = Chunk(image=image, samples=tracks[:1], persons=persons([BOXES[0]]))
    assert "got 1" in rpc_error(generator.stub.Generate(alone.requests())).details()


def test_a_single_person_backend_refuses_two(serve) -> None:
    running = serve(SinglePersonPreview())
    chunk = Chunk(image=two_person_portrait(), samples=conversation(seconds=1.0), persons=persons(BOXES))
    error = rpc_error(running.stub.Generate(chunk.requests()))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "renders 1 person(s)" in error.details() and "the 2 in spec.persons" in error.details()
