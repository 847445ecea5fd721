"""The public gRPC API: create by streaming, watch, download in pieces, cancel, delete, errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from infinitetalk.v1 import gateway_pb2, gateway_pb2_grpc
from itk_common.constants import FPS, MAX_PIECE_BYTES
from itk_common.grpc_server import insecure_channel
from itk_common.streaming import data_pieces
from itk_common.video import probe_video
from itk_gateway.server import Gateway
from tests.gateway.conftest import SIZE, leftovers, speech_wav
from tests.helpers.services import GeneratorHandle

SECONDS = 6.0


@pytest.fixture
def stub(gateway: Gateway) -> Iterator[gateway_pb2_grpc.GatewayStub]:
    with insecure_channel(gateway.grpc_target) as channel:
        yield gateway_pb2_grpc.GatewayStub(channel)


def create_requests(options: gateway_pb2.JobOptions | None, image: bytes,
                    audio: bytes) -> Iterator[gateway_pb2.CreateJobRequest]:
    if options is not None:
        yield gateway_pb2.CreateJobRequest(options=options)
    # Interleaved on purpose: the API takes the two blobs in any order.
    audio_pieces = list(data_pieces(audio, 64 * 1024))
    image_pieces = list(data_pieces(image, 64 * 1024))
    for index in range(max(len(audio_pieces), len(image_pieces))):
        if index < len(audio_pieces):
            yield gateway_pb2.CreateJobRequest(audio=audio_pieces[index])
        if index < len(image_pieces):
            yield gateway_pb2.CreateJobRequest(image=image_pieces[index])


def rpc_error(call, *args) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        result = call(*args)
        if hasattr(result, "__iter__") and not isinstance(result, gateway_pb2.Job):
            list(result)
    return raised.value


def test_create_watch_download_delete(gateway: Gateway, stub, portrait: bytes, tmp_path: Path) -> None:
    options = gateway_pb2.JobOptions(width=SIZE, height=SIZE, prompt="talking", seed=77)
    job = stub.CreateJob(create_requests(options, portrait, speech_wav(SECONDS, seed=2)))
    assert job.status == gateway_pb2.IN_QUEUE or job.status == gateway_pb2.RUNNING
    assert job.seed == 77 and job.provider == "infinitetalk"

    snapshots = list(stub.WatchJob(gateway_pb2.WatchJobRequest(id=job.id), timeout=120))
    assert snapshots[-1].status == gateway_pb2.COMPLETED, snapshots[-1].error
    progress = [s.progress for s in snapshots]
    assert progress == sorted(progress) and progress[-1] == 100
    final = stub.GetJob(gateway_pb2.GetJobRequest(id=job.id))
    assert final.video_available and final.frames_total == round(SECONDS * FPS)

    pieces = list(stub.DownloadVideo(gateway_pb2.DownloadVideoRequest(id=job.id)))
    assert all(len(p.data) <= MAX_PIECE_BYTES for p in pieces) and pieces[-1].last
    video = tmp_path / "grpc.mp4"
    video.write_bytes(b"".join(p.data for p in pieces))
    assert video.read_bytes() == gateway.files.result(job.id).read_bytes()
    assert probe_video(video).frame_count == round(SECONDS * FPS)

    error = rpc_error(stub.CancelJob, gateway_pb2.CancelJobRequest(id=job.id))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "COMPLETED" in error.details()

    for _ in range(2):
        stub.DeleteVideo(gateway_pb2.DeleteVideoRequest(id=job.id))
    error = rpc_error(stub.DownloadVideo, gateway_pb2.DownloadVideoRequest(id=job.id))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert leftovers(gateway) == []


def test_errors(gateway: Gateway, stub, portrait: bytes) -> None:
    audio = speech_wav(3.0)
    error = rpc_error(stub.GetJob, gateway_pb2.GetJobRequest(id="job-1234567890-abc12345"))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    error = rpc_error(stub.GetJob, gateway_pb2.GetJobRequest(id=""))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "id" in error.details()
    error = rpc_error(stub.WatchJob, gateway_pb2.WatchJobRequest(id="nonsense"))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    error = rpc_error(stub.DeleteVideo, gateway_pb2.DeleteVideoRequest(id="job-1-00000000"))
    assert error.code() == grpc.StatusCode.NOT_FOUND

    error = rpc_error(stub.CreateJob, create_requests(None, portrait, audio))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "options" in error.details()
    bad = gateway_pb2.JobOptions(width=SIZE, height=5000)
    error = rpc_error(stub.CreateJob, create_requests(bad, portrait, audio))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "height" in error.details()
    unknown = gateway_pb2.JobOptions(width=SIZE, height=SIZE, provider="beam")
    error = rpc_error(stub.CreateJob, create_requests(unknown, portrait, audio))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "infinitetalk" in error.details()
    good = gateway_pb2.JobOptions(width=SIZE, height=SIZE)
    error = rpc_error(stub.CreateJob, create_requests(good, b"not an image", audio))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "image" in error.details()
    error = rpc_error(stub.CreateJob, create_requests(good, portrait, b"not audio" * 100))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "audio" in error.details()
    assert leftovers(gateway) == []

    job = stub.CreateJob(create_requests(good, portrait, audio))
    if not stub.GetJob(gateway_pb2.GetJobRequest(id=job.id)).video_available:
        error = rpc_error(stub.DownloadVideo, gateway_pb2.DownloadVideoRequest(id=job.id))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert list(stub.WatchJob(gateway_pb2.WatchJobRequest(id=job.id), timeout=60))[-1].status == gateway_pb2.COMPLETED


def test_health_and_reflection(gateway: Gateway) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    with insecure_channel(gateway.grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = health.Check(health_pb2.HealthCheckRequest(service="infinitetalk.v1.Gateway"))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        services = ProtoReflectionDescriptorDatabase(channel).get_services()
        assert "infinitetalk.v1.Gateway" in services


def test_progress_follows_frames_within_a_chunk(make_gateway, slow_generator: GeneratorHandle,
                                                portrait: bytes) -> None:
    """A one-chunk job still moves: progress comes from the generator's frames, not finished chunks."""
    gateway = make_gateway(generator_targets=[slow_generator.target], chunk_target_sec=10.0)
    with insecure_channel(gateway.grpc_target) as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        job = stub.CreateJob(create_requests(gateway_pb2.JobOptions(width=SIZE, height=SIZE), portrait,
                                             speech_wav(2.0)))
        snapshots = list(stub.WatchJob(gateway_pb2.WatchJobRequest(id=job.id), timeout=60))
    assert snapshots[-1].status == gateway_pb2.COMPLETED and snapshots[-1].chunk_count == 1
    progress = [s.progress for s in snapshots]
    assert progress == sorted(progress)
    assert any(0 < p < 95 for p in progress), progress
    assert any(0 < s.frames_done < s.frames_total for s in snapshots)
