"""A small REST client for people and scripts (standard library only).

    from itk_gateway.client import GatewayClient
    client = GatewayClient("http://127.0.0.1:8080")
    job_id = client.submit_files("portrait.png", "speech.wav", width=384, height=576)
    job = client.wait(job_id, on_update=lambda j: print(j["status"], j["progress"]))
    client.download(job_id, "out.mp4")

`submit_json` sends the seed API's base64 body; `submit_files` streams a multipart upload from
disk. Errors come back as GatewayError with the server's {error, code}.
"""

from __future__ import annotations

import base64
import json
import shutil
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

ACTIVE = ("IN_QUEUE", "RUNNING")
COPY_CHUNK = 1024 * 1024


class GatewayError(Exception):
    def __init__(self, status: int, message: str, code: str = "") -> None:
        super().__init__(f"{status} {code}: {message}" if code else f"{status}: {message}")
        self.status = status
        self.message = message
        self.code = code


class _MultipartBody:
    """A multipart/form-data body read piece by piece, so large files never sit in memory."""

    def __init__(self, fields: dict[str, str], files: dict[str, Path]) -> None:
        self.boundary = uuid.uuid4().hex
        self.parts: list[bytes | Path] = []
        for name, value in fields.items():
            self.parts.append(
                f'--{self.boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
            )
        for name, path in files.items():
            self.parts.append(
                f'--{self.boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{path.name}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n".encode()
            )
            self.parts.append(path)
            self.parts.append(b"\r\n")
        self.parts.append(f"--{self.boundary}--\r\n".encode())

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return sum(p.stat().st_size if isinstance(p, Path) else len(p) for p in self.parts)

    def __iter__(self) -> Iterator[bytes]:
        for part in self.parts:
            if isinstance(part, bytes):
                yield part
                continue
            with part.open("rb") as handle:
                while data := handle.read(COPY_CHUNK):
                    yield data


def _form_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


class GatewayClient:
    def __init__(self, base_url: str, timeout: float = 120.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _open(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None):
        request = urllib.request.Request(f"{self.base_url}{path}", data=body, method=method,
                                         headers=headers or {})
        try:
            return urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as error:
            raw = error.read()
            try:
                reply = json.loads(raw)
                raise GatewayError(error.code, reply.get("error", ""), reply.get("code", "")) from None
            except (json.JSONDecodeError, AttributeError):
                raise GatewayError(error.code, raw.decode(errors="replace")) from None

    def _json(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> dict:
        with self._open(method, path, body, headers) as reply:
            raw = reply.read()
        return json.loads(raw) if raw else {}

    # -- submitting ----------------------------------------------------------------------

    def submit_json(self, image: bytes, audio: bytes, width: int, height: int, **options: Any) -> str:
        """The seed API's request: media as base64 in a JSON body. Returns the job id."""
        body = {"image_base64": base64.b64encode(image).decode(), "audio_base64": base64.b64encode(audio).decode(),
                "width": width, "height": height, **options}
        reply = self._json("POST", "/jobs", json.dumps(body).encode(), {"Content-Type": "application/json"})
        return str(reply["id"])

    def submit_files(self, image: str | Path, audio: str | Path, width: int, height: int, **options: Any) -> str:
        """A multipart upload streamed from disk. Returns the job id."""
        fields = {"width": str(width), "height": str(height)}
        fields.update({k: _form_value(v) for k, v in options.items() if v is not None})
        body = _MultipartBody(fields, {"image": Path(image), "audio": Path(audio)})
        headers = {"Content-Type": body.content_type, "Content-Length": str(len(body))}
        return str(self._json("POST", "/jobs", iter(body), headers)["id"])

    # -- following -----------------------------------------------------------------------

    def get(self, job_id: str, include_video: bool = False) -> dict:
        query = "" if include_video else "?include_video=false"
        return self._json("GET", f"/jobs/{job_id}{query}")

    def wait(self, job_id: str, timeout: float = 3600.0, poll: float = 1.0,
             on_update: Callable[[dict], None] | None = None) -> dict:
        """Poll until the job ends; return its final state (whatever the status)."""
        deadline = time.monotonic() + timeout
        last: tuple | None = None
        while True:
            job = self.get(job_id)
            if on_update is not None and (job["status"], job["progress"]) != last:
                on_update(job)
                last = (job["status"], job["progress"])
            if job["status"] not in ACTIVE:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout:.0f}s")
            time.sleep(poll)

    def cancel(self, job_id: str) -> dict:
        return self._json("POST", f"/jobs/{job_id}/cancel")

    # -- the video -----------------------------------------------------------------------

    def download(self, job_id: str, destination: str | Path | BinaryIO) -> int:
        """Stream the MP4 to a path or an open binary file; returns the bytes written."""
        with self._open("GET", f"/jobs/{job_id}/video") as reply:
            if isinstance(destination, str | Path):
                with Path(destination).open("wb") as handle:
                    shutil.copyfileobj(reply, handle, COPY_CHUNK)
                return Path(destination).stat().st_size
            written = 0
            while data := reply.read(COPY_CHUNK):
                destination.write(data)
                written += len(data)
            return written

    def delete_video(self, job_id: str) -> None:
        with self._open("POST", f"/jobs/{job_id}/video/delete"):
            pass

    def health(self) -> dict:
        return self._json("GET", "/health")
