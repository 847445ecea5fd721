"""Capacity, loading, draining and cancellation of a real in-process Generator server."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from infinitetalk.v1 import generator_pb2
from itk_generator.backend import Cancelled, ChunkJob, ProgressCallback, RenderedChunk
from itk_generator.preview import PreviewBackend

from .conftest import Chunk, collect, held_back, rpc_error

NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVING = health_pb2.HealthCheckResponse.SERVING


class GatedLoadPreview(PreviewBackend):
    """A preview backend whose load() lasts until the test opens the gate (a slow weight load)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def load(self) -> None:
        self.gate.wait(30)
        super().load()


class BrokenPreview(PreviewBackend):
    def load(self) -> None:
        raise OSError("weights not found")


class RecordingPreview(PreviewBackend):
    """A slow preview backend that records whether a render was stopped by cancellation."""

    def __init__(self) -> None:
        super().__init__(cost_per_audio_sec=0.5)
        self.cancelled_renders = 0

    def render(self, job: ChunkJob, output: Path, progress: ProgressCallback,
               cancelled: threading.Event) -> RenderedChunk:
        try:
            return super().render(job, output, progress, cancelled)
        except Cancelled:
            self.cancelled_renders += 1
            raise


def health(running) -> int:
    return health_pb2_grpc.HealthStub(running.channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status


def info(running) -> generator_pb2.GeneratorInfo:
    return running.stub.GetInfo(generator_pb2.GetInfoRequest(), timeout=5)


def wait_until(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_info_describes_the_backend(generator):
    reply = info(generator)
    assert (reply.backend, reply.capacity, reply.active, reply.ready, reply.draining, reply.device) == (
        "preview", 1, 0, True, False, "cpu")
    assert health(generator) == SERVING


def test_not_serving_until_the_backend_has_loaded(serve, portrait, speech):
    backend = GatedLoadPreview()
    running = serve(backend, wait=False)
    try:
        assert health(running) == NOT_SERVING
        assert info(running).ready is False
        error = rpc_error(running.stub.Generate(Chunk(portrait, speech[:640]).requests(), timeout=10))
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert "loading" in error.details()
    finally:
        backend.gate.set()
    assert running.server.loading_done.wait(30)
    assert health(running) == SERVING
    assert collect(running.stub.Generate(Chunk(portrait, speech[:640]).requests(), timeout=30)).summaries


def test_failed_load_keeps_the_server_not_serving(serve, portrait, speech):
    failures: list[BaseException] = []
    running = serve(BrokenPreview(), on_load_failed=failures.append)
    assert [type(failure) for failure in failures] == [OSError]
    assert health(running) == NOT_SERVING
    assert info(running).ready is False
    error = rpc_error(running.stub.Generate(Chunk(portrait, speech[:640]).requests(), timeout=10))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "failed to load" in error.details()


@pytest.mark.parametrize("capacity", [1, 2])
def test_request_beyond_capacity_is_refused_before_its_payload(serve, portrait, speech, capacity):
    running = serve(capacity=capacity)
    gates = [threading.Event() for _ in range(capacity)]
    calls = [running.stub.Generate(held_back(Chunk(portrait, speech[:6400]).requests(), gate), timeout=60)
             for gate in gates]
    try:
        wait_until(lambda: info(running).active == capacity)
        # This caller never sends its payload: the refusal must not wait for it.
        never = threading.Event()
        try:
            error = rpc_error(running.stub.Generate(held_back(Chunk(portrait, speech).requests(), never),
                                                    timeout=10))
        finally:
            never.set()
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        for gate in gates:
            gate.set()
    for call in calls:
        assert collect(call).summaries[0].frame_count == 10
    wait_until(lambda: info(running).active == 0)


def test_draining_finishes_the_chunk_in_hand_and_refuses_new_ones(generator, portrait, speech):
    gate = threading.Event()
    call = generator.stub.Generate(held_back(Chunk(portrait, speech[:6400]).requests(), gate), timeout=60)
    wait_until(lambda: info(generator).active == 1)
    drained = threading.Event()
    drainer = threading.Thread(target=lambda: generator.server.drain(30) and drained.set())
    drainer.start()
    try:
        wait_until(lambda: info(generator).draining)
        assert health(generator) == NOT_SERVING
        error = rpc_error(generator.stub.Generate(Chunk(portrait, speech[:640]).requests(), timeout=10))
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert "draining" in error.details()
        assert not drained.is_set()
    finally:
        gate.set()
    assert collect(call).summaries[0].frame_count == 10
    drainer.join(30)
    assert drained.is_set()
    assert health(generator) == NOT_SERVING


def test_client_cancellation_stops_the_backend_and_frees_the_slot(serve, portrait, speech):
    backend = RecordingPreview()
    running = serve(backend)
    started = threading.Event()
    call = running.stub.Generate(Chunk(portrait, speech).requests(), timeout=60)
    watcher = threading.Thread(target=lambda: rpc_error_quietly(call, started))
    watcher.start()
    assert started.wait(30)
    call.cancel()
    watcher.join(30)
    wait_until(lambda: info(running).active == 0)
    assert backend.cancelled_renders == 1
    assert list(running.work_dir.iterdir()) == []
    backend.cost_per_audio_sec = 0.0
    assert collect(running.stub.Generate(Chunk(portrait, speech[:640]).requests(), timeout=30)).summaries


def rpc_error_quietly(call, on_progress: threading.Event) -> None:
    try:
        collect(call, on_progress)
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.CANCELLED


def test_client_leaving_during_upload_frees_the_slot(generator, portrait, speech):
    gate = threading.Event()
    call = generator.stub.Generate(held_back(Chunk(portrait, speech).requests(), gate), timeout=60)
    try:
        wait_until(lambda: info(generator).active == 1)
        call.cancel()
        wait_until(lambda: info(generator).active == 0)
    finally:
        gate.set()
    assert collect(generator.stub.Generate(Chunk(portrait, speech[:640]).requests(), timeout=30)).summaries
