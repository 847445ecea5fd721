"""No gRPC caller can hold the gateway hostage: long calls (CreateJob uploads, WatchJob,
StreamSegments, DownloadVideo) each hold a worker thread, so they are bounded per key and in
total and refused at once beyond that; short calls and the health check always find a thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from infinitetalk.v1 import gateway_pb2, gateway_pb2_grpc
from itk_common.config import ConfigError
from itk_common.grpc_server import insecure_channel
from itk_gateway.config import Settings
from itk_gateway.jobs.service import WATCH_POLL_SEC
from itk_gateway.server import Gateway
from tests.gateway.conftest import SIZE, json_job, leftovers, post_json, speech_wav
from tests.gateway.test_grpc_api import create_requests
from tests.gateway.test_security import ALICE, BOB, KEYS, OPS, auth, post_job
from tests.helpers.services import GeneratorHandle, wait_until


class Watchers:
    """WatchJob streams held open by reader threads; `outcomes` says how each one ended."""

    def __init__(self, stub: gateway_pb2_grpc.GatewayStub) -> None:
        self.stub = stub
        self.calls: list[grpc.Future] = []
        self.outcomes: list[str] = []
        self.details: list[str] = []
        self._lock = threading.Lock()

    def open(self, job_id: str, count: int, key: str | None = None) -> None:
        metadata = (("authorization", f"Bearer {key}"),) if key else None
        for _ in range(count):
            call = self.stub.WatchJob(gateway_pb2.WatchJobRequest(id=job_id), metadata=metadata)
            self.calls.append(call)
            threading.Thread(target=self._drain, args=(call,), daemon=True).start()

    def _drain(self, call: grpc.Future) -> None:
        try:
            for _ in call:
                pass
            outcome, detail = "ended", ""
        except grpc.RpcError as exc:
            outcome, detail = exc.code().name, exc.details() or ""
        with self._lock:
            self.outcomes.append(outcome)
            self.details.append(detail)

    def refused(self) -> list[str]:
        with self._lock:
            return [d for o, d in zip(self.outcomes, self.details, strict=True) if o == "RESOURCE_EXHAUSTED"]

    def close(self) -> None:
        for call in self.calls:
            call.cancel()


@pytest.fixture
def watchers(make_gateway: Callable[..., Gateway]) -> Iterator[Callable[[Gateway], Watchers]]:
    made: list[tuple[grpc.Channel, Watchers]] = []

    def make(gateway: Gateway) -> Watchers:
        channel = insecure_channel(gateway.grpc_target)
        made.append((channel, Watchers(gateway_pb2_grpc.GatewayStub(channel))))
        return made[-1][1]

    yield make
    for channel, opened in made:
        opened.close()
        channel.close()


def long_calls(gateway: Gateway) -> float:
    """Long gRPC calls the gateway holds open now, as its metric says."""
    return gateway.metrics.registry.get_sample_value("itk_grpc_long_calls") or 0.0


def answers_quickly(gateway: Gateway, job_id: str, metadata: tuple | None = None) -> float:
    """Seconds a GetJob and a health check took together (each must answer within 5 s)."""
    with insecure_channel(gateway.grpc_target) as channel:
        started = time.monotonic()
        reply = gateway_pb2_grpc.GatewayStub(channel).GetJob(gateway_pb2.GetJobRequest(id=job_id),
                                                             metadata=metadata, timeout=5)
        assert reply.id == job_id
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        return time.monotonic() - started


def test_one_caller_with_many_watches_cannot_starve_the_others(make_gateway, watchers,
                                                               slow_generator: GeneratorHandle,
                                                               portrait: bytes) -> None:
    # Before: 48 watches from one caller took every one of the 32 worker threads, and GetJob
    # and the health check (Kubernetes' readiness probe) waited until a watch ended.
    gateway: Gateway = make_gateway(generator_targets=[slow_generator.target], grpc_workers=32,
                                    grpc_streams_total=24, grpc_streams_per_key=16)
    status, created = post_json(gateway, json_job(portrait, speech_wav(20.0)))
    assert status == 202, created
    opened = watchers(gateway)
    opened.open(created["id"], 48)
    wait_until(lambda: long_calls(gateway) == 16 and len(opened.refused()) == 48 - 16, timeout=30,
               message="16 watches open and 32 refused")
    assert answers_quickly(gateway, created["id"]) < 3.0
    refused = opened.refused()
    assert all("GRPC_STREAMS_PER_KEY" in detail for detail in refused), refused[:1]
    metrics = gateway.metrics.render().decode()
    assert "itk_grpc_long_calls 16.0" in metrics
    assert 'itk_requests_refused_total{reason="grpc_streams"} 32.0' in metrics


def test_long_calls_are_bounded_per_key_and_in_total(make_gateway, watchers, slow_generator: GeneratorHandle,
                                                     portrait: bytes) -> None:
    gateway: Gateway = make_gateway(api_keys=KEYS, generator_targets=[slow_generator.target], grpc_workers=16,
                                    grpc_streams_total=8, grpc_streams_per_key=4, rate_limit_per_sec=0.0)
    jobs = {}
    for key in (ALICE, BOB, OPS):
        reply = post_job(gateway, json_job(portrait, speech_wav(20.0)), key)
        assert reply.status_code == 202, reply.text
        jobs[key] = reply.json()["id"]
    alice, bob, ops = watchers(gateway), watchers(gateway), watchers(gateway)
    alice.open(jobs[ALICE], 6, ALICE)
    bob.open(jobs[BOB], 4, BOB)
    wait_until(lambda: long_calls(gateway) == 8 and len(alice.outcomes) == 2, timeout=30,
               message="8 watches open, 2 of alice's refused")
    assert len(alice.refused()) == 2 and all("GRPC_STREAMS_PER_KEY" in d for d in alice.refused())
    assert bob.outcomes == []
    ops.open(jobs[OPS], 1, OPS)
    wait_until(lambda: len(ops.outcomes) == 1, timeout=30, message="ops' watch answered")
    assert len(ops.refused()) == 1 and "GRPC_STREAMS_TOTAL" in ops.refused()[0], ops.outcomes
    # Short calls of every key still answer; a long call is admitted again once one has ended.
    metadata = (("authorization", f"Bearer {OPS}"),)
    assert answers_quickly(gateway, jobs[OPS], metadata) < 3.0
    alice.close()
    # A cancelled watch gives its thread back at its next look at the job (WATCH_POLL_SEC at most).
    wait_until(lambda: long_calls(gateway) == 4, timeout=WATCH_POLL_SEC + 20, message="alice's slots given back")
    ops.open(jobs[OPS], 1, OPS)
    wait_until(lambda: long_calls(gateway) == 5, timeout=30, message="ops' second watch open")
    assert len(ops.calls) == 2 and len(ops.outcomes) == 1  # the second is open
    reply = httpx.get(f"{gateway.rest_url}/jobs/{jobs[OPS]}?include_video=false", headers=auth(OPS))
    assert reply.status_code == 200


def test_stalled_uploads_count_as_long_calls(make_gateway, portrait: bytes) -> None:
    gateway: Gateway = make_gateway(grpc_workers=16, grpc_streams_total=8, grpc_streams_per_key=2)
    options = gateway_pb2.JobOptions(width=SIZE, height=SIZE, dry_run=True)
    audio = speech_wav(2.0)
    go_on = threading.Event()

    def stalled() -> Iterator[gateway_pb2.CreateJobRequest]:
        pieces = create_requests(options, portrait, audio)
        yield next(pieces)  # the options, then nothing until told
        go_on.wait(30)
        yield from pieces

    with insecure_channel(gateway.grpc_target) as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        uploads = [stub.CreateJob.future(stalled()) for _ in range(2)]
        wait_until(lambda: long_calls(gateway) == 2, timeout=30, message="two uploads open")
        with pytest.raises(grpc.RpcError) as raised:
            stub.CreateJob(create_requests(options, portrait, audio), timeout=10)
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "GRPC_STREAMS_PER_KEY" in (raised.value.details() or "")
        go_on.set()
        assert all(upload.result(timeout=30).id for upload in uploads)
        # Their slots are given back: the next upload goes through.
        assert stub.CreateJob(create_requests(options, portrait, audio), timeout=30).id


def test_streams_must_leave_workers_for_short_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRPC_WORKERS", "32")
    monkeypatch.setenv("GRPC_STREAMS_TOTAL", "30")
    with pytest.raises(ConfigError, match="GRPC_STREAMS_TOTAL=30 must leave 8 of GRPC_WORKERS=32"):
        Settings.from_env()


def test_an_upload_that_sends_nothing_is_dropped(make_gateway, portrait: bytes) -> None:
    """As a REST body that sends nothing for BODY_READ_TIMEOUT_SEC: the call ends, its thread and
    slot are given back, and nothing of the upload is kept."""
    gateway: Gateway = make_gateway(body_read_timeout_sec=1.0, grpc_streams_per_key=1)
    options = gateway_pb2.JobOptions(width=SIZE, height=SIZE, dry_run=True)
    audio = speech_wav(2.0)
    never = threading.Event()

    def stalled() -> Iterator[gateway_pb2.CreateJobRequest]:
        pieces = create_requests(options, portrait, audio)
        yield next(pieces)
        yield next(pieces)
        never.wait(30)

    with insecure_channel(gateway.grpc_target) as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as raised:
            stub.CreateJob(stalled(), timeout=20)
        assert raised.value.code() == grpc.StatusCode.CANCELLED
        assert time.monotonic() - started < 10.0  # 1 s idle, not the call's 20 s deadline
        never.set()
        # The one slot of this caller is free again once the server's thread has unwound.
        created: list[str] = []
        wait_until(lambda: admitted(stub, options, portrait, audio, created), timeout=10,
                   message="the slot given back")
    # Only the job admitted afterwards has files; the dropped upload left none.
    assert all(created[0] in path.name for path in leftovers(gateway)), leftovers(gateway)


def admitted(stub: gateway_pb2_grpc.GatewayStub, options: gateway_pb2.JobOptions, image: bytes, audio: bytes,
             created: list[str]) -> bool:
    try:
        created.append(stub.CreateJob(create_requests(options, image, audio), timeout=30).id)
        return True
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
            raise
        time.sleep(0.2)
        return False
