"""A catalogue of bad requests, as a fuzzer or an attacker sends them: each is refused with a 4xx and an
{error, code} body before any work starts, and none leaves a file or a job row behind."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import numpy as np
import pytest

from itk_gateway.server import Gateway
from tests.gateway.conftest import SIZE, leftovers, speech_wav
from tests.helpers.rest import _multipart

PORTRAIT_B64 = ""  # filled by the module fixture


@dataclass(frozen=True)
class Bad:
    """One bad request: its body (built from the portrait and a valid recording), content type, answer."""

    name: str
    build: Callable[[bytes, bytes], tuple[bytes, str]]
    status: int
    code: str
    mentions: str = ""


def raw_json(text: str) -> Callable[[bytes, bytes], tuple[bytes, str]]:
    """A JSON body given as text with {IMAGE} and {AUDIO} standing for the valid media's base64."""
    def build(image: bytes, audio: bytes) -> tuple[bytes, str]:
        body = text.replace("{IMAGE}", base64.b64encode(image).decode()).replace(
            "{AUDIO}", base64.b64encode(audio).decode())
        return body.encode(), "application/json"
    return build


def job(**changes: object) -> Callable[[bytes, bytes], tuple[bytes, str]]:
    def build(image: bytes, audio: bytes) -> tuple[bytes, str]:
        body: dict[str, object] = {"image_base64": base64.b64encode(image).decode(),
                                   "audio_base64": base64.b64encode(audio).decode(), "width": SIZE, "height": SIZE}
        for key, value in changes.items():
            if value is None:
                body.pop(key, None)
            else:
                body[key] = value
        return json.dumps(body).encode(), "application/json"
    return build


def form(fields: dict[str, str] | None = None, files: dict[str, bytes] | None = None, extra: bytes = b"",
         ) -> Callable[[bytes, bytes], tuple[bytes, str]]:
    def build(image: bytes, audio: bytes) -> tuple[bytes, str]:
        sent_fields = {"width": str(SIZE), "height": str(SIZE), **(fields or {})}
        sent_files = {"image": image, "audio": audio, **(files or {})}
        body, content_type = _multipart({k: v for k, v in sent_fields.items() if v is not None},
                                        {k: (k, v) for k, v in sent_files.items() if v is not None})
        if extra:
            boundary = content_type.split("boundary=")[1]
            closing = f"--{boundary}--\r\n".encode()
            part = (f'--{boundary}\r\nContent-Disposition: form-data; name="audio"; filename="b.wav"\r\n\r\n'
                    .encode() + extra + b"\r\n")
            body = body[: -len(closing)] + part + closing
        return body, content_type
    return build


def float_wav(samples: np.ndarray) -> bytes:
    data = samples.astype("<f4").tobytes()
    header = (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt "
              + struct.pack("<IHHIIHH", 16, 3, 1, 16_000, 64_000, 4, 32) + b"data" + struct.pack("<I", len(data)))
    return header + data


def with_audio(audio: bytes) -> Callable[[bytes, bytes], tuple[bytes, str]]:
    return lambda image, _audio: job()(image, audio)


def nan_audio() -> bytes:
    samples = np.sin(np.arange(48_000) / 20.0).astype(np.float32) * 0.3
    samples[1000] = np.nan
    samples[2000] = np.inf
    return float_wav(samples)


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


CATALOGUE = [
    Bad("sampling.steps Infinity (JSON)", raw_json('{"image_base64":"{IMAGE}","audio_base64":"{AUDIO}","width":64,'
                                                   '"height":64,"sampling":{"steps":Infinity}}'), 400, "INVALID_JSON",
        "Infinity"),
    Bad("sampling.steps NaN (JSON)", raw_json('{"image_base64":"{IMAGE}","audio_base64":"{AUDIO}","width":64,'
                                              '"height":64,"sampling":{"steps":NaN}}'), 400, "INVALID_JSON", "NaN"),
    Bad("sampling.shift -Infinity (JSON)", raw_json('{"image_base64":"{IMAGE}","audio_base64":"{AUDIO}","width":64,'
                                                    '"height":64,"sampling":{"shift":-Infinity}}'), 400,
        "INVALID_JSON"),
    Bad("sampling.steps 1e400 (overflows to infinity)", raw_json(
        '{"image_base64":"{IMAGE}","audio_base64":"{AUDIO}","width":64,"height":64,"sampling":{"steps":1e400}}'),
        400, "VALIDATION_ERROR", "sampling.steps"),
    Bad("sampling.steps NaN (multipart)", form({"sampling": '{"steps": NaN}'}), 400, "VALIDATION_ERROR", "sampling"),
    Bad("sampling.steps Infinity (multipart)", form({"sampling": '{"steps": Infinity}'}), 400, "VALIDATION_ERROR",
        "sampling"),
    Bad("sampling.shift NaN (multipart)", form({"sampling": '{"shift": NaN}'}), 400, "VALIDATION_ERROR", "sampling"),
    Bad("sampling.steps 1e30", job(sampling={"steps": 1e30}), 400, "VALIDATION_ERROR", "sampling.steps"),
    Bad("sampling.steps 2^40", job(sampling={"steps": 2**40}), 400, "VALIDATION_ERROR", "sampling.steps"),
    Bad("sampling.shift 1e300", job(sampling={"shift": 1e300}), 400, "VALIDATION_ERROR", "sampling.shift"),
    Bad("sampling.motion_frames -1", job(sampling={"motion_frames": -1}), 400, "VALIDATION_ERROR", "motion_frames"),
    Bad("JSON nested 100,000 deep", raw_json('{"sampling":' + deep(100_000) + "}"), 400, "INVALID_JSON", "nested"),
    Bad("JSON nested 100,000 deep (multipart sampling)", form({"sampling": deep(30_000)}), 400, "VALIDATION_ERROR",
        "sampling"),
    Bad("chunk_target_sec nan (multipart)", form({"chunk_target_sec": "nan"}), 400, "VALIDATION_ERROR",
        "chunk_target_sec"),
    Bad("chunk_target_sec inf (multipart)", form({"chunk_target_sec": "inf"}), 400, "VALIDATION_ERROR",
        "chunk_target_sec"),
    Bad("width 0", job(width=0), 400, "VALIDATION_ERROR", "width"),
    Bad("height 4097", job(height=4097), 400, "VALIDATION_ERROR", "height"),
    Bad("width 1e9 (multipart)", form({"width": "1000000000"}), 400, "VALIDATION_ERROR", "width"),
    Bad("width as a float", job(width=64.5), 400, "VALIDATION_ERROR", "width"),
    Bad("a second audio part (multipart)", form(extra=b"RIFF more audio"), 400, "VALIDATION_ERROR", "audio"),
    Bad("a member given twice (JSON)", raw_json('{"width":64,"width":65,"height":64,"image_base64":"{IMAGE}",'
                                                '"audio_base64":"{AUDIO}"}'), 400, "VALIDATION_ERROR", "width"),
    Bad("audio with NaN and Inf samples", with_audio(nan_audio()), 400, "VALIDATION_ERROR", "NaN"),
    Bad("audio that is not audio", with_audio(b"RIFF\x00\x00\x00\x00WAVEjunk" * 64), 400, "VALIDATION_ERROR", "audio"),
    Bad("image that is not an image", lambda _i, a: job()(b"GIF89a but not really" * 20, a), 400,
        "VALIDATION_ERROR", "image"),
    Bad("image_base64 a number", job(image_base64=12345), 400, "VALIDATION_ERROR", "image_base64"),
    Bad("audio_base64 with characters outside base64", job(audio_base64="QUJD*RA=="), 400, "VALIDATION_ERROR",
        "audio_base64"),
    Bad("audio_base64 cut short", job(audio_base64="QUJDRA"), 400, "VALIDATION_ERROR", "audio_base64"),
    Bad("audio_base64 empty", job(audio_base64=""), 400, "VALIDATION_ERROR", "audio_base64"),
    Bad("image_base64 missing", job(image_base64=None), 400, "VALIDATION_ERROR", "image_base64"),
    Bad("a JSON array", raw_json("[1, 2, 3]"), 400, "INVALID_JSON"),
    Bad("truncated JSON", raw_json('{"image_base64": "{IMAGE}", "wid'), 400, "INVALID_JSON"),
    Bad("JSON followed by garbage", raw_json('{"width": 64} trailing'), 400, "INVALID_JSON"),
    Bad("an empty body", raw_json(""), 400, "INVALID_JSON"),
    Bad("not UTF-8", lambda _i, _a: (b'{"prompt": "\xff\xfe"}', "application/json"), 400, "INVALID_JSON"),
    Bad("an unknown sampling setting", job(sampling={"turbo": True}), 400, "VALIDATION_ERROR", "sampling.turbo"),
    Bad("a prompt of 5,000 characters", job(prompt="x" * 5000), 400, "VALIDATION_ERROR", "prompt"),
    Bad("a negative seed", job(seed=-1), 400, "VALIDATION_ERROR", "seed"),
    Bad("an unknown provider", job(provider="nope"), 400, "VALIDATION_ERROR", "provider"),
    Bad("a JSON body sent as text/plain", lambda i, a: (job()(i, a)[0], "text/plain"), 415, "VALIDATION_ERROR",
        "Content-Type"),
    Bad("a form post (urlencoded)", lambda _i, _a: (b"width=64&height=64", "application/x-www-form-urlencoded"), 415,
        "VALIDATION_ERROR", "Content-Type"),
    Bad("multipart without a boundary", lambda _i, _a: (b"--x\r\n", "multipart/form-data"), 400, "VALIDATION_ERROR"),
    Bad("multipart cut in the middle", lambda i, a: (form()(i, a)[0][:-30], form()(i, a)[1]), 400,
        "VALIDATION_ERROR"),
]


@pytest.fixture(scope="module")
def audio() -> bytes:
    return speech_wav(3.0)


def test_the_catalogue_is_large_enough() -> None:
    assert len(CATALOGUE) >= 30 and len({bad.name for bad in CATALOGUE}) == len(CATALOGUE)


@pytest.mark.parametrize("bad", CATALOGUE, ids=[bad.name for bad in CATALOGUE])
def test_bad_request_is_refused_cleanly(gateway: Gateway, portrait: bytes, audio: bytes, bad: Bad) -> None:
    body, content_type = bad.build(portrait, audio)
    reply = httpx.post(f"{gateway.rest_url}/jobs", content=body, headers={"Content-Type": content_type}, timeout=60)
    assert reply.status_code == bad.status, reply.text
    answer = reply.json()
    assert set(answer) == {"error", "code"} and answer["code"] == bad.code, answer
    assert bad.mentions in answer["error"] and "Traceback" not in answer["error"], answer
    assert leftovers(gateway) == []
    assert sum(gateway.store.count_by_status().values()) == 0
