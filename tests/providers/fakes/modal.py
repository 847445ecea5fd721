"""A fake of the Modal InfiniteTalk app: POST /submit {image, audio1, prompt} fetches both inputs by
URL (as the app does, 400 when it cannot) and answers {call_id}; GET /result?call_id= is 202 while
running and 200 with the MP4 when done (500 when the call failed, as FastAPI answers an exception);
POST /cancel?call_id= for deployments that add a cancel endpoint. Auth: Modal-Key / Modal-Secret.
It takes no size and renders at its own (`render_size`), 4n+1 frames a little shorter than the audio."""

from __future__ import annotations

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from .server import CANCELLED, DONE, FAILED, FakeProvider


class FakeModal(FakeProvider):
    name = "modal"

    def __init__(self, token_id: str, token_secret: str, fps: int = 16,
                 render_size: tuple[int, int] = (128, 128), **timing: float) -> None:
        super().__init__(fps=fps, longer=False, render_size=render_size, **timing)
        self.token_id, self.token_secret = token_id, token_secret
        self.fetched_urls: list[str] = []

    def authorized(self, request: Request) -> bool:
        return (request.headers.get("modal-key"), request.headers.get("modal-secret")) == (
            self.token_id, self.token_secret)

    def routes(self, app: FastAPI) -> None:
        @app.post("/submit")
        async def submit(request: Request) -> JSONResponse:
            body = await request.json()
            inputs = {}
            for field in ("image", "audio1"):
                url = body.get(field)
                if not isinstance(url, str):
                    return JSONResponse({"detail": f"{field} is required"}, status_code=422)
                try:
                    async with httpx.AsyncClient(timeout=10) as client:
                        reply = await client.get(url)
                    reply.raise_for_status()
                except httpx.HTTPError as exc:
                    return JSONResponse({"detail": f"Failed to download from URL {url}: {exc}"}, status_code=400)
                self.fetched_urls.append(url)
                inputs[field] = reply.content
            job = self.create_job(body, inputs["image"], inputs["audio1"], 0, 0)
            return JSONResponse({"call_id": job.id})

        @app.get("/result")
        def result(call_id: str) -> Response:
            job = self.find(call_id)
            if job is None:
                return JSONResponse({"detail": "call not found"}, status_code=404)
            state = self.advance(job)
            if state == DONE:
                return Response(job.video, media_type="video/mp4")
            if state in (FAILED, CANCELLED):
                return Response(f"Internal Server Error: {job.error or state}", status_code=500)
            return Response(status_code=202)

        @app.post("/cancel")
        def cancel(call_id: str) -> Response:
            self.cancel(call_id)
            return Response(status_code=204)
