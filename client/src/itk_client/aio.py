"""The asyncio client: the same methods as `Client`, as coroutines."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx

from itk_client.errors import GatewayError
from itk_client.models import Event, EventParser, Job
from itk_client.request import COPY_CHUNK, close_media, default_url, headers, idempotency, job_request, open_media


class AsyncClient:
    def __init__(self, base_url: str | None = None, api_key: str | None = None, timeout: float = 120.0) -> None:
        self.base_url = (base_url or default_url()).rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=headers(api_key), timeout=timeout)

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise GatewayError.from_response(response, response.content)
        return response.json() if response.content else {}

    async def submit(self, image: str | Path, audio: str | Path, width: int = 512, height: int = 512, *,
                     idempotency_key: str | None = None, **options: Any) -> Job:
        audio_2 = options.pop("audio_2", None)
        request = job_request(width, height, options)
        files = open_media(image, audio, audio_2)
        try:
            reply = await self._json("POST", "/jobs", data=request.form(), files=files,
                                     headers=idempotency(idempotency_key))
        finally:
            close_media(files)
        return await self.get(str(reply["id"]))

    async def submit_json(self, image: bytes, audio: bytes, width: int, height: int, **options: Any) -> str:
        body = {"image_base64": base64.b64encode(image).decode(), "audio_base64": base64.b64encode(audio).decode(),
                "width": width, "height": height, **options}
        return str((await self._json("POST", "/jobs", json=body))["id"])

    async def get(self, job_id: str) -> Job:
        return Job.from_json(await self._json("GET", f"/jobs/{job_id}", params={"include_video": "false"}))

    async def list(self, limit: int = 20) -> list[Job]:
        reply = await self._json("GET", "/jobs", params={"limit": limit})
        return [Job.from_json(job) for job in reply["jobs"]]

    async def events(self, job_id: str) -> AsyncIterator[Event]:
        async with self._http.stream("GET", f"/jobs/{job_id}/events",
                                     timeout=httpx.Timeout(60.0, read=None)) as reply:
            if reply.status_code >= 400:
                raise GatewayError.from_response(reply, await reply.aread())
            parser = EventParser()
            async for line in reply.aiter_lines():
                event = parser.feed(line)
                if event is not None:
                    yield event

    async def wait(self, job_id: str, timeout: float = 24 * 3600.0,
                   on_update: Callable[[Job], None] | None = None, poll: float = 2.0) -> Job:
        deadline = time.monotonic() + timeout
        while True:
            try:
                async for event in self.events(job_id):
                    job = event.job
                    if job is not None and on_update is not None:
                        on_update(job)
                    if event.kind == "end" or (job is not None and not job.active):
                        return await self.get(job_id)
                    if time.monotonic() > deadline:
                        break
            except httpx.TransportError:
                await asyncio.sleep(poll)
            job = await self.get(job_id)
            if not job.active:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job.status} after {timeout:.0f}s")

    async def cancel(self, job_id: str) -> Job:
        return Job.from_json(await self._json("POST", f"/jobs/{job_id}/cancel"))

    async def download(self, job_id: str, destination: str | Path) -> int:
        path = Path(destination)
        tmp = path.with_name(path.name + ".part")
        written = 0
        async with self._http.stream("GET", f"/jobs/{job_id}/video", follow_redirects=True) as reply:
            if reply.status_code >= 400:
                raise GatewayError.from_response(reply, await reply.aread())
            with tmp.open("wb") as handle:
                async for data in reply.aiter_bytes(COPY_CHUNK):
                    handle.write(data)
                    written += len(data)
        tmp.replace(path)
        return written

    async def delete_video(self, job_id: str) -> None:
        await self._json("POST", f"/jobs/{job_id}/video/delete")

    async def health(self) -> dict[str, Any]:
        return dict(await self._json("GET", "/health"))
