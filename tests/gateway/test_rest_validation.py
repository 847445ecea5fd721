"""Bad input to the REST bridge: the right status, an {error, code} body, and nothing left behind."""

from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image

from itk_gateway.server import Gateway
from tests.gateway.conftest import SIZE, json_job, leftovers, post_json, silence_wav, speech_wav
from tests.helpers.rest import _multipart, call

SEED_CODES = {"INVALID_JSON", "VALIDATION_ERROR", "JOB_CREATION_FAILED", "MISSING_JOB_ID", "JOB_NOT_FOUND",
              "JOB_FETCH_FAILED", "INTERNAL_ERROR"}


@pytest.fixture(scope="module")
def audio() -> bytes:
    return speech_wav(4.0)


def assert_error(status: int, body: dict, expected_status: int, code: str, *words: str) -> None:
    assert status == expected_status, body
    assert set(body) == {"error", "code"}, body
    assert body["code"] == code
    assert body["code"] in SEED_CODES
    for word in words:
        assert word in body["error"], body
    assert "Traceback" not in body["error"]


def assert_nothing_left(gateway: Gateway) -> None:
    assert leftovers(gateway) == []
    assert gateway.store.count_by_status() == dict.fromkeys(gateway.store.count_by_status(), 0)


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (120, 90, 60)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_body_that_is_not_json(gateway: Gateway) -> None:
    status, body = post_json(gateway, b'{"image_base64": "abc",')
    assert_error(status, body, 400, "INVALID_JSON")
    status, body = post_json(gateway, b"[1, 2, 3]")
    assert_error(status, body, 400, "INVALID_JSON")
    assert_nothing_left(gateway)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"image_base64": None}, "image_base64"),
        ({"audio_base64": None}, "audio_base64"),
        ({"width": None}, "width"),
        ({"height": None}, "height"),
        ({"image_base64": ""}, "image_base64"),
        ({"width": "384"}, "width"),
        ({"width": 12.5}, "width"),
        ({"push_to_s3": "yes"}, "push_to_s3"),
        ({"width": 0}, "width"),
        ({"height": 4097}, "height"),
        ({"width": -5}, "width"),
        ({"sampling": {"steps": "many"}}, "sampling.steps"),
        ({"sampling": {"preset": "ultra"}}, "sampling.preset"),
        ({"preset": "turbo", "sampling": {"preset": "fast"}}, "preset"),
    ],
)
def test_fields_are_checked_and_named(gateway: Gateway, portrait: bytes, audio: bytes, change: dict,
                                      field: str) -> None:
    body = json.loads(json_job(portrait, audio))
    for key, value in change.items():
        if value is None:
            body.pop(key)
        else:
            body[key] = value
    status, reply = post_json(gateway, body)
    assert_error(status, reply, 400, "VALIDATION_ERROR", field)
    assert_nothing_left(gateway)


def test_invalid_base64(gateway: Gateway, portrait: bytes, audio: bytes) -> None:
    body = json.loads(json_job(portrait, audio))
    status, reply = post_json(gateway, {**body, "image_base64": "not base64 at all!"})
    assert_error(status, reply, 400, "VALIDATION_ERROR", "image_base64", "base64")
    status, reply = post_json(gateway, {**body, "audio_base64": "QUJDRA"})  # padding missing
    assert_error(status, reply, 400, "VALIDATION_ERROR", "audio_base64", "base64")
    assert_nothing_left(gateway)


def test_image_that_is_not_an_image(gateway: Gateway, portrait: bytes, audio: bytes) -> None:
    status, reply = post_json(gateway, json_job(b"just some text, no picture" * 10, audio))
    assert_error(status, reply, 400, "VALIDATION_ERROR", "image")
    truncated = portrait[: len(portrait) // 2]
    status, reply = post_json(gateway, json_job(truncated, audio))
    assert_error(status, reply, 400, "VALIDATION_ERROR", "image")
    assert_nothing_left(gateway)


def test_image_with_too_many_pixels(make_gateway, audio: bytes) -> None:
    gateway = make_gateway(max_image_pixels=100 * 100)
    status, reply = post_json(gateway, json_job(png(101, 100), audio))
    assert_error(status, reply, 400, "VALIDATION_ERROR", "image", "10000 pixels")
    assert_nothing_left(gateway)


def test_audio_the_splitter_cannot_decode(gateway: Gateway, portrait: bytes) -> None:
    status, reply = post_json(gateway, json_job(portrait, b"RIFF....WAVEfmt garbage" * 50))
    assert_error(status, reply, 400, "VALIDATION_ERROR", "audio")
    assert_nothing_left(gateway)


def test_empty_audio(gateway: Gateway, portrait: bytes) -> None:
    body = json.loads(json_job(portrait, b"x"))
    status, reply = post_json(gateway, {**body, "audio_base64": ""})
    assert_error(status, reply, 400, "VALIDATION_ERROR", "audio_base64")
    data, content_type = _multipart({"width": str(SIZE), "height": str(SIZE)},
                                    {"image": ("p.png", portrait), "audio": ("a.wav", b"")})
    status, reply = call("POST", f"{gateway.rest_url}/jobs", data, content_type)
    assert_error(status, reply, 400, "VALIDATION_ERROR", "audio", "empty")
    assert_nothing_left(gateway)


def test_wav_with_no_samples(gateway: Gateway, portrait: bytes) -> None:
    status, reply = post_json(gateway, json_job(portrait, silence_wav(0.0)))
    assert_error(status, reply, 400, "VALIDATION_ERROR", "audio")
    assert_nothing_left(gateway)


def test_unknown_provider_lists_the_configured_ones_and_aliases(make_gateway, portrait: bytes, audio: bytes) -> None:
    gateway = make_gateway(generator_pools={"fast": ["127.0.0.1:9"]})
    status, reply = post_json(gateway, json_job(portrait, audio, provider="beam"))
    assert_error(status, reply, 400, "VALIDATION_ERROR", "beam", "infinitetalk", "fast", "runpod (= infinitetalk)")
    assert_nothing_left(gateway)


def test_push_to_s3_without_s3(gateway: Gateway, portrait: bytes, audio: bytes) -> None:
    status, reply = post_json(gateway, json_job(portrait, audio, push_to_s3=True))
    assert_error(status, reply, 400, "VALIDATION_ERROR", "push_to_s3", "S3")
    assert_nothing_left(gateway)


def test_upload_over_the_limit(make_gateway, portrait: bytes) -> None:
    gateway = make_gateway(max_upload_mb=1)
    big_audio = speech_wav(40.0)  # 1.28 MB of WAV
    status, reply = post_json(gateway, json_job(portrait, big_audio))
    assert_error(status, reply, 413, "VALIDATION_ERROR", "MAX_UPLOAD_MB")
    data, content_type = _multipart({"width": str(SIZE), "height": str(SIZE)},
                                    {"image": ("p.png", portrait), "audio": ("a.wav", big_audio)})
    status, reply = call("POST", f"{gateway.rest_url}/jobs", data, content_type)
    assert_error(status, reply, 413, "VALIDATION_ERROR", "MAX_UPLOAD_MB")
    assert_nothing_left(gateway)


def test_multipart_field_errors(gateway: Gateway, portrait: bytes, audio: bytes) -> None:
    url = f"{gateway.rest_url}/jobs"
    data, content_type = _multipart({"width": "wide", "height": str(SIZE)},
                                    {"image": ("p.png", portrait), "audio": ("a.wav", audio)})
    assert_error(*call("POST", url, data, content_type), 400, "VALIDATION_ERROR", "width")
    data, content_type = _multipart({"width": str(SIZE), "height": str(SIZE)}, {"audio": ("a.wav", audio)})
    assert_error(*call("POST", url, data, content_type), 400, "VALIDATION_ERROR", "image")
    data, content_type = _multipart({"width": str(SIZE), "height": str(SIZE), "dry_run": "maybe"},
                                    {"image": ("p.png", portrait), "audio": ("a.wav", audio)})
    assert_error(*call("POST", url, data, content_type), 400, "VALIDATION_ERROR", "dry_run")
    assert_error(*call("POST", url, b"--x\r\nbroken", "multipart/form-data"), 400, "VALIDATION_ERROR")
    assert_nothing_left(gateway)


def test_unknown_and_malformed_job_ids(gateway: Gateway) -> None:
    base = gateway.rest_url
    for job_id in ("job-1234567890-abc12345", "not-a-job", "job-1-ZZZZZZZZ", "..%2F..%2Fetc"):
        assert_error(*call("GET", f"{base}/jobs/{job_id}"), 404, "JOB_NOT_FOUND", "job not found")
        assert_error(*call("POST", f"{base}/jobs/{job_id}/video/delete"), 404, "JOB_NOT_FOUND", "job not found")
        assert_error(*call("GET", f"{base}/jobs/{job_id}/video"), 404, "JOB_NOT_FOUND")
        assert_error(*call("POST", f"{base}/jobs/{job_id}/cancel"), 404, "JOB_NOT_FOUND")
    assert_error(*call("GET", f"{base}/jobs/"), 400, "MISSING_JOB_ID")


def test_unknown_route_and_method_answer_in_the_error_format(gateway: Gateway) -> None:
    status, body = call("GET", f"{gateway.rest_url}/nothing/here")
    assert_error(status, body, 404, "VALIDATION_ERROR")
    status, body = call("DELETE", f"{gateway.rest_url}/jobs")
    assert_error(status, body, 405, "VALIDATION_ERROR")
    status, body = call("GET", f"{gateway.rest_url}/jobs/job-1-abcdef12?include_video=perhaps")
    assert_error(status, body, 400, "VALIDATION_ERROR", "include_video")


def test_base64_with_data_url_prefix_and_line_breaks_is_accepted(gateway: Gateway, portrait: bytes,
                                                                  audio: bytes) -> None:
    encoded = base64.encodebytes(portrait).decode()  # 76-character lines, as `base64` without -w 0
    body = json.loads(json_job(portrait, audio, dry_run=True))
    body["image_base64"] = "data:image/png;base64," + encoded
    status, reply = post_json(gateway, body)
    assert status == 202, reply
