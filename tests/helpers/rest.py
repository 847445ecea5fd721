"""Talking to the gateway's REST bridge from tests, benchmarks and scripts (stdlib only)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid


def _multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, data) in files.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def call(method: str, url: str, body: bytes | None = None, content_type: str = "application/json",
         timeout: float = 60.0, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    """Return (status, decoded JSON body or {}), for error statuses too."""
    request = urllib.request.Request(url, data=body, method=method,
                                     headers={"Content-Type": content_type, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            raw = reply.read()
            return reply.status, json.loads(raw) if raw else {}
    except urllib.error.HTTPError as error:
        raw = error.read()
        try:
            return error.code, json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            return error.code, {"raw": raw.decode(errors="replace")}


def submit_multipart(base_url: str, image: bytes, audio: bytes, **fields: object) -> str:
    body, content_type = _multipart({k: str(v).lower() if isinstance(v, bool) else str(v)
                                     for k, v in fields.items()},
                                    {"image": ("portrait.png", image), "audio": ("speech.wav", audio)})
    status, reply = call("POST", f"{base_url}/jobs", body, content_type)
    if status != 202:
        raise RuntimeError(f"job rejected: {status} {reply}")
    return str(reply["id"])


def wait_for_job(base_url: str, job_id: str, timeout: float = 300.0, poll: float = 0.2,
                 headers: dict[str, str] | None = None) -> dict:
    """Poll until the job leaves IN_QUEUE/RUNNING; return its last state."""
    deadline = time.monotonic() + timeout
    while True:
        status, state = call("GET", f"{base_url}/jobs/{job_id}", headers=headers)
        if status != 200:
            raise RuntimeError(f"GET /jobs/{job_id} answered {status}: {state}")
        if state["status"] not in ("IN_QUEUE", "RUNNING"):
            return state
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {state['status']} after {timeout:.0f}s")
        time.sleep(poll)


def download(base_url: str, job_id: str, timeout: float = 60.0) -> bytes:
    with urllib.request.urlopen(f"{base_url}/jobs/{job_id}/video", timeout=timeout) as reply:
        return reply.read()
