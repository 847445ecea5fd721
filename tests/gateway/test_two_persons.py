"""Two people talking through the gateway: JSON and multipart requests, faces as boxes, the job
view, the video (each mouth follows its own speaker, seams only in common silence) and clear 400s."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from infinitetalk.v1 import gateway_pb2, gateway_pb2_grpc
from itk_common.constants import SAMPLE_RATE
from itk_common.grpc_server import insecure_channel
from itk_common.streaming import data_pieces
from itk_gateway.server import Gateway
from itk_generator.preview import person_mouth_boxes
from tests.gateway.conftest import post_json
from tests.helpers.audio import encode_audio
from tests.helpers.file_server import file_server
from tests.helpers.rest import call, wait_for_job
from tests.helpers.services import start_generator
from tests.helpers.two_persons import (
    check_mouths_follow_their_speakers,
    common_silences,
    conversation,
    two_person_portrait,
)

SIZE = (256, 128)
SECONDS = 24.0


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def two_person_job(image: bytes, tracks, **fields: object) -> dict:
    return {"image_base64": b64(image), "audio_base64": b64(encode_audio(tracks[0], SAMPLE_RATE, "wav")),
            "audio_2_base64": b64(encode_audio(tracks[1], SAMPLE_RATE, "wav")), "width": SIZE[0],
            "height": SIZE[1], **fields}


@pytest.fixture(scope="module")
def image() -> bytes:
    return two_person_portrait()


@pytest.fixture(scope="module")
def tracks():
    return conversation(seconds=SECONDS, seed=2)


def test_a_two_person_job_end_to_end(make_gateway: Callable[..., Gateway], image: bytes, tracks,
                                     tmp_path: Path) -> None:
    gateway = make_gateway(min_lane_sec=4.0)
    status, created = post_json(gateway, two_person_job(image, tracks, lanes=2))
    assert status == 202, created
    final = wait_for_job(gateway.rest_url, created["id"], timeout=180)
    assert final["status"] == "COMPLETED", final
    assert final["boxes_from"] == "faces" and final["audio_type"] == "para"
    boxes = [speaker["box"] for speaker in final["speakers"]]
    assert [speaker["person"] for speaker in final["speakers"]] == [1, 2] and boxes[0][2] <= 512 <= boxes[1][0]
    # The seam between the two lanes lies where both speakers are silent.
    [seam] = final["seams"]
    assert any(start < seam["time_sec"] < end for start, end in common_silences(tracks)), seam
    video = tmp_path / "two.mp4"
    video.write_bytes(base64.b64decode(final["video_base64"]))
    fractions = [(x0 / 1024, y0 / 512, x1 / 1024, y1 / 512) for x0, y0, x1, y1 in boxes]
    check_mouths_follow_their_speakers(video, tracks, person_mouth_boxes(image, *SIZE, fractions))


def test_multipart_with_boxes_and_add(gateway: Gateway, image: bytes) -> None:
    first, second = conversation(seconds=3.0, seed=5)
    boxes = [[150, 40, 300, 200], [724, 40, 874, 200]]
    fields = {"width": str(SIZE[0]), "height": str(SIZE[1]), "audio_type": "add", "boxes": json.dumps(boxes)}
    files = {"image": image, "audio": encode_audio(first, SAMPLE_RATE, "wav"),
             "audio_2": encode_audio(second, SAMPLE_RATE, "mp3")}
    status, created = call_multipart(gateway, fields, files)
    assert status == 202, created
    final = wait_for_job(gateway.rest_url, created["id"], timeout=120)
    assert final["status"] == "COMPLETED", final
    assert final["boxes_from"] == "request" and [s["box"] for s in final["speakers"]] == boxes
    assert final["audio_type"] == "add" and abs(final["duration_sec"] - 6.0) < 0.1  # one after the other


@pytest.mark.parametrize(("fields", "message"), [
    ({"boxes": [[0, 0, 10, 10]] * 3}, "2 speakers' tracks for 3 box(es)"),
    ({"boxes": [[0, 0, 400, 400], [600, 0, 1100, 400]]}, "boxes[1]: [600, 0, 1100, 400] is not a box inside the "
                                                         "1024x512 image"),
    ({"audio_type": "both"}, "audio_type: must be para or add"),
    ({"speakers": [{"box": [0, 0, 9, 9]}, {"box": [9, 0, 19, 9]}, {"box": [19, 0, 29, 9]}]},
     "speakers: 3 speakers' tracks given; a video has one speaker or two"),
])
def test_bad_two_person_requests_are_400(gateway: Gateway, image: bytes, fields: dict, message: str) -> None:
    body = two_person_job(image, conversation(seconds=2.0), **fields)
    status, answer = post_json(gateway, body)
    assert status == 400 and message in answer["error"], answer


def test_tracks_of_different_lengths_with_para_are_400(gateway: Gateway, image: bytes) -> None:
    body = two_person_job(image, conversation(seconds=2.0))
    body["audio_2_base64"] = b64(encode_audio(conversation(seconds=5.0)[1], SAMPLE_RATE, "wav"))
    status, answer = post_json(gateway, body)
    assert status == 400 and "person 1: 2.00 s, person 2: 5.00 s" in answer["error"], answer
    assert "audio_type add" in answer["error"]


def test_faces_and_tracks_must_agree(gateway: Gateway, image: bytes) -> None:
    one_face = (Path(__file__).resolve().parents[2] / "assets" / "sample" / "portrait.png").read_bytes()
    status, answer = post_json(gateway, two_person_job(one_face, conversation(seconds=2.0)))
    assert status == 400, answer
    assert "1 face(s) found in the portrait but 2 speakers' tracks given" in answer["error"]


def test_a_pool_that_renders_one_person_refuses_two(make_gateway: Callable[..., Gateway], image: bytes,
                                                     tmp_path: Path) -> None:
    single = start_generator(tmp_path / "single", person_counts=(1,))
    try:
        gateway = make_gateway(generator_targets=[single.target])
        status, answer = post_json(gateway, two_person_job(image, conversation(seconds=2.0)))
        assert status == 400 and "render 1 person(s) per video, not 2" in answer["error"], answer
    finally:
        single.stop()


def call_multipart(gateway: Gateway, fields: dict[str, str], files: dict[str, bytes]) -> tuple[int, dict]:
    boundary = "itk-two-persons"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
             for name, value in fields.items()]
    parts += [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}"\r\n'
              f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n"
              for name, data in files.items()]
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return call("POST", f"{gateway.rest_url}/jobs", body, content_type=f"multipart/form-data; boundary={boundary}")


def test_grpc_job_with_speakers_and_audio_2(gateway: Gateway, image: bytes) -> None:
    first, second = conversation(seconds=3.0, seed=6)
    boxes = [(150, 40, 300, 200), (724, 40, 874, 200)]
    options = gateway_pb2.JobOptions(width=SIZE[0], height=SIZE[1], speakers=[
        gateway_pb2.JobSpeaker(box=gateway_pb2.SpeakerBox(x0=x0, y0=y0, x1=x1, y1=y1)) for x0, y0, x1, y1 in boxes])

    def upload():
        yield gateway_pb2.CreateJobRequest(options=options)
        for kind, data in (("image", image), ("audio", encode_audio(first, SAMPLE_RATE, "wav")),
                           ("audio_2", encode_audio(second, SAMPLE_RATE, "wav"))):
            for piece in data_pieces(data):
                yield gateway_pb2.CreateJobRequest(**{kind: piece})

    with insecure_channel(gateway.grpc_target) as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        job = stub.CreateJob(upload(), timeout=60)
        final = list(stub.WatchJob(gateway_pb2.WatchJobRequest(id=job.id), timeout=120))[-1]
    assert final.status == gateway_pb2.COMPLETED, final.error
    assert final.boxes_from == "request" and final.audio_type == "para"
    assert [(s.person, s.box.x0, s.box.x1) for s in final.speakers] == [(1, 150, 300), (2, 724, 874)]


def test_modal_submit_with_audio2(make_gateway: Callable[..., Gateway], image: bytes) -> None:
    gateway = make_gateway(url_allow_hosts=["127.0.0.1"])
    first, second = conversation(seconds=2.0, seed=7)
    with file_server() as server:
        server.files.update({"two.png": image, "one.wav": encode_audio(first, SAMPLE_RATE, "wav"),
                             "two.wav": encode_audio(second, SAMPLE_RATE, "wav")})
        status, answer = call("POST", f"{gateway.rest_url}/modal/submit", json.dumps({
            "image": server.url("two.png"), "audio1": server.url("one.wav"), "audio2": server.url("two.wav"),
            "width": SIZE[0], "height": SIZE[1]}).encode())
        assert status == 200, answer
        final = wait_for_job(gateway.rest_url, answer["call_id"], timeout=120)
    assert final["status"] == "COMPLETED", final
    # The Modal app plays several speakers one after the other.
    assert final["audio_type"] == "add" and abs(final["duration_sec"] - 4.0) < 0.1
    assert final["boxes_from"] == "faces"
