"""Bad requests get INVALID_ARGUMENT naming the field, and leave the server ready for the next."""

from __future__ import annotations

import io
import wave
from collections.abc import Callable, Iterator
from itertools import zip_longest

import cv2
import grpc
import numpy as np
import pytest

from infinitetalk.v1 import common_pb2, generator_pb2
from itk_common.streaming import data_pieces
from itk_common.wav import encode_wav

from .conftest import Chunk, collect, rpc_error

Requests = Iterator[generator_pb2.GenerateRequest]


def spec_then(chunk: Chunk, *messages: generator_pb2.GenerateRequest) -> Requests:
    yield generator_pb2.GenerateRequest(spec=chunk.spec())
    yield from messages


def image_message(data: bytes, last: bool = True) -> generator_pb2.GenerateRequest:
    return generator_pb2.GenerateRequest(image=common_pb2.DataPiece(data=data, last=last))


def audio_message(data: bytes, last: bool = True) -> generator_pb2.GenerateRequest:
    return generator_pb2.GenerateRequest(audio=common_pb2.DataPiece(data=data, last=last))


def stereo_wav(samples: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(2)
        writer.setsampwidth(2)
        writer.setframerate(16000)
        writer.writeframes(np.repeat((samples * 20000).astype("<i2"), 2).tobytes())
    return buffer.getvalue()


def with_spec(**changes) -> Callable[[Chunk], Requests]:
    def build(chunk: Chunk) -> Requests:
        for name, value in changes.items():
            setattr(chunk, name, value)
        return chunk.requests()

    return build


def payload(image: Callable[[Chunk], bytes] | None, audio: Callable[[Chunk], bytes] | None
            ) -> Callable[[Chunk], Requests]:
    def build(chunk: Chunk) -> Requests:
        messages = []
        if image is not None:
            messages.append(image_message(image(chunk)))
        if audio is not None:
            messages.append(audio_message(audio(chunk)))
        return spec_then(chunk, *messages)

    return build


def good_image(chunk: Chunk) -> bytes:
    return chunk.image


def good_audio(chunk: Chunk) -> bytes:
    return encode_wav(chunk.samples)


def no_spec(chunk: Chunk) -> Requests:
    yield image_message(chunk.image)
    yield audio_message(good_audio(chunk))


def image_after_last(chunk: Chunk) -> Requests:
    return spec_then(chunk, image_message(chunk.image), image_message(b"more"), audio_message(good_audio(chunk)))


def other_rate(chunk: Chunk) -> bytes:
    return encode_wav(chunk.samples, sample_rate=22050)


CASES = {
    "zero frames": (with_spec(frame_count=0), "spec.frame_count"),
    "frames do not match audio": (with_spec(frame_count=11), "spec.frame_count"),
    "zero width": (with_spec(width=0), "spec.width"),
    "too tall": (with_spec(height=4097), "spec.height"),
    "negative chunk index": (with_spec(chunk_index=-1), "spec.chunk_index"),
    "negative steps": (with_spec(sampling=common_pb2.SamplingOptions(steps=-4)), "spec.sampling.steps"),
    "no spec first": (no_spec, "spec"),
    "image not a picture": (payload(lambda c: b"not an image at all", good_audio), "image"),
    "image missing": (payload(None, good_audio), "image"),
    "image piece after last": (image_after_last, "image"),
    "audio missing": (payload(good_image, None), "audio"),
    "audio not a wav": (payload(good_image, lambda c: b"RIFF...."), "audio"),
    "audio stereo": (payload(good_image, lambda c: stereo_wav(c.samples)), "audio"),
    "audio at 22050 Hz": (payload(good_image, other_rate), "audio"),
    "audio without samples": (payload(good_image, lambda c: encode_wav(np.zeros(0, np.float32))), "audio"),
}


@pytest.mark.parametrize("build, field", CASES.values(), ids=CASES.keys())
def test_bad_request_is_invalid_argument_naming_the_field(generator, portrait, speech, build, field):
    chunk = Chunk(portrait, speech[:6400])  # 10 frames
    error = rpc_error(generator.stub.Generate(build(chunk), timeout=30))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in error.details()
    assert "Traceback" not in error.details()

    # The slot was given back: the next, good chunk is served.
    reply = collect(generator.stub.Generate(Chunk(portrait, speech[:6400]).requests(), timeout=30))
    assert reply.summaries[0].frame_count == 10
    assert list(generator.work_dir.iterdir()) == []


def test_frame_count_allows_a_short_last_frame(generator, portrait, speech):
    # 650 samples are one full frame plus 10 samples: two frames, the last one partial.
    reply = collect(generator.stub.Generate(Chunk(portrait, speech[:650], frame_count=2).requests(), timeout=30))
    assert reply.summaries[0].frame_count == 2


def test_tiny_image_is_fitted_to_the_requested_size(generator, speech):
    tiny = cv2.imencode(".jpg", np.full((3, 5, 3), 200, np.uint8))[1].tobytes()
    reply = collect(generator.stub.Generate(Chunk(tiny, speech[:640], width=64, height=48).requests(),
                                            timeout=30))
    assert (reply.summaries[0].width, reply.summaries[0].height) == (64, 48)


def test_pieces_of_image_and_audio_may_interleave(generator, portrait, speech):
    chunk = Chunk(portrait, speech[:6400])
    image = [generator_pb2.GenerateRequest(image=p) for p in data_pieces(portrait, 1000)]
    audio = [generator_pb2.GenerateRequest(audio=p) for p in data_pieces(encode_wav(chunk.samples), 777)]
    mixed = [message for pair in zip_longest(audio, image) for message in pair if message is not None]
    requests = [generator_pb2.GenerateRequest(spec=chunk.spec()), *mixed]
    reply = collect(generator.stub.Generate(iter(requests), timeout=30))
    assert reply.summaries[0].frame_count == 10
