"""A fake Beam task queue: POST to the queue URL, GET /v2/task/{id}/, DELETE /v2/task/cancel/,
Bearer auth, statuses PENDING -> RUNNING -> COMPLETE (or FAILED), the MP4 at an output URL that
needs no auth header (a signed URL, as Beam's are)."""

from __future__ import annotations

import base64

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from .server import CANCELLED, DONE, FAILED, QUEUED, RUNNING, FakeProvider

STATUSES = {QUEUED: "PENDING", RUNNING: "RUNNING", DONE: "COMPLETE", FAILED: "FAILED", CANCELLED: "CANCELLED"}


class FakeBeam(FakeProvider):
    name = "beam"

    def __init__(self, token: str, fps: int = 24, **timing: float) -> None:
        super().__init__(fps=fps, longer=True, **timing)
        self.token = token
        # What a failed task reports: FAILED, ERROR, or RETRY (Beam is about to run it again).
        self.failed_status = "FAILED"

    @property
    def queue_url(self) -> str:
        return f"{self.url}/infinitetalk-worker"

    def authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.token}"

    def routes(self, app: FastAPI) -> None:
        @app.post("/infinitetalk-worker")
        async def submit(request: Request) -> JSONResponse:
            body = await request.json()
            missing = [k for k in ("prompt", "width", "height", "force_offload", "image_base64", "wav_base64")
                       if k not in body]
            if missing:
                return JSONResponse({"error": f"missing {missing}"}, status_code=400)
            job = self.create_job(body, base64.b64decode(body["image_base64"]), base64.b64decode(body["wav_base64"]),
                                  int(body["width"]), int(body["height"]))
            return JSONResponse({"task_id": job.id})

        @app.get("/v2/task/{task_id}/")
        def status(task_id: str) -> JSONResponse:
            job = self.find(task_id)
            if job is None:
                return JSONResponse({"detail": "Not found."}, status_code=404)
            state = self.advance(job)
            status = self.failed_status if state == FAILED else STATUSES[state]
            answer: dict = {"id": job.id, "status": status, "outputs": []}
            if state == DONE:
                answer["outputs"] = [{"name": "output.mp4", "url": f"{self.url}/outputs/{job.id}.mp4?sig=x"}]
            if state == FAILED:
                answer["error"] = job.error
            return JSONResponse(answer)

        @app.delete("/v2/task/cancel/")
        async def cancel(request: Request) -> JSONResponse:
            body = await request.json()
            for task_id in body.get("task_ids", []):
                self.cancel(task_id)
            return JSONResponse({})

        @app.get("/outputs/{name}")
        def output(name: str, request: Request) -> Response:
            job = self.jobs.get(name.removesuffix(".mp4"))
            if job is None or job.video is None or "authorization" in request.headers:
                # Output URLs are signed; a client that sends its API token there leaks it.
                return Response(status_code=404 if job is None or job.video is None else 400)
            return Response(job.video, media_type="video/mp4")
