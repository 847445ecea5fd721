"""A fake RunPod serverless endpoint: /run, /status/{id}, /cancel/{id} under /v2/{endpoint_id},
Bearer auth, statuses IN_QUEUE -> IN_PROGRESS -> COMPLETED (or FAILED), output.video as base64."""

from __future__ import annotations

import base64

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from .server import CANCELLED, DONE, FAILED, QUEUED, RUNNING, FakeProvider

STATUSES = {QUEUED: "IN_QUEUE", RUNNING: "IN_PROGRESS", DONE: "COMPLETED", FAILED: "FAILED", CANCELLED: "CANCELLED"}


class FakeRunPod(FakeProvider):
    name = "runpod"

    def __init__(self, api_key: str, endpoint_id: str, fps: int = 30, **timing: float) -> None:
        super().__init__(fps=fps, longer=True, **timing)
        self.api_key, self.endpoint_id = api_key, endpoint_id

    @property
    def base_url(self) -> str:
        return f"{self.url}/v2"

    def authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.api_key}"

    def routes(self, app: FastAPI) -> None:
        prefix = f"/v2/{self.endpoint_id}"

        @app.post(prefix + "/run")
        async def run(request: Request) -> JSONResponse:
            body = await request.json()
            given = body.get("input") or {}
            missing = [k for k in ("input_type", "person_count", "prompt", "image_base64", "wav_base64",
                                   "width", "height", "network_volume", "force_offload") if k not in given]
            if missing:
                return JSONResponse({"error": f"input is missing {missing}"}, status_code=400)
            job = self.create_job(body, base64.b64decode(given["image_base64"]), base64.b64decode(given["wav_base64"]),
                                  int(given["width"]), int(given["height"]))
            return JSONResponse({"id": job.id, "status": "IN_QUEUE"})

        @app.get(prefix + "/status/{job_id}")
        def status(job_id: str) -> JSONResponse:
            job = self.find(job_id)
            if job is None:
                return JSONResponse({"error": "job not found"}, status_code=404)
            state = self.advance(job)
            answer: dict = {"id": job.id, "status": STATUSES[state]}
            if state == DONE:
                answer["output"] = {"video": base64.b64encode(job.video or b"").decode()}
            if state == FAILED:
                answer["error"] = job.error
            return JSONResponse(answer)

        @app.post(prefix + "/cancel/{job_id}")
        def cancel(job_id: str) -> JSONResponse:
            self.cancel(job_id)
            return JSONResponse({"id": job_id, "status": "CANCELLED"})
