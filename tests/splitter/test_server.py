"""The Splitter gRPC service on a real 127.0.0.1 port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from infinitetalk.v1 import common_pb2, splitter_pb2, splitter_pb2_grpc
from itk_common.constants import MAX_PIECE_BYTES, SAMPLES_PER_FRAME, frames_for_samples
from itk_common.grpc_server import insecure_channel, wait_for_serving
from itk_common.streaming import data_pieces
from itk_common.wav import decode_wav_int16, encode_wav
from itk_splitter import split_audio
from itk_splitter.server import SERVICE_NAME, start_server
from itk_splitter.settings import SplitterSettings
from tests.helpers.audio import encode_audio, speech_like, speech_pauses

DURATION_SEC = 120.0
MAX_UPLOAD_BYTES = 8 * 1024 * 1024


@pytest.fixture(scope="module")
def target() -> Iterator[str]:
    # Uploads over 1 MiB spill to a temporary file, so the 2-minute WAV takes the on-disk path.
    settings = SplitterSettings(max_upload_bytes=MAX_UPLOAD_BYTES, spool_memory_bytes=1024 * 1024)
    service, port = start_server("127.0.0.1", 0, settings)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        service.stop(grace=None)


@pytest.fixture(scope="module")
def stub(target: str) -> Iterator[splitter_pb2_grpc.SplitterStub]:
    with insecure_channel(target) as channel:
        yield splitter_pb2_grpc.SplitterStub(channel)


@pytest.fixture(scope="module")
def recording() -> bytes:
    return encode_audio(speech_like(DURATION_SEC, seed=42), 16_000, "wav")


def requests(audio: bytes, options: splitter_pb2.SplitOptions | None = None) -> Iterator[splitter_pb2.SplitRequest]:
    yield splitter_pb2.SplitRequest(options=options or splitter_pb2.SplitOptions())
    for piece in data_pieces(audio):
        yield splitter_pb2.SplitRequest(audio=piece)


@dataclass
class Reply:
    headers: list[splitter_pb2.ChunkHeader] = field(default_factory=list)
    wavs: list[bytes] = field(default_factory=list)
    piece_sizes: list[list[int]] = field(default_factory=list)
    plan: splitter_pb2.SplitPlan | None = None


def collect(responses: Iterator[splitter_pb2.SplitResponse]) -> Reply:
    """Read the stream, checking its grammar: (header, pieces ending with last=True)*, then the plan."""
    reply, open_wav = Reply(), None
    for response in responses:
        kind = response.WhichOneof("event")
        assert reply.plan is None, "nothing may follow the plan"
        if kind == "chunk":
            assert open_wav is None, "a header arrived before the previous chunk's last piece"
            reply.headers.append(response.chunk)
            reply.piece_sizes.append([])
            open_wav = bytearray()
        elif kind == "chunk_wav":
            assert open_wav is not None, "a piece arrived without a header"
            open_wav += response.chunk_wav.data
            reply.piece_sizes[-1].append(len(response.chunk_wav.data))
            if response.chunk_wav.last:
                reply.wavs.append(bytes(open_wav))
                open_wav = None
        else:
            assert open_wav is None, "the plan arrived in the middle of a chunk"
            reply.plan = response.plan
    assert reply.plan is not None, "the stream ended without a plan"
    return reply


def test_health_reports_serving(target: str) -> None:
    with insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", SERVICE_NAME):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_two_minutes_of_speech_come_back_as_chunks_cut_at_pauses(stub, recording: bytes) -> None:
    reply = collect(stub.Split(requests(recording), timeout=60))
    plan = reply.plan
    assert (plan.sample_rate, plan.total_samples) == (16_000, 16_000 * 120)
    assert plan.total_frames == 3000 and plan.duration_sec == pytest.approx(120.0)
    assert plan.input_lufs < -10
    assert len(plan.chunks) == len(reply.headers) == len(reply.wavs) >= 2
    pauses = speech_pauses(DURATION_SEC, seed=42)
    for index, (header, wav, sizes) in enumerate(zip(reply.headers, reply.wavs, reply.piece_sizes, strict=True)):
        span = header.span
        assert span == plan.chunks[index] and span.index == index
        assert header.wav_size == len(wav) == sum(sizes)
        assert max(sizes) <= MAX_PIECE_BYTES
        assert len(decode_wav_int16(wav)) == span.end_sample - span.start_sample
        assert span.frame_count == frames_for_samples(span.end_sample - span.start_sample)
        if index < len(plan.chunks) - 1:
            assert span.end_sample == plan.chunks[index + 1].start_sample
            assert span.end_sample % SAMPLES_PER_FRAME == 0 and span.cut_in_silence
            assert any(start < span.end_sample < end for start, end in pauses)
    # 45 s chunks at 16 kHz are 1.44 MB of WAV: more than one piece each.
    assert len(reply.piece_sizes[0]) == 2
    assert plan.chunks[0].start_sample == 0 and plan.chunks[-1].end_sample == plan.total_samples
    assert sum(span.frame_count for span in plan.chunks) == plan.total_frames

    joined = np.concatenate([decode_wav_int16(wav) for wav in reply.wavs])
    np.testing.assert_array_equal(joined, decode_wav_int16(encode_wav(split_audio(recording).samples)))


def test_options_override_the_defaults(stub, recording: bytes) -> None:
    options = splitter_pb2.SplitOptions(chunk_target_sec=20.0, min_chunk_sec=3.0)
    reply = collect(stub.Split(requests(recording, options), timeout=60))
    lengths = [(span.end_sample - span.start_sample) / 16_000 for span in reply.plan.chunks]
    assert len(lengths) >= 5
    assert all(abs(length - 20.0) <= 20.0 / 3 for length in lengths[:-1])


def status_of(stub, messages) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        collect(stub.Split(iter(messages), timeout=30))
    return caught.value


@pytest.mark.parametrize(
    ("options", "field_name"),
    [
        (splitter_pb2.SplitOptions(chunk_target_sec=-1), "chunk_target_sec"),
        (splitter_pb2.SplitOptions(chunk_target_sec=0.5, min_chunk_sec=0.1), "chunk_target_sec"),
        (splitter_pb2.SplitOptions(tolerance_sec=-0.5), "tolerance_sec"),
        (splitter_pb2.SplitOptions(silence_threshold_db=6), "silence_threshold_db"),
        (splitter_pb2.SplitOptions(min_silence_sec=float("nan")), "min_silence_sec"),
        (splitter_pb2.SplitOptions(chunk_target_sec=10, min_chunk_sec=11), "min_chunk_sec"),
        (splitter_pb2.SplitOptions(target_lufs=3), "target_lufs"),
    ],
)
def test_bad_options_are_invalid_arguments_naming_the_field(stub, recording, options, field_name) -> None:
    error = status_of(stub, requests(recording[:50_000], options))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_name in error.details()


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        (list(requests(b"definitely not a recording" * 100)), "audio: could not decode"),
        (list(requests(encode_wav(np.zeros(0, dtype=np.float32)))), "audio: recording is empty"),
        ([splitter_pb2.SplitRequest(options=splitter_pb2.SplitOptions())], "audio: no audio data"),
        ([splitter_pb2.SplitRequest(audio=common_pb2.DataPiece(data=b"x"))], "first message"),
        (list(requests(bytes(MAX_UPLOAD_BYTES + 1))), "exceeds the 8 MiB limit"),
    ],
    ids=["not-audio", "empty", "no-audio", "audio-first", "too-large"],
)
def test_bad_uploads_are_invalid_arguments(stub, messages, expected: str) -> None:
    error = status_of(stub, messages)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert expected in error.details()
    assert "Traceback" not in error.details()


def test_module_runs_as_a_service_until_sigterm(tmp_path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "BIND_HOST": "127.0.0.1", "GRPC_PORT": str(port), "CHUNK_TARGET_SEC": "30"}
    process = subprocess.Popen([sys.executable, "-m", "itk_splitter.server"], env=env, cwd=tmp_path)
    try:
        wait_for_serving(f"127.0.0.1:{port}", timeout=30)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_bad_environment_stops_the_service_with_a_clear_message(tmp_path) -> None:
    env = {**os.environ, "GRPC_PORT": "0", "MIN_CHUNK_SEC": "90"}
    done = subprocess.run(
        [sys.executable, "-m", "itk_splitter.server"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "MIN_CHUNK_SEC" in done.stderr
