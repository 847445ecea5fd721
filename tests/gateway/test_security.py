"""API keys, job ownership and limits, on REST and gRPC, against a real gateway on loopback."""

from __future__ import annotations

import hashlib
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import httpx
import pytest

from infinitetalk.v1 import gateway_pb2, gateway_pb2_grpc
from itk_common.config import ConfigError
from itk_common.grpc_server import insecure_channel, wait_for_serving
from itk_gateway.config import Settings
from itk_gateway.errors import RateLimitedError
from itk_gateway.jobs.validation import new_job_id
from itk_gateway.security.limits import RateLimiter, UploadBudget
from itk_gateway.server import Gateway
from tests.gateway.conftest import SIZE, json_job, leftovers, speech_wav
from tests.gateway.test_grpc_api import create_requests
from tests.helpers.services import GeneratorHandle, wait_until

ALICE, BOB, OPS = "alice-key-0123456789abcdef", "bob-key-0123456789abcdef", "ops-key-0123456789abcdef"
KEYS = f"alice={ALICE},bob={BOB},ops={OPS}"


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def post_job(gateway: Gateway, body: bytes, key: str | None, **headers: str) -> httpx.Response:
    sent = {"Content-Type": "application/json", **(auth(key) if key else {}), **headers}
    return httpx.post(f"{gateway.rest_url}/jobs", content=body, headers=sent, timeout=60)


def wait_done(gateway: Gateway, job_id: str, key: str, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        state = httpx.get(f"{gateway.rest_url}/jobs/{job_id}?include_video=false", headers=auth(key)).json()
        if state["status"] not in ("IN_QUEUE", "RUNNING") or time.monotonic() > deadline:
            return state
        time.sleep(0.2)


@pytest.fixture
def keyed(make_gateway: Callable[..., Gateway]) -> Gateway:
    return make_gateway(api_keys=KEYS, api_admin_names=["ops"])


@pytest.fixture
def finished_job(keyed: Gateway, portrait: bytes) -> str:
    reply = post_job(keyed, json_job(portrait, speech_wav(3.0)), ALICE)
    assert reply.status_code == 202, reply.text
    job_id = reply.json()["id"]
    assert wait_done(keyed, job_id, ALICE)["status"] == "COMPLETED"
    return job_id


def test_auth_is_on_off_loopback_and_off_on_loopback_without_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(bind_host="0.0.0.0").auth_required
    assert Settings(bind_host="10.1.2.3").auth_required
    assert not Settings(bind_host="127.0.0.1").auth_required
    assert not Settings(bind_host="::1").auth_required
    assert Settings(bind_host="127.0.0.1", api_keys=KEYS).auth_required
    assert not Settings(bind_host="0.0.0.0", auth="off").auth_required
    assert Settings(bind_host="127.0.0.1", auth="required").auth_required
    monkeypatch.setenv("AUTH", "sometimes")
    with pytest.raises(ConfigError, match="AUTH"):
        Settings.from_env()


def test_rest_needs_a_valid_key_except_health_and_the_api_document(keyed: Gateway, portrait: bytes) -> None:
    base = keyed.rest_url
    for headers in ({}, auth("not-a-key-at-all-0000"), {"Authorization": "Basic YWxpY2U6eA=="}):
        reply = httpx.post(f"{base}/jobs", content=json_job(portrait, b"x"), headers=headers)
        assert reply.status_code == 401 and reply.json()["code"] == "UNAUTHORIZED", reply.text
        assert reply.headers["www-authenticate"].startswith("Bearer")
        assert httpx.get(f"{base}/jobs/{new_job_id()}", headers=headers).status_code == 401
    assert httpx.get(f"{base}/metrics").status_code == 401
    assert httpx.get(f"{base}/metrics", headers=auth(BOB)).status_code == 200
    assert httpx.get(f"{base}/health").json() == {"status": "ok"}
    assert httpx.get(f"{base}/openapi.json").status_code == 200
    assert leftovers(keyed) == []


def test_a_job_is_visible_only_to_its_key_and_admins(keyed: Gateway, finished_job: str) -> None:
    base, job = keyed.rest_url, finished_job
    # Another key: every endpoint answers exactly as for an id that never existed.
    for method, path in (("GET", ""), ("GET", "/video"), ("POST", "/cancel"), ("POST", "/video/delete"),
                         ("GET", "/events"), ("GET", "/hls/index.m3u8"), ("GET", "/hls/init-0.mp4")):
        reply = httpx.request(method, f"{base}/jobs/{job}{path}", headers=auth(BOB))
        assert reply.status_code == 404 and reply.json() == {"error": "job not found", "code": "JOB_NOT_FOUND"}
    # Untouched for its owner (X-API-Key works as well as Bearer), visible to the admin key.
    state = httpx.get(f"{base}/jobs/{job}", headers={"X-API-Key": ALICE}).json()
    assert state["status"] == "COMPLETED" and state["video_base64"]
    assert httpx.get(f"{base}/jobs/{job}/video", headers=auth(OPS)).content[4:8] == b"ftyp"
    assert httpx.post(f"{base}/jobs/{job}/video/delete", headers=auth(OPS)).status_code == 204
    assert not httpx.get(f"{base}/jobs/{job}", headers=auth(ALICE)).json()["video_available"]


def test_grpc_needs_a_key_and_enforces_ownership(keyed: Gateway, finished_job: str, portrait: bytes) -> None:
    wait_for_serving(keyed.grpc_target, timeout=5)  # health stays open for probes
    with insecure_channel(keyed.grpc_target) as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        bob = (("authorization", f"Bearer {BOB}"),)
        alice = (("authorization", ALICE),)  # the bare key is accepted too
        calls = [
            lambda md: stub.GetJob(gateway_pb2.GetJobRequest(id=finished_job), metadata=md),
            lambda md: list(stub.WatchJob(gateway_pb2.WatchJobRequest(id=finished_job), metadata=md)),
            lambda md: list(stub.DownloadVideo(gateway_pb2.DownloadVideoRequest(id=finished_job), metadata=md)),
            lambda md: stub.CancelJob(gateway_pb2.CancelJobRequest(id=finished_job), metadata=md),
            lambda md: stub.DeleteVideo(gateway_pb2.DeleteVideoRequest(id=finished_job), metadata=md),
            lambda md: list(stub.StreamSegments(gateway_pb2.StreamSegmentsRequest(id=finished_job), metadata=md)),
        ]
        for rpc in calls:
            for metadata, code in (((), grpc.StatusCode.UNAUTHENTICATED), (bob, grpc.StatusCode.NOT_FOUND)):
                with pytest.raises(grpc.RpcError) as raised:
                    rpc(metadata)
                assert raised.value.code() == code, raised.value.details()
        options = gateway_pb2.JobOptions(width=SIZE, height=SIZE, dry_run=True)
        with pytest.raises(grpc.RpcError) as raised:
            stub.CreateJob(create_requests(options, portrait, speech_wav(3.0)))
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert stub.GetJob(gateway_pb2.GetJobRequest(id=finished_job), metadata=alice).status == gateway_pb2.COMPLETED
        created = stub.CreateJob(create_requests(options, portrait, speech_wav(3.0)), metadata=bob)
        assert stub.GetJob(gateway_pb2.GetJobRequest(id=created.id), metadata=bob).id == created.id
        with pytest.raises(grpc.RpcError) as raised:
            stub.GetJob(gateway_pb2.GetJobRequest(id=created.id), metadata=alice)
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND


def test_keys_file_holds_digests_and_is_reread(make_gateway: Callable[..., Gateway], tmp_path: Path) -> None:
    keys_file = tmp_path / "keys"
    digest = hashlib.sha256(ALICE.encode()).hexdigest()
    keys_file.write_text(f"# name:sha256\nalice:{digest}\n")
    gateway = make_gateway(api_keys_file=keys_file)
    probe = f"{gateway.rest_url}/jobs/{new_job_id()}"
    assert httpx.get(probe, headers=auth(ALICE)).status_code == 404
    assert httpx.get(probe, headers=auth(BOB)).status_code == 401
    keys_file.write_text(f"bob:{hashlib.sha256(BOB.encode()).hexdigest()}:admin\n")
    wait_until(lambda: httpx.get(probe, headers=auth(BOB)).status_code == 404, timeout=5,
               message="the new key accepted")
    assert httpx.get(probe, headers=auth(ALICE)).status_code == 401
    assert gateway.guard.authenticate(BOB).admin
    keys_file.write_text("this line is not a key\n")  # a broken file keeps the keys last read
    time.sleep(1.2)
    assert httpx.get(probe, headers=auth(BOB)).status_code == 404


def test_job_ids_carry_128_random_bits(gateway: Gateway, portrait: bytes) -> None:
    ids = {new_job_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"job-\d+-[0-9a-f]{32}", job_id) for job_id in ids)
    reply = post_job(gateway, json_job(portrait, speech_wav(3.0), dry_run=True), None)
    assert re.fullmatch(r"job-\d+-[0-9a-f]{32}", reply.json()["id"])


def test_rate_limit_per_key_rest_and_grpc(make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway(api_keys=KEYS, rate_limit_per_sec=0.5, rate_limit_burst=3)
    probe = f"{gateway.rest_url}/jobs/{new_job_id()}"
    assert [httpx.get(probe, headers=auth(ALICE)).status_code for _ in range(3)] == [404] * 3
    limited = httpx.get(probe, headers=auth(ALICE))
    assert limited.status_code == 429 and limited.json()["code"] == "RATE_LIMITED"
    assert 1 <= int(limited.headers["retry-after"]) <= 2
    assert httpx.get(probe, headers=auth(BOB)).status_code == 404  # another key has its own budget
    assert httpx.get(f"{gateway.rest_url}/health").status_code == 200  # probes are never limited
    with insecure_channel(gateway.grpc_target) as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        request = gateway_pb2.GetJobRequest(id=new_job_id())
        with pytest.raises(grpc.RpcError) as raised:
            stub.GetJob(request, metadata=(("authorization", f"Bearer {ALICE}"),))
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert dict(raised.value.trailing_metadata())["retry-after"] in ("1", "2")
    assert httpx.get(probe).status_code == 401
    metrics = gateway.metrics.render().decode()
    assert 'itk_requests_refused_total{reason="rate_limited"} 2.0' in metrics
    assert 'itk_requests_refused_total{reason="unauthorized"} 1.0' in metrics


def test_jobs_in_flight_per_key(make_gateway: Callable[..., Gateway], slow_generator: GeneratorHandle,
                                portrait: bytes) -> None:
    gateway = make_gateway(api_keys=KEYS, max_active_jobs_per_key=1, generator_targets=[slow_generator.target])
    body = json_job(portrait, speech_wav(6.0))
    first = post_job(gateway, body, ALICE)
    assert first.status_code == 202
    second = post_job(gateway, body, ALICE)
    assert second.status_code == 429 and second.json()["code"] == "RATE_LIMITED"
    assert "MAX_ACTIVE_JOBS_PER_KEY" in second.json()["error"] and int(second.headers["retry-after"]) >= 1
    with insecure_channel(gateway.grpc_target) as channel:
        options = gateway_pb2.JobOptions(width=SIZE, height=SIZE)
        with pytest.raises(grpc.RpcError) as raised:
            gateway_pb2_grpc.GatewayStub(channel).CreateJob(
                create_requests(options, portrait, speech_wav(3.0)), metadata=(("authorization", ALICE),))
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    other = post_job(gateway, json_job(portrait, speech_wav(3.0), dry_run=True), BOB)
    assert other.status_code == 202
    job_id = first.json()["id"]
    assert httpx.post(f"{gateway.rest_url}/jobs/{job_id}/cancel", headers=auth(ALICE)).status_code == 200
    assert post_job(gateway, json_job(portrait, speech_wav(3.0), dry_run=True), ALICE).status_code == 202


def test_upload_bytes_in_flight_are_bounded(make_gateway: Callable[..., Gateway], portrait: bytes) -> None:
    budget = UploadBudget(100)
    budget.reserve(60)
    with pytest.raises(RateLimitedError):
        budget.reserve(41)
    budget.release(60)
    budget.reserve(100)
    gateway = make_gateway(max_uploads_in_flight_mb=1)
    reply = post_job(gateway, json_job(portrait, speech_wav(40.0)), None)  # 1.3 MB of audio
    assert reply.status_code == 429 and reply.json()["code"] == "RATE_LIMITED" and reply.headers["retry-after"]
    assert gateway.service.upload_budget.in_flight == 0
    assert leftovers(gateway) == []
    assert post_job(gateway, json_job(portrait, speech_wav(3.0), dry_run=True), None).status_code == 202


def test_token_bucket_refills() -> None:
    limiter = RateLimiter(rate=20.0, burst=2)
    limiter.take("a")
    limiter.take("a")
    with pytest.raises(RateLimitedError) as raised:
        limiter.take("a")
    assert 0 < raised.value.retry_after_sec <= 0.05 + 1e-9
    time.sleep(0.06)
    limiter.take("a")


def test_a_stalled_upload_is_dropped(make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway(body_read_timeout_sec=0.5)
    with socket.create_connection(("127.0.0.1", gateway.rest_port), timeout=10) as conn:
        conn.sendall(b"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100000\r\n\r\n{\"image_base64\": \"iVBORw0K")
        started = time.monotonic()
        answer = conn.recv(65536)
        assert time.monotonic() - started < 5
        # The head and the body may come in separate packets.
        while b"\r\n\r\n" in answer and len(answer.partition(b"\r\n\r\n")[2]) < 20 and (more := conn.recv(65536)):
            answer += more
    assert answer.startswith(b"HTTP/1.1 408") and b"REQUEST_TIMEOUT" in answer, answer
    assert leftovers(gateway) == []


def test_cors_is_off_unless_origins_are_configured(make_gateway: Callable[..., Gateway]) -> None:
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    closed = make_gateway()
    reply = httpx.options(f"{closed.rest_url}/jobs", headers=preflight)
    assert "access-control-allow-origin" not in reply.headers
    assert "access-control-allow-origin" not in httpx.get(f"{closed.rest_url}/health", headers=preflight).headers
    opened = make_gateway(cors_allowed_origins=["https://app.example"], data_dir=closed.settings.data_dir / "b")
    reply = httpx.options(f"{opened.rest_url}/jobs", headers=preflight)
    assert reply.status_code == 200 and reply.headers["access-control-allow-origin"] == "https://app.example"
    reply = httpx.options(f"{opened.rest_url}/jobs", headers={**preflight, "Origin": "https://evil.example"})
    assert reply.headers.get("access-control-allow-origin") != "https://evil.example"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
def test_json_bodies_need_a_json_content_type(gateway: Gateway, portrait: bytes, content_type: str) -> None:
    # What a form on another site could send without a preflight: never a job.
    body = json_job(portrait, speech_wav(3.0), dry_run=True)
    reply = httpx.post(f"{gateway.rest_url}/jobs", content=body, headers={"Content-Type": content_type})
    assert reply.status_code == 415 and reply.json()["code"] == "VALIDATION_ERROR", reply.text
    assert "Content-Type" in reply.json()["error"]
    assert leftovers(gateway) == [] and sum(gateway.store.count_by_status().values()) == 0


def test_trusted_hosts(make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway(trusted_hosts=["api.example.com", "*.internal.example"])
    url = f"{gateway.rest_url}/jobs/{new_job_id()}"
    assert httpx.get(url, headers={"Host": "api.example.com"}).status_code == 404
    assert httpx.get(url, headers={"Host": "gw.internal.example:8080"}).status_code == 404
    reply = httpx.get(url, headers={"Host": "evil.example"})
    assert reply.status_code == 400 and reply.json()["code"] == "VALIDATION_ERROR" and "Host" in reply.json()["error"]
    # Probes address the pod by its IP: /health answers whatever the Host.
    assert httpx.get(f"{gateway.rest_url}/health", headers={"Host": "10.1.2.3:8080"}).status_code == 200


def test_metrics_on_a_port_of_their_own(make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway(api_keys=KEYS, metrics_port=0)
    assert gateway.metrics_port > 0
    scraped = httpx.get(f"http://127.0.0.1:{gateway.metrics_port}/metrics")
    assert scraped.status_code == 200 and "itk_chunks_pending" in scraped.text
    assert httpx.get(f"{gateway.rest_url}/metrics", headers=auth(ALICE)).status_code == 404


def test_python_client_sends_its_key(keyed: Gateway, portrait: bytes) -> None:
    from itk_client import Client, GatewayError

    with Client(keyed.rest_url, api_key=ALICE) as client:
        job_id = client.submit_json(portrait, speech_wav(3.0), SIZE, SIZE, dry_run=True)
        assert client.get(job_id).id == job_id
        assert [job.id for job in client.list()] == [job_id]  # the key's own jobs only
    with Client(keyed.rest_url, api_key=BOB) as other:
        assert other.list() == []
        with pytest.raises(GatewayError) as raised:
            other.get(job_id)
        assert raised.value.status == 404
    with Client(keyed.rest_url, api_key="") as nobody, pytest.raises(GatewayError) as raised:
        nobody.get(job_id)
    assert raised.value.status == 401 and raised.value.code == "UNAUTHORIZED"


def test_anonymous_callers_are_limited_per_address_but_not_on_loopback() -> None:
    from itk_gateway.security.guard import Guard
    from itk_gateway.security.keys import KeyRing

    guard = Guard(KeyRing(), required=False, limiter=RateLimiter(rate=0.001, burst=1))
    for _ in range(5):
        guard.admit("", "127.0.0.1")
        guard.admit("", "ipv6:[::1]:5000")
    guard.admit("", "10.0.0.5")
    with pytest.raises(RateLimitedError):
        guard.admit("", "ipv4:10.0.0.5:41000")
    guard.admit("", "10.0.0.6")


def test_modal_credentials_are_keys_and_ownership_holds(keyed: Gateway, finished_job: str) -> None:
    url = f"{keyed.rest_url}/modal/result?call_id={finished_job}"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Modal-Key": "bob", "Modal-Secret": BOB}).status_code == 404
    reply = httpx.get(url, headers={"Modal-Key": "alice", "Modal-Secret": ALICE})
    assert reply.status_code == 200 and reply.content[4:8] == b"ftyp"
