"""`GET /jobs/{id}/events`: the job's state and progress as server-sent events.

Events, each `data:` a JSON object (the job as `GET /jobs/{id}` shows it, without the video, with
its `lane_count`, `lanes` (span, pieces done of total) and `seams`, plus `pieces` (each with its
`lane`), `segments_ready` and `eta_sec`):
    status     the status changed (the first event is always one)
    progress   anything else changed: frames, pieces, a new live segment
    quality    the completed job's quality report is there (`quality` in the data; while it is
               computed, `quality.state` is "pending" in the events before)
    end        the job ended (and a completed job's quality report is settled); the stream closes after it
A comment line (`: keep-alive`) goes out every SSE_KEEPALIVE_SEC without a change, so proxies
do not close an idle stream. Progress events are at most PROGRESS_MIN_INTERVAL_SEC apart;
changes in between are folded into the next one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from itk_gateway.api.caller import principal_of
from itk_gateway.api.rest_models import job_json
from itk_gateway.jobs.service import JobService
from itk_gateway.storage.store import JobRecord

PROGRESS_MIN_INTERVAL_SEC = 0.25
# How often an idle stream looks at the job's change counter: a dict read, so thousands of open
# streams cost no threads (blocking on the store's condition would hold one thread each).
POLL_SEC = 0.1
RECONNECT_MS = 2000


def sse(event: str, data: dict[str, Any], event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def add_event_routes(app: FastAPI, service: JobService, keepalive_sec: float) -> None:
    store = service.store

    def current(job_id: str) -> tuple[JobRecord, dict[str, Any]] | None:
        """The job and its event body: on a worker thread, as it reads the database, which may
        be slow or away (on PostgreSQL the store retries for seconds) and must not hold the
        event loop that answers every other request."""
        record = store.get_job(job_id)
        if record is None:
            return None
        return record, job_json(service.view(record)) | service.progress_of(record)

    @app.get("/jobs/{job_id}/events", tags=["Jobs"], response_model=None,
             responses={200: {"content": {"text/event-stream": {}}}})
    def job_events(job_id: str, request: Request) -> StreamingResponse:
        """Server-sent events: `status`, `progress`, then `end`; keep-alive comments while idle."""
        service.get_job(job_id, principal_of(request))  # 404 (also for others' jobs) before the stream starts

        async def stream() -> AsyncIterator[str]:
            yield f"retry: {RECONNECT_MS}\n\n"
            last_status = ""
            last_body: dict[str, Any] | None = None
            while True:
                version = store.version(job_id)
                read = await run_in_threadpool(current, job_id)
                if read is None:
                    return
                record, body = read
                if body != last_body:
                    kind = "status" if record.status != last_status else "progress"
                    if last_body is not None and body.get("quality") != last_body.get("quality") \
                            and kind == "progress":
                        kind = "quality"
                    yield sse(kind, body, version)
                    last_status, last_body = record.status, body
                if record.finished and (body.get("quality") or {}).get("state") != "pending":
                    yield sse("end", {"id": job_id, "status": record.status}, version)
                    return
                await asyncio.sleep(PROGRESS_MIN_INTERVAL_SEC)
                idle = PROGRESS_MIN_INTERVAL_SEC
                # Other gateway replicas change the job without bumping this one's version.
                reread = store.remote_poll_sec
                while store.version(job_id) == version and (reread is None or idle < reread):
                    if await request.is_disconnected():
                        return
                    if idle >= keepalive_sec:
                        yield ": keep-alive\n\n"
                        idle = 0.0
                    await asyncio.sleep(POLL_SEC)
                    idle += POLL_SEC

        # no-transform and X-Accel-Buffering keep proxies (nginx) from buffering the stream.
        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"})
