"""Progress and notifications: server-sent events, signed webhooks with retries, Idempotency-Key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import ipaddress
import json
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import pairwise

import grpc
import httpx
import pytest

from itk_gateway.jobs.webhooks import (
    WebhookEvent,
    WebhookNotifier,
    WebhookSettings,
    creation_problem,
    private_address_problem,
    secret_key,
    sign,
)
from itk_gateway.server import Gateway
from tests.gateway.conftest import json_job, leftovers, post_json, speech_wav
from tests.helpers.rest import call, submit_multipart, wait_for_job
from tests.helpers.services import GeneratorHandle, wait_until

SECRET = "whsec_" + base64.b64encode(b"a test secret of thirty-two byte").decode()


def read_events(url: str, timeout: float = 60.0) -> list[tuple[str, str]]:
    """(event or ':comment', data) for every event of an SSE stream, until the server closes it."""
    events: list[tuple[str, str]] = []
    kind, data = "", []
    with httpx.stream("GET", url, timeout=timeout) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        for line in reply.iter_lines():
            if line.startswith(":"):
                events.append((":comment", line))
            elif line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
            elif not line and kind:
                events.append((kind, "\n".join(data)))
                kind, data = "", []
    return events


def test_events_stream_status_progress_keepalives_and_end(make_gateway: Callable[..., Gateway],
                                                          slow_generator: GeneratorHandle,
                                                          portrait: bytes) -> None:
    gateway = make_gateway(generator_targets=[slow_generator.target], sse_keepalive_sec=0.3, min_lane_sec=1.5)
    job_id = submit_multipart(gateway.rest_url, portrait, speech_wav(4.0), width=64, height=64, lanes=2)
    events = read_events(f"{gateway.rest_url}/jobs/{job_id}/events")
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "status" and kinds[-1] == "end"
    assert ":comment" in kinds  # the 2 s per audio second generator leaves idle stretches
    states = [json.loads(data) for kind, data in events if kind in ("status", "progress")]
    assert [s["status"] for s in states if s["status"] != states[0]["status"]][-1] == "COMPLETED"
    frames = [s["frames_done"] for s in states]
    assert frames == sorted(frames) and len(set(frames)) > 0 and frames[-1] == states[-1]["frames_total"]
    running = [s for s in states if s["status"] == "RUNNING"]
    assert running and all("pieces" in s and "eta_sec" in s and "segments_ready" in s for s in running)
    assert any(p["status"] == "running" and p["endpoint"] for s in running for p in s["pieces"])
    assert any(s["eta_sec"] is not None and s["eta_sec"] > 0 for s in running)
    assert states[-1]["segments_ready"] == states[-1]["chunk_count"]
    assert json.loads(events[-1][1]) == {"id": job_id, "status": "COMPLETED"}
    # Progress per lane: the events carry the plan (lanes and the seam between them) and each
    # piece's lane, and a lane's pieces done only grow, up to its piece count.
    planned = [s for s in running if s["lanes"]]
    assert planned and all(s["lane_count"] == 2 and len(s["lanes"]) == 2 and len(s["seams"]) == 1 for s in planned)
    for state in planned:
        for lane in state["lanes"]:
            mine = [p for p in state["pieces"] if p["lane"] == lane["index"]]
            assert len(mine) == lane["chunk_count"]
            # (<=: the pieces are read just after the job, so one may have finished in between)
            assert lane["chunks_done"] <= sum(p["status"] == "done" for p in mine)
        assert state["seams"][0]["time_sec"] == state["lanes"][1]["start_sec"]
    done_per_lane = [[lane["chunks_done"] for lane in s["lanes"]] for s in planned]
    assert all(a <= b for earlier, later in pairwise(done_per_lane) for a, b in zip(earlier, later, strict=True))
    final_lanes = states[-1]["lanes"]
    assert [lane["chunks_done"] for lane in final_lanes] == [lane["chunk_count"] for lane in final_lanes]
    # A finished job's stream is its final state and the end, at once.
    assert [kind for kind, _ in read_events(f"{gateway.rest_url}/jobs/{job_id}/events")] == ["status", "end"]
    status, body = call("GET", f"{gateway.rest_url}/jobs/job-1-00000000/events")
    assert status == 404 and body["code"] == "JOB_NOT_FOUND"


@dataclass
class Receiver:
    """A webhook endpoint on loopback that checks signatures and fails the first delivery."""

    key: bytes
    fail_first: int = 1
    received: list[dict] = field(default_factory=list)
    attempts: list[str] = field(default_factory=list)
    bad_signatures: int = 0
    hosts: list[str] = field(default_factory=list)
    server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def handle(self, handler: http.server.BaseHTTPRequestHandler) -> int:
        body = handler.rfile.read(int(handler.headers["content-length"]))
        self.hosts.append(handler.headers["host"])
        message_id = handler.headers["webhook-id"]
        timestamp = handler.headers["webhook-timestamp"]
        expected = base64.b64encode(hmac.new(self.key, f"{message_id}.{timestamp}.".encode() + body,
                                             hashlib.sha256).digest()).decode()
        signatures = [s.split(",", 1)[1] for s in handler.headers["webhook-signature"].split() if s.startswith("v1,")]
        if not any(hmac.compare_digest(expected, s) for s in signatures) or abs(time.time() - int(timestamp)) > 300:
            self.bad_signatures += 1
            return 401
        self.attempts.append(message_id)
        if len(self.attempts) <= self.fail_first:
            return 500
        if message_id not in {e["_id"] for e in self.received}:
            self.received.append(json.loads(body) | {"_id": message_id})
        return 204


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(secret_key(SECRET))

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(state.handle(self))
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    state.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=state.server.serve_forever, daemon=True)
    thread.start()
    yield state
    state.server.shutdown()
    state.server.server_close()


def test_signing_matches_the_standard_webhooks_example() -> None:
    # The example of the Standard Webhooks specification (its reference test vector).
    key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    body = b'{"test": 2432232314}'
    assert sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == \
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_webhooks_are_signed_retried_and_cover_the_job(make_gateway: Callable[..., Gateway],
                                                       slow_generator: GeneratorHandle, receiver: Receiver,
                                                       portrait: bytes) -> None:
    gateway = make_gateway(generator_targets=[slow_generator.target], webhook_secret=SECRET,
                           webhook_allow_private=True, webhook_retry_backoff_sec=0.2,
                           webhook_progress_interval_sec=0.5, quality_report=True)
    status, created = post_json(gateway, json_job(portrait, speech_wav(4.0), webhook_url=receiver.url))
    assert status == 202, created
    final = wait_for_job(gateway.rest_url, created["id"], timeout=60)
    assert final["status"] == "COMPLETED"
    wait_until(lambda: any(e["type"] == "job.quality" for e in receiver.received), timeout=60,
               message="job.quality delivered")
    types = [e["type"] for e in receiver.received]
    assert types[0] == "job.started" and types[-2:] == ["job.completed", "job.quality"]
    assert "job.progress" in types and set(types) <= {"job.started", "job.progress", "job.completed", "job.quality"}
    assert types.count("job.started") == 1 and types.count("job.completed") == 1
    # COMPLETED comes with the report pending, then the report on its own event.
    assert receiver.received[-2]["data"]["quality"]["state"] == "pending"
    assert receiver.received[-1]["data"]["quality"]["state"] in ("ready", "failed")
    # The first attempt got a 500; the same event (same webhook-id) came again and was accepted.
    assert receiver.attempts[0] == receiver.attempts[1] == receiver.received[0]["_id"]
    assert receiver.bad_signatures == 0
    last = receiver.received[-1]["data"]
    assert last["id"] == created["id"] and last["status"] == "COMPLETED" and last["progress"] == 100
    assert receiver.received[-1]["data"]["quality"]["state"] == "ready", receiver.received[-1]["data"]["quality"]
    progress = [e["data"]["progress"] for e in receiver.received if e["type"] == "job.progress"]
    assert progress == sorted(progress)
    metrics = httpx.get(f"{gateway.rest_url}/metrics").text
    assert 'itk_webhook_deliveries_total{outcome="retried"} 1.0' in metrics


def test_webhook_failed_and_cancelled(make_gateway: Callable[..., Gateway], slow_generator: GeneratorHandle,
                                      receiver: Receiver, portrait: bytes) -> None:
    receiver.fail_first = 0
    gateway = make_gateway(generator_targets=[slow_generator.target], webhook_secret=SECRET,
                           webhook_allow_private=True, webhook_retry_backoff_sec=0.1)
    status, created = post_json(gateway, json_job(portrait, speech_wav(6.0), webhook_url=receiver.url))
    wait_until(lambda: call("GET", f"{gateway.rest_url}/jobs/{created['id']}")[1]["status"] == "RUNNING",
               message="job running")
    assert call("POST", f"{gateway.rest_url}/jobs/{created['id']}/cancel")[0] == 200
    wait_until(lambda: any(e["type"] == "job.cancelled" for e in receiver.received), message="job.cancelled")
    assert receiver.received[-1]["data"]["status"] == "CANCELLED"

    slow_generator.backend.failure = RuntimeError("the GPU fell off the bus")
    gateway2 = make_gateway(generator_targets=[slow_generator.target], webhook_secret=SECRET,
                            webhook_allow_private=True, generator_max_attempts=1,
                            data_dir=gateway.settings.data_dir.parent / "second")
    status, created = post_json(gateway2, json_job(portrait, speech_wav(3.0), webhook_url=receiver.url))
    assert status == 202
    wait_until(lambda: any(e["type"] == "job.failed" for e in receiver.received), message="job.failed")
    assert receiver.received[-1]["data"]["status"] == "FAILED"


def test_webhook_url_is_checked(make_gateway: Callable[..., Gateway], portrait: bytes) -> None:
    plain = make_gateway()
    status, body = post_json(plain, json_job(portrait, speech_wav(1.0), webhook_url="http://127.0.0.1:9/x"))
    assert status == 400 and "WEBHOOK_SECRET" in body["error"]
    signed = make_gateway(webhook_secret=SECRET, data_dir=plain.settings.data_dir.parent / "signed")
    status, body = post_json(signed, json_job(portrait, speech_wav(1.0), webhook_url="ftp://example.com/x"))
    assert status == 400 and body["code"] == "VALIDATION_ERROR" and body["error"].startswith("webhook_url:")
    # The gateway does not call into its own network for a client unless told it may.
    for private in ("http://127.0.0.1:9/hooks", "http://169.254.169.254/latest/meta-data", "http://10.1.2.3/x"):
        status, body = post_json(signed, json_job(portrait, speech_wav(1.0), webhook_url=private))
        assert status == 400 and "non-public address" in body["error"], body
    assert leftovers(signed) == []


def test_a_slow_name_server_cannot_hold_a_create() -> None:
    """The check made while a job is created waits for DNS at most its bound; the host is checked
    again before every delivery, so a slow answer lets nothing private through."""
    answer = threading.Event()

    def slow(_host: str, _port: int) -> list:
        answer.wait(10)
        return [ipaddress.ip_address("127.0.0.1")]

    started = time.monotonic()
    assert creation_problem("http://slow.example/hook", resolver=slow, wait_sec=0.3) is None
    assert time.monotonic() - started < 2.0
    answer.set()
    assert "non-public address 127.0.0.1" in private_address_problem("http://slow.example/hook", resolver=slow)

    def private(_host: str, _port: int) -> list:
        return [ipaddress.ip_address("10.0.0.7")]

    def missing(_host: str, _port: int) -> list:
        raise OSError(-2, "Name or service not known")

    assert "non-public address 10.0.0.7" in creation_problem("http://in.cluster/hook", resolver=private)
    assert "does not resolve (Name or service not known)" in creation_problem("http://nowhere.example/",
                                                                              resolver=missing)


def test_a_delivery_connects_to_the_address_it_checked(receiver: Receiver) -> None:
    """The host is resolved once per delivery and the POST goes to that address (with the URL's
    Host header), so a name server cannot answer a public address to the check and a private
    one to the connection."""
    receiver.fail_first = 0
    port = receiver.server.server_address[1] if receiver.server else 0
    lookups: list[str] = []

    def resolver(host: str, _port: int) -> list:
        lookups.append(host)
        # Nothing listens on the first address: the next one is tried, as a resolving client does.
        return [ipaddress.ip_address("127.0.0.2"), ipaddress.ip_address("127.0.0.1")]

    outcomes: list[str] = []
    event = WebhookEvent(id="msg_pinned", type="job.completed", body=b'{"type": "job.completed"}')
    # `receiver.test` is in no DNS: only the address the check resolved can reach the receiver.
    url = f"http://receiver.test:{port}/hooks"
    trusting = WebhookNotifier(None, WebhookSettings(SECRET, max_attempts=1, allow_private=True),  # type: ignore[arg-type]
                               describe=dict, on_delivery=outcomes.append, resolver=resolver)
    trusting._deliver(url, secret_key(SECRET), event, queue.Queue())
    assert outcomes == ["delivered"] and lookups == ["receiver.test"]
    assert receiver.hosts == [f"receiver.test:{port}"]

    # Not trusting private addresses, the same answer stops the delivery before any connection.
    strict = WebhookNotifier(None, WebhookSettings(SECRET, max_attempts=3), describe=dict,  # type: ignore[arg-type]
                             on_delivery=outcomes.append, resolver=resolver)
    strict._deliver(url, secret_key(SECRET), event, queue.Queue())
    assert outcomes[-1] == "failed" and len(receiver.hosts) == 1
    trusting.stop()
    strict.stop()


def post_with_key(gateway: Gateway, body: bytes, key: str) -> httpx.Response:
    return httpx.post(f"{gateway.rest_url}/jobs", content=body, timeout=60,
                      headers={"Content-Type": "application/json", "Idempotency-Key": key})


def test_idempotency_key(gateway: Gateway, portrait: bytes) -> None:
    audio = speech_wav(2.0)
    body = json_job(portrait, audio, prompt="hello")
    first = post_with_key(gateway, body, "order-42")
    assert first.status_code == 202
    # A retry (the same body, even re-encoded with its keys in another order) gets the same job.
    reordered = json.dumps(dict(reversed(list(json.loads(body).items())))).encode()
    again = post_with_key(gateway, reordered, "order-42")
    assert again.status_code == 202 and again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    # The same key with another request is a conflict, and leaves nothing behind.
    other = post_with_key(gateway, json_job(portrait, audio, prompt="something else"), "order-42")
    assert other.status_code == 409 and other.json()["code"] == "IDEMPOTENCY_CONFLICT"
    # Multipart with the same files and fields under the key also replays.
    fields = {"width": "64", "height": "64"}
    files = {"image": ("p.png", portrait), "audio": ("a.wav", audio)}
    m1 = httpx.post(f"{gateway.rest_url}/jobs", data=fields, files=files, headers={"Idempotency-Key": "form-1"})
    m2 = httpx.post(f"{gateway.rest_url}/jobs", data=fields, files=files, headers={"Idempotency-Key": "form-1"})
    assert m1.status_code == m2.status_code == 202 and m1.json()["id"] == m2.json()["id"]
    bad = post_with_key(gateway, body, "has space")
    assert bad.status_code == 400 and "Idempotency-Key" in bad.json()["error"]
    # Without a key, each request is a new job.
    assert post_json(gateway, body)[1]["id"] != first.json()["id"]
    for job_id in (first.json()["id"], m1.json()["id"]):
        wait_for_job(gateway.rest_url, job_id, timeout=60)
    jobs = [job["id"] for job in httpx.get(f"{gateway.rest_url}/jobs?limit=10").json()["jobs"]]
    assert len(jobs) == 3 and set(jobs) >= {first.json()["id"], m1.json()["id"]}
    assert httpx.get(f"{gateway.rest_url}/jobs?limit=0").status_code == 400


def test_idempotency_key_over_grpc(gateway: Gateway, portrait: bytes) -> None:
    from infinitetalk.v1 import gateway_pb2, gateway_pb2_grpc
    from itk_common.grpc_server import insecure_channel
    from tests.gateway.test_grpc_api import create_requests

    audio = speech_wav(2.0)
    options = gateway_pb2.JobOptions(width=64, height=64, prompt="grpc")
    with insecure_channel(gateway.grpc_target) as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        key = (("idempotency-key", "grpc-7"),)
        first = stub.CreateJob(create_requests(options, portrait, audio), metadata=key)
        again = stub.CreateJob(create_requests(options, portrait, audio), metadata=key)
        assert again.id == first.id
        other = gateway_pb2.JobOptions(width=64, height=64, prompt="another")
        with pytest.raises(grpc.RpcError) as conflict:
            stub.CreateJob(create_requests(other, portrait, audio), metadata=key)
        assert conflict.value.code() == grpc.StatusCode.ALREADY_EXISTS
    wait_for_job(gateway.rest_url, first.id, timeout=60)


def test_a_job_found_finished_at_resume_tells_its_webhook(make_gateway: Callable[..., Gateway], receiver: Receiver,
                                                          portrait: bytes) -> None:
    """The gateway died with the video done but COMPLETED not yet recorded: the next one records it
    and sends `job.completed`, then `job.quality` (its receiver had `job.started` already)."""
    receiver.fail_first = 0
    options = {"webhook_secret": SECRET, "webhook_allow_private": True, "quality_report": True}
    first = make_gateway(**options)
    status, created = post_json(first, json_job(portrait, speech_wav(3.0), webhook_url=receiver.url))
    assert status == 202, created
    job_id = created["id"]
    wait_until(lambda: any(e["type"] == "job.quality" for e in receiver.received), timeout=60,
               message="the first run's job.quality")
    first.stop()
    receiver.received.clear()
    # What that death leaves: the video, the portrait beside it, the row still RUNNING.
    first.files.quality_reference(job_id).write_bytes(portrait)
    database = sqlite3.connect(first.settings.database)
    with database:
        database.execute("UPDATE jobs SET status = 'RUNNING', quality = '', progress = 95,"
                         " lease_owner = 'dead-gateway', lease_until = 0 WHERE id = ?", (job_id,))
    database.close()

    make_gateway(**options)
    wait_until(lambda: any(e["type"] == "job.quality" for e in receiver.received), timeout=60,
               message="job.quality after the resume")
    assert [e["type"] for e in receiver.received] == ["job.completed", "job.quality"]
    assert receiver.received[0]["data"]["status"] == "COMPLETED"
    assert receiver.received[1]["data"]["quality"]["state"] in ("ready", "failed")
