"""The blocking client."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from itk_client.errors import GatewayError
from itk_client.models import Event, EventParser, Job
from itk_client.request import (
    COPY_CHUNK,
    close_media,
    default_url,
    headers,
    idempotency,
    job_request,
    open_media,
)


class Client:
    """The gateway's REST API. `api_key` defaults to $ITK_API_KEY, `base_url` to $ITK_URL."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, timeout: float = 120.0) -> None:
        self.base_url = (base_url or default_url()).rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, headers=headers(api_key), timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise GatewayError.from_response(response, response.content)
        return response.json() if response.content else {}

    # -- submitting ---------------------------------------------------------------------------

    def submit(self, image: str | Path, audio: str | Path, width: int = 512, height: int = 512, *,
               idempotency_key: str | None = None, **options: Any) -> Job:
        """Upload a portrait and a recording (streamed from disk, multipart); returns the new job.

        Options: prompt, provider, preset ("quality" or "fast"), seed, lanes, webhook_url, push_to_s3,
        dry_run; audio_2 (person 2's recording: two people talking); anything else is sent as a
        form field of that name (boxes, audio_type, stereo_speakers, ...).
        """
        audio_2 = options.pop("audio_2", None)
        request = job_request(width, height, options)
        files = open_media(image, audio, audio_2)
        try:
            reply = self._json("POST", "/jobs", data=request.form(), files=files,
                               headers=idempotency(idempotency_key))
        finally:
            close_media(files)
        return self.get(str(reply["id"]))

    def submit_json(self, image: bytes, audio: bytes, width: int, height: int, **options: Any) -> str:
        """The Infinitetalk REST API's request (base64 media in a JSON body); returns the job id."""
        body = {"image_base64": base64.b64encode(image).decode(), "audio_base64": base64.b64encode(audio).decode(),
                "width": width, "height": height, **options}
        return str(self._json("POST", "/jobs", json=body)["id"])

    # -- following ----------------------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        return Job.from_json(self._json("GET", f"/jobs/{job_id}", params={"include_video": "false"}))

    def list(self, limit: int = 20) -> list[Job]:
        """The caller's recent jobs, newest first."""
        return [Job.from_json(job) for job in self._json("GET", "/jobs", params={"limit": limit})["jobs"]]

    def events(self, job_id: str) -> Iterator[Event]:
        """The job's server-sent events (`status`, `progress`, then `end`) as they happen."""
        with self._http.stream("GET", f"/jobs/{job_id}/events", timeout=httpx.Timeout(60.0, read=None)) as reply:
            if reply.status_code >= 400:
                raise GatewayError.from_response(reply, reply.read())
            parser = EventParser()
            for line in reply.iter_lines():
                event = parser.feed(line)
                if event is not None:
                    yield event

    def wait(self, job_id: str, timeout: float = 24 * 3600.0, on_update: Callable[[Job], None] | None = None,
             poll: float = 2.0) -> Job:
        """Follow the job's events until it ends; returns its final state. If the event stream
        breaks (a proxy, a restart), it reconnects, and polls every `poll` s while it cannot."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                for event in self.events(job_id):
                    job = event.job
                    if job is not None and on_update is not None:
                        on_update(job)
                    if event.kind == "end" or (job is not None and not job.active):
                        return self.get(job_id)
                    if time.monotonic() > deadline:
                        break
            except httpx.TransportError:
                time.sleep(poll)
            job = self.get(job_id)
            if not job.active:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job.status} after {timeout:.0f}s")

    def cancel(self, job_id: str) -> Job:
        return Job.from_json(self._json("POST", f"/jobs/{job_id}/cancel"))

    # -- the video ----------------------------------------------------------------------------

    def download(self, job_id: str, destination: str | Path | BinaryIO,
                 on_bytes: Callable[[int, int], None] | None = None) -> int:
        """Stream the MP4 to a path or an open binary file; returns the bytes written.
        `on_bytes(done, total)` follows the transfer (total 0 when unknown)."""
        with self._http.stream("GET", f"/jobs/{job_id}/video", follow_redirects=True) as reply:
            if reply.status_code >= 400:
                raise GatewayError.from_response(reply, reply.read())
            total = int(reply.headers.get("content-length", 0))
            if isinstance(destination, str | Path):
                path = Path(destination)
                tmp = path.with_name(path.name + ".part")
                with tmp.open("wb") as handle:
                    written = _copy(reply.iter_bytes(COPY_CHUNK), handle, total, on_bytes)
                tmp.replace(path)
                return written
            return _copy(reply.iter_bytes(COPY_CHUNK), destination, total, on_bytes)

    def delete_video(self, job_id: str) -> None:
        self._json("POST", f"/jobs/{job_id}/video/delete")

    def health(self) -> dict[str, Any]:
        return dict(self._json("GET", "/health"))


def _copy(pieces: Iterator[bytes], handle: BinaryIO, total: int,
          on_bytes: Callable[[int, int], None] | None) -> int:
    written = 0
    for data in pieces:
        handle.write(data)
        written += len(data)
        if on_bytes is not None:
            on_bytes(written, total)
    return written
