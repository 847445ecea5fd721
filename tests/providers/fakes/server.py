"""What the three fake providers share: a FastAPI app served by uvicorn on 127.0.0.1, jobs that go
from queued to running to done with delays, and failures on demand.

On demand: `http_failures` (the next API requests answer with these statuses, e.g. 429, 503),
`delays` (the next API requests are answered only after these many seconds, to pass a timeout),
`lose_next` (that many next jobs are forgotten: their status is a 404), `fail_jobs` (every job
ends failed with this error). Recorded: every submitted job with its request body, the ids
cancelled, and the most jobs in flight at once (submitted and neither finished nor cancelled).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from itk_generator.preview import PreviewBackend

from .render import render_provider_video

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"


@dataclass
class FakeJob:
    id: str
    body: dict[str, Any]
    image: bytes
    wav: bytes
    width: int
    height: int
    submitted: float
    lost: bool = False
    state: str = QUEUED
    error: str = ""
    video: bytes | None = None
    frames: int = 0
    rendered: threading.Event = field(default_factory=threading.Event)


class FakeProvider:
    """Subclasses add their routes in `routes(app)` and check their auth header in `authorized`."""

    name = "fake"

    def __init__(self, fps: int, longer: bool, queue_sec: float = 0.2, run_sec: float = 0.3,
                 render_size: tuple[int, int] | None = None) -> None:
        self.fps, self.longer, self.render_size = fps, longer, render_size
        self.queue_sec, self.run_sec = queue_sec, run_sec
        self.jobs: dict[str, FakeJob] = {}
        self.http_failures: deque[int] = deque()
        self.delays: deque[float] = deque()
        self.api_requests = 0
        self.lose_next = 0
        self.fail_jobs = ""
        self.cancelled: list[str] = []
        self.workers: list[threading.Thread] = []
        self.unauthorized = 0
        self.in_flight: set[str] = set()
        self.peak_in_flight = 0
        self.lock = threading.Lock()
        self.previewer = PreviewBackend()
        self.previewer.load()
        self.scratch = Path(tempfile.mkdtemp(prefix=f"fake-{self.name}-"))
        self.url = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # --- what subclasses provide -------------------------------------------------------------
    def authorized(self, request: Request) -> bool:
        raise NotImplementedError

    def routes(self, app: FastAPI) -> None:
        raise NotImplementedError

    # --- jobs ---------------------------------------------------------------------------------
    def create_job(self, body: dict[str, Any], image: bytes, wav: bytes, width: int, height: int) -> FakeJob:
        with self.lock:
            job = FakeJob(id=f"{self.name}-{uuid.uuid4().hex[:10]}", body=body, image=image, wav=wav,
                          width=width, height=height, submitted=time.monotonic())
            if self.lose_next > 0:
                self.lose_next -= 1
                job.lost = True
            self.jobs[job.id] = job
            self.in_flight.add(job.id)
            self.peak_in_flight = max(self.peak_in_flight, len(self.in_flight))
        # The worker renders while the job is queued and running, as a provider's GPU would.
        worker = threading.Thread(target=self._render, args=(job,), daemon=True, name=f"render-{job.id}")
        self.workers.append(worker)
        worker.start()
        return job

    def _render(self, job: FakeJob) -> None:
        path = self.scratch / f"{job.id}.mp4"
        width, height = self.render_size or (job.width, job.height)
        try:
            job.frames = render_provider_video(path, job.image, job.wav, width, height, self.fps, self.longer,
                                               self.previewer)
            job.video = path.read_bytes()
        finally:
            path.unlink(missing_ok=True)
            job.rendered.set()

    def find(self, job_id: str) -> FakeJob | None:
        job = self.jobs.get(job_id)
        if job is not None and job.lost:
            with self.lock:
                self.in_flight.discard(job.id)
            return None
        return job

    def advance(self, job: FakeJob) -> str:
        """Move the job along by the time passed since it was submitted; render it when it is due."""
        if job.state in (DONE, FAILED, CANCELLED):
            return job.state
        elapsed = time.monotonic() - job.submitted
        if elapsed < self.queue_sec:
            return QUEUED
        if elapsed < self.queue_sec + self.run_sec:
            job.state = RUNNING
            return RUNNING
        job.rendered.wait(timeout=60)  # a run shorter than the rendering lasts until it is done
        if self.fail_jobs:
            job.state, job.error = FAILED, self.fail_jobs
        elif job.video is None:
            job.state, job.error = FAILED, "the worker could not render the video"
        else:
            job.state = DONE
        with self.lock:
            self.in_flight.discard(job.id)
        return job.state

    def cancel(self, job_id: str) -> bool:
        job = self.jobs.get(job_id)
        with self.lock:
            self.cancelled.append(job_id)
            self.in_flight.discard(job_id)
        if job is None or job.state in (DONE, FAILED):
            return False
        job.state = CANCELLED
        return True

    def submitted(self) -> list[FakeJob]:
        return list(self.jobs.values())

    # --- serving ------------------------------------------------------------------------------
    def app(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def gate(request: Request, call_next):
            if request.url.path.startswith("/outputs/"):
                return await call_next(request)
            if not self.authorized(request):
                self.unauthorized += 1
                return JSONResponse({"error": "Unauthorized"}, status_code=401)
            with self.lock:
                self.api_requests += 1
                injected = self.http_failures.popleft() if self.http_failures else 0
                delay = self.delays.popleft() if self.delays else 0.0
            if delay:
                # The body is read first, as a provider takes a request in before it answers late: the
                # request then acts even when the client has given up waiting meanwhile.
                await request.body()
                await asyncio.sleep(delay)
            if injected:
                return JSONResponse({"error": f"injected {injected}"}, status_code=injected)
            return await call_next(request)

        self.routes(app)
        return app

    def start(self) -> FakeProvider:
        sock = socket.create_server(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self._server = uvicorn.Server(uvicorn.Config(self.app(), log_level="warning", access_log=False))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True,
                                        name=f"fake-{self.name}")
        self._thread.start()
        while not self._server.started and self._thread.is_alive():
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        for worker in self.workers:
            worker.join(timeout=30)
        shutil.rmtree(self.scratch, ignore_errors=True)
