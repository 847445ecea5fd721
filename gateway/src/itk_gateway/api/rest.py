"""The REST bridge (FastAPI), compatible with the seed API and a little beyond it.

Seed API: POST /jobs (JSON, base64 media) -> 202 {id, status}; GET /jobs/{id}; POST
/jobs/{id}/video/delete -> 204; GET /health. Errors are {error, code} with the seed's codes.
Beyond it: POST /jobs as multipart/form-data (files `image` and `audio`, streamed to disk),
GET /jobs/{id}/video (the MP4, with HTTP Range; jobs pushed to S3 redirect to a presigned URL),
POST /jobs/{id}/cancel, /metrics and /openapi.json.

Job ids that do not look like ours (`job-<digits>-<8 hex>`) are answered like unknown ids:
404 JOB_NOT_FOUND, as the seed API does for any id it does not know.
"""

from __future__ import annotations

import base64
import json
import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from itk_gateway.api.caller import owner_of
from itk_gateway.api.events import add_event_routes
from itk_gateway.api.hls import add_hls_routes
from itk_gateway.api.modal import create_modal_router
from itk_gateway.api.multipart import receive_form
from itk_gateway.api.page import add_page_routes
from itk_gateway.api.recent import add_recent_routes
from itk_gateway.api.rest_models import (
    ERROR_RESPONSE,
    CreateJobBody,
    error_response,
    job_json,
    options_from_form,
    parse_json_body,
)
from itk_gateway.errors import ApiError, InvalidInputError, InvalidJsonError, PayloadTooLargeError
from itk_gateway.jobs.service import JobService, JobView, Upload
from itk_gateway.jobs.validation import JobOptions, decode_base64
from itk_gateway.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from itk_gateway.metrics import GatewayMetrics

log = logging.getLogger(__name__)

# Base64 makes 3 bytes 4; room for the rest of the JSON document on top.
JSON_OVERHEAD = 64 * 1024
# Bodies refused for their size are read (and dropped) up to this much before answering.
DISCARD_LIMIT = 256 * 1024 * 1024
RANGE_SPEC = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")

MULTIPART_SCHEMA = {
    "type": "object", "required": ["width", "height"],
    "properties": {
        "image": {"type": "string", "format": "binary"}, "audio": {"type": "string", "format": "binary"},
        "width": {"type": "integer"}, "height": {"type": "integer"}, "prompt": {"type": "string"},
        "provider": {"type": "string"}, "push_to_s3": {"type": "boolean"}, "dry_run": {"type": "boolean"},
        "force_offload": {"type": "boolean"}, "seed": {"type": "integer"},
        "sampling": {"type": "string", "description": "JSON object of SamplingOptions"},
        "chunk_target_sec": {"type": "number"}, "webhook_url": {"type": "string"},
        "image_url": {"type": "string", "description": "fetch the image or video from this URL instead"},
        "audio_url": {"type": "string", "description": "fetch the audio from this URL instead"},
        "video_extend": {"type": "string", "enum": ["hold", "pingpong"]},
    },
}


def check_range(header: str, size: int) -> str | None:
    """Why a Range header cannot be served (-> 416), or None when it can."""
    units, sep, specs = header.partition("=")
    if not sep or units.strip().lower() != "bytes":
        return "only bytes ranges are supported"
    for spec in specs.split(","):
        match = RANGE_SPEC.match(spec)
        if match is None or match.groups() == ("", ""):
            return f"malformed range {spec.strip()!r}"
        start, end = match.groups()
        if start and end and int(end) < int(start):
            return f"range {spec.strip()!r} ends before it starts"
        if start and int(start) >= size:
            return f"range {spec.strip()!r} starts beyond the video's {size} bytes"
        if not start and int(end) == 0:
            return "an empty suffix range selects nothing"
    return None


async def _read_limited(request: Request, limit: int) -> bytes:
    chunks, total = [], 0
    async for data in request.stream():
        total += len(data)
        if total > limit:
            raise PayloadTooLargeError("request body too large")
        chunks.append(data)
    return b"".join(chunks)


async def _discard_body(request: Request) -> None:
    """Read what is left of the body (up to a bound) so the client gets to read our answer
    instead of a reset connection while it is still sending."""
    discarded = 0
    try:
        async for data in request.stream():
            discarded += len(data)
            if discarded > DISCARD_LIMIT:
                return
    except (ClientDisconnect, RuntimeError):
        return


def create_app(service: JobService, metrics: GatewayMetrics, is_serving=lambda: True) -> FastAPI:
    app = FastAPI(
        title="InfiniteTalk gateway",
        version="1.0.0",
        description="Lip-synced talking videos of any length: submit a portrait and a recording, poll, download.",
    )
    app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["GET", "HEAD", "POST", "OPTIONS"],
                       allow_headers=["Content-Type", "Authorization", "Range", "Idempotency-Key", "Modal-Key",
                                      "Modal-Secret"],
                       expose_headers=["Idempotent-Replayed"])
    app.include_router(create_modal_router(service))
    limit = service.settings.max_upload_bytes
    limit_mb = service.settings.max_upload_mb

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.http_status, exc.message, exc.code)

    @app.exception_handler(RequestValidationError)
    async def request_invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        field = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")) or "request"
        return error_response(400, f"{field}: {first.get('msg', 'invalid')}", "VALIDATION_ERROR")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        code = "VALIDATION_ERROR" if exc.status_code < 500 else "INTERNAL_ERROR"
        if exc.status_code == 404 and request.url.path.startswith("/jobs/"):
            # An id with slashes in it, say: still a job we do not know.
            message, code = "job not found", "JOB_NOT_FOUND"
        elif exc.status_code == 404:
            message = f"no such endpoint: {request.method} {request.url.path}"
        return error_response(exc.status_code, message, code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error: %r", exc, exc_info=exc)
        return error_response(500, "internal server error", "INTERNAL_ERROR")

    @app.get("/health", tags=["Health"])
    def health() -> JSONResponse:
        if not is_serving():
            return JSONResponse({"status": "shutting_down"}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/metrics", tags=["Health"], include_in_schema=False)
    def prometheus() -> Response:
        return Response(metrics.render(), media_type=METRICS_CONTENT_TYPE)

    @app.post(
        "/jobs", status_code=202, tags=["Jobs"],
        responses={400: ERROR_RESPONSE, 413: ERROR_RESPONSE, 503: ERROR_RESPONSE},
        openapi_extra={"requestBody": {"required": True, "content": {
            "application/json": {"schema": CreateJobBody.model_json_schema()},
            "multipart/form-data": {"schema": MULTIPART_SCHEMA},
        }}},
    )
    async def create_job(request: Request) -> JSONResponse:
        declared = request.headers.get("content-length", "")
        content_type = request.headers.get("content-type", "")
        is_form = content_type.lower().startswith("multipart/form-data")
        ceiling = limit + JSON_OVERHEAD if is_form else limit * 4 // 3 + JSON_OVERHEAD
        owner = owner_of(request)
        key = request.headers.get("idempotency-key", "")
        try:
            if declared.isdigit() and int(declared) > ceiling:
                raise PayloadTooLargeError(f"upload exceeds MAX_UPLOAD_MB={limit_mb} MiB")
            if is_form:
                view, replayed = await _create_from_form(request, content_type, owner, key)
            else:
                view, replayed = await _create_from_json(request, ceiling, owner, key)
        except PayloadTooLargeError:
            await _discard_body(request)
            raise
        except ClientDisconnect:
            # The client went away mid-upload; the upload is already removed.
            return error_response(400, "the client disconnected during the upload", "VALIDATION_ERROR")
        except ApiError:
            raise
        except Exception:
            log.exception("job creation failed")
            return error_response(500, "failed to create job", "JOB_CREATION_FAILED")
        if replayed:
            # The key's first request made this job: answer as then, and say it is a replay.
            return JSONResponse({"id": view.id, "status": "IN_QUEUE"}, status_code=202,
                                headers={"Idempotent-Replayed": "true"})
        # The seed API always answers IN_QUEUE here; the job's real state is one GET away.
        return JSONResponse({"id": view.id, "status": "IN_QUEUE"}, status_code=202)

    async def _create_from_form(request: Request, content_type: str, owner: str,
                                key: str) -> tuple[JobView, bool]:
        upload = service.open_upload()
        with upload:
            fields = await receive_form(content_type, request.stream(), upload)
            options = options_from_form(fields)
            for kind in ("image", "audio"):
                if fields.get(f"{kind}_url", "").strip() and upload.sizes[kind]:
                    raise InvalidInputError(f"{kind}, {kind}_url: send one of them, not both")
            await run_in_threadpool(service.fetch_inputs, upload, fields.get("image_url", "").strip(),
                                    fields.get("audio_url", "").strip())
            return await run_in_threadpool(service.create_job_once, upload, options, owner, key)

    async def _create_from_json(request: Request, ceiling: int, owner: str, key: str) -> tuple[JobView, bool]:
        try:
            raw = await _read_limited(request, ceiling)
        except PayloadTooLargeError as exc:
            raise PayloadTooLargeError(f"upload exceeds MAX_UPLOAD_MB={limit_mb} MiB") from exc
        try:
            document = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            document = None
        if not isinstance(document, dict):
            raise InvalidJsonError("invalid JSON body")
        body = parse_json_body(document)
        # Options are checked before the media is decoded (cheap errors first); the job gets
        # them unchecked, as sent, which is also what an Idempotency-Key compares.
        service.check_options(body.options())
        return await run_in_threadpool(_create_from_base64, body, body.options(), owner, key)

    def _create_from_base64(body: CreateJobBody, options: JobOptions, owner: str, key: str) -> tuple[JobView, bool]:
        inline = {kind: decode_base64(f"{kind}_base64", text) for kind, text in
                  (("image", body.image_base64), ("audio", body.audio_base64)) if (text or "").strip()}
        upload: Upload = service.open_upload()
        with upload:
            upload.names = {"image": "image_base64", "audio": "audio_base64"}
            for kind, data in inline.items():
                upload.write(kind, data)
            service.fetch_inputs(upload, (body.image_url or "").strip(), (body.audio_url or "").strip())
            return service.create_job_once(upload, options, owner, key)

    add_recent_routes(app, service)
    add_event_routes(app, service, service.settings.sse_keepalive_sec)
    add_hls_routes(app, service)
    add_page_routes(app, service)

    @app.get("/jobs/", tags=["Jobs"], include_in_schema=False)
    def missing_id() -> JSONResponse:
        return error_response(400, "job ID is required", "MISSING_JOB_ID")

    @app.get("/jobs/{job_id}", tags=["Jobs"], responses={404: ERROR_RESPONSE})
    def get_job(job_id: str, include_video: bool = True) -> JSONResponse:
        """The job's state; `video_base64` when it is COMPLETED with a local video (as the seed API)."""
        try:
            view = service.get_job(job_id)
        except ApiError:
            raise
        except Exception:
            log.exception("reading job %s failed", job_id)
            return error_response(500, "failed to get job", "JOB_FETCH_FAILED")
        video = None
        if include_video and view.video_available and not view.video_url:
            try:
                path = service.local_video(job_id)
            except ApiError:
                path = None
            if path is not None:
                video = base64.b64encode(path.read_bytes()).decode("ascii")
        return JSONResponse(job_json(view, video))

    @app.get("/jobs/{job_id}/video", tags=["Jobs"], response_model=None,
             responses={200: {"content": {"video/mp4": {}}}, 206: {"content": {"video/mp4": {}}},
                        404: ERROR_RESPONSE, 409: ERROR_RESPONSE, 416: ERROR_RESPONSE})
    def get_video(job_id: str, request: Request) -> Response:
        """The MP4, with Range support (206). Jobs pushed to S3 redirect to a presigned URL."""
        path = service.local_video(job_id)
        if path is None:
            return RedirectResponse(service.get_job(job_id).video_url, status_code=307)
        size = path.stat().st_size
        requested = request.headers.get("range")
        if requested is not None:
            problem = check_range(requested, size)
            if problem is not None:
                return error_response(416, problem, "VALIDATION_ERROR",
                                      headers={"Content-Range": f"bytes */{size}"})
        return FileResponse(path, media_type="video/mp4", filename=f"{job_id}.mp4",
                            content_disposition_type="inline")

    @app.post("/jobs/{job_id}/cancel", tags=["Jobs"], responses={404: ERROR_RESPONSE, 409: ERROR_RESPONSE})
    def cancel_job(job_id: str) -> JSONResponse:
        return JSONResponse(job_json(service.cancel_job(job_id)))

    @app.post("/jobs/{job_id}/video/delete", status_code=204, tags=["Jobs"], responses={404: ERROR_RESPONSE})
    def delete_video(job_id: str) -> Response:
        """Idempotent: 204 even when the video is already gone."""
        service.delete_video(job_id)
        return Response(status_code=204)

    return app

