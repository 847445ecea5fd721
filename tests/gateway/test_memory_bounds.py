"""Big JSON uploads and big `video_base64` answers stream: gateway memory stays flat whatever their size.

The client runs in a separate process (streaming its body from a file and reading the answer in
pieces), so Python's allocation tracer in this process sees only the gateway's own allocations.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from itk_gateway.jobs.validation import JobOptions, new_job_id
from itk_gateway.server import Gateway
from itk_gateway.storage.store import COMPLETED

MB = 1024 * 1024
MEDIA_MB = 24
# What one request may add to the gateway's peak: network and decode buffers, not the payload.
PEAK_LIMIT = 6 * MB

CLIENT = r"""
import http.client, json, os, sys
method, port, path, body_file = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
headers = {"Content-Type": "application/json"}
if body_file != "-":
    headers["Content-Length"] = str(os.path.getsize(body_file))
    body = open(body_file, "rb")
else:
    body = None
conn.request(method, path, body=body, headers=headers)
reply = conn.getresponse()
size, head = 0, b""
while piece := reply.read(256 * 1024):
    size += len(piece)
    head = (head + piece)[:200] if len(head) < 200 else head
    tail = piece[-200:]
print(json.dumps({"status": reply.status, "size": size, "head": head.decode(errors="replace"),
                  "tail": tail.decode(errors="replace") if size else ""}))
"""


@pytest.fixture
def traced() -> Iterator[None]:
    tracemalloc.start()
    yield
    tracemalloc.stop()


def client(gateway: Gateway, method: str, path: str, body: Path | None = None) -> dict:
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-c", CLIENT, method, str(gateway.rest_port), path,
                          str(body) if body else "-"], capture_output=True, text=True, timeout=180, check=True)
    reply = json.loads(out.stdout)
    reply["seconds"] = time.monotonic() - started
    return reply


def measure(gateway: Gateway, method: str, path: str, body: Path | None = None) -> tuple[dict, int]:
    tracemalloc.reset_peak()
    baseline, _ = tracemalloc.get_traced_memory()
    reply = client(gateway, method, path, body)
    _, peak = tracemalloc.get_traced_memory()
    return reply, peak - baseline


def test_json_upload_is_decoded_as_it_streams(gateway: Gateway, tmp_path: Path, traced: None) -> None:
    # 24 MiB of media (32 MiB of base64); the tiny image is not one, so the job is refused after
    # the whole upload was received and decoded, before any splitting (which is not measured here).
    body = tmp_path / "body.json"
    with body.open("wb") as out:
        out.write(b'{"width": 64, "height": 64, "image_base64": "' + base64.b64encode(b"not an image" * 10))
        out.write(b'", "audio_base64": "')
        block = os.urandom(3 * MB)
        for _ in range(MEDIA_MB // 3):
            out.write(base64.b64encode(block))
        out.write(b'"}')
    reply, peak = measure(gateway, "POST", "/jobs", body)
    assert reply["status"] == 400 and "image" in reply["head"], reply
    print(f"JSON upload of {body.stat().st_size / MB:.0f} MiB: gateway peak +{peak / MB:.1f} MiB")
    assert peak < PEAK_LIMIT, f"a {body.stat().st_size / MB:.0f} MiB upload raised the peak by {peak / MB:.0f} MiB"


def test_video_base64_is_streamed_from_the_file(gateway: Gateway, traced: None) -> None:
    job_id = new_job_id()
    gateway.store.create_job(job_id, JobOptions(width=64, height=64, pool="infinitetalk", seed=1))
    gateway.store.finish_job(job_id, COMPLETED, progress=100, has_video=1)
    video = os.urandom(MEDIA_MB * MB)
    gateway.files.result(job_id).write_bytes(video)
    reply, peak = measure(gateway, "GET", f"/jobs/{job_id}")
    assert reply["status"] == 200 and reply["size"] > 4 * len(video) // 3, reply
    assert reply["head"].startswith('{"id": "' + job_id) and reply["tail"].endswith('"}')
    print(f"GET of a {MEDIA_MB} MiB video as base64: gateway peak +{peak / MB:.1f} MiB")
    assert peak < PEAK_LIMIT, f"answering with a {MEDIA_MB} MiB video raised the peak by {peak / MB:.0f} MiB"


def test_streamed_video_base64_decodes_to_the_file(gateway: Gateway) -> None:
    import httpx

    job_id = new_job_id()
    gateway.store.create_job(job_id, JobOptions(width=64, height=64, pool="infinitetalk", seed=1))
    gateway.store.finish_job(job_id, COMPLETED, progress=100, has_video=1)
    video = os.urandom(2 * MB + 1)
    gateway.files.result(job_id).write_bytes(video)
    reply = httpx.get(f"{gateway.rest_url}/jobs/{job_id}")
    assert int(reply.headers["content-length"]) == len(reply.content)
    state = reply.json()
    assert base64.b64decode(state["video_base64"]) == video
    assert state["status"] == "COMPLETED" and state["id"] == job_id and state["video_available"]
