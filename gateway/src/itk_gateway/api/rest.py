"""The REST bridge (FastAPI), compatible with the seed API and a little beyond it.

Seed API: POST /jobs (JSON, base64 media) -> 202 {id, status}; GET /jobs/{id}; POST
/jobs/{id}/video/delete -> 204; GET /health. Errors are {error, code} with the seed's codes.
Beyond it: POST /jobs as multipart/form-data (files `image` and `audio`, streamed to disk),
GET /jobs/{id}/video (the MP4, with HTTP Range; jobs pushed to S3 redirect to a presigned URL),
POST /jobs/{id}/cancel, /metrics and /openapi.json.

Job ids that do not look like ours (`job-<digits>-<32 hex>`) are answered like unknown ids:
404 JOB_NOT_FOUND, as the seed API does for any id it does not know; so are other keys' jobs.

Every route but the public ones (health, the OpenAPI document and its page) passes the security
middleware (security/rest_middleware.py) and receives the caller as a `Principal` dependency. Bodies are
never held whole: JSON media are decoded as they stream in (json_upload.py), multipart files go
straight to disk, and a finished video is streamed back, as base64 in the JSON or as the MP4.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any, BinaryIO

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from itk_gateway.api.events import add_event_routes
from itk_gateway.api.hls import add_hls_routes
from itk_gateway.api.json_upload import JsonUploadParser
from itk_gateway.api.modal_compat import create_modal_router
from itk_gateway.api.multipart import receive_form
from itk_gateway.api.page import add_page_routes
from itk_gateway.api.recent import add_recent_routes
from itk_gateway.api.rest_models import (
    ERROR_RESPONSE,
    CreateJobBody,
    CreateJobResponse,
    HealthResponse,
    JobResponse,
    error_response,
    form_speakers,
    job_json,
    options_from_form,
    parse_json_body,
)
from itk_gateway.errors import (
    ApiError,
    InvalidInputError,
    PayloadTooLargeError,
    RequestTimeoutError,
    StorageFullError,
    UnsupportedMediaTypeError,
)
from itk_gateway.jobs.service import JobService
from itk_gateway.jobs.speakers import speaker_audio_urls
from itk_gateway.jobs.views import JobView
from itk_gateway.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from itk_gateway.metrics import GatewayMetrics
from itk_gateway.security.guard import Guard
from itk_gateway.security.keys import Principal
from itk_gateway.security.rest_middleware import (
    DEFAULT_PUBLIC_PATHS,
    SecurityMiddleware,
    is_public,
    mark_public,
    principal,
)
from itk_gateway.storage.blobs import StoredVideo
from itk_gateway.storage.space import is_storage_full

log = logging.getLogger(__name__)

# Base64 makes 3 bytes 4; room for the rest of the JSON document on top.
JSON_OVERHEAD = 64 * 1024
# Bodies refused for their size are read (and dropped) up to this much before answering.
DISCARD_LIMIT = 256 * 1024 * 1024
# Pieces a video from the shared store is streamed in.
STREAM_PIECE = 1 << 20
RANGE_SPEC = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")

# Base64 is written out in blocks of a multiple of 3 bytes, so the pieces concatenate exactly.
VIDEO_BASE64_BLOCK = 3 * 256 * 1024
MP4_RESPONSE = {"content": {"video/mp4": {"schema": {"type": "string", "format": "binary"}}}}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again", "schema": {"type": "string"}}}
# Answers any guarded route may give, whatever it does (added to every operation's document).
GUARD_RESPONSES = {
    "400": {"description": "Bad request (e.g. a Host header that is not served)", **ERROR_RESPONSE},
    "401": {"description": "Missing or invalid API key", **ERROR_RESPONSE},
    "429": {"description": "Rate limit reached", "headers": RETRY_AFTER, **ERROR_RESPONSE},
}
MULTIPART_SCHEMA = {
    "type": "object", "required": ["width", "height"],
    "properties": {
        "image": {"type": "string", "format": "binary"}, "audio": {"type": "string", "format": "binary"},
        "width": {"type": "integer", "minimum": 1, "maximum": 4096},
        "height": {"type": "integer", "minimum": 1, "maximum": 4096}, "prompt": {"type": "string"},
        "provider": {"type": "string"}, "push_to_s3": {"type": "boolean"}, "dry_run": {"type": "boolean"},
        "force_offload": {"type": "boolean"}, "seed": {"type": "integer"},
        "sampling": {"type": "string", "description": "JSON object of SamplingOptions"},
        "preset": {"type": "string", "description": "shorthand for sampling.preset (quality, fast, turbo)"},
        "chunk_target_sec": {"type": "number"}, "webhook_url": {"type": "string"},
        "image_url": {"type": "string", "description": "fetch the image or video from this URL instead"},
        "audio_url": {"type": "string", "description": "fetch the audio from this URL instead"},
        "video_extend": {"type": "string", "enum": ["hold", "pingpong"]},
        "lanes": {"type": "integer", "description": "continuous streams; 0 = one per generator, 1 = one stream"},
        "audio_2": {"type": "string", "format": "binary", "description": "two people talking: person 2's recording"},
        "audio_2_url": {"type": "string", "description": "fetch person 2's recording from this URL instead"},
        "boxes": {"type": "string", "description": "JSON list of the speakers' face boxes [x0, y0, x1, y1] in "
                  "pixels of the image, person 1 first; none: the portrait's faces, left to right"},
        "speakers": {"type": "string", "description": 'JSON list of {"audio_url", "box"}, person 1 first'},
        "audio_type": {"type": "string", "enum": ["para", "add"]},
        "stereo_speakers": {"type": "boolean", "description": "audio is one stereo recording: person 1 left, "
                            "person 2 right"},
    },
}


def is_json_media_type(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (media_type.startswith("application/") and media_type.endswith("+json"))


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


def base64_size(size: int) -> int:
    return 4 * ((size + 2) // 3)


def json_with_video(body: dict[str, Any], video: BinaryIO) -> Iterator[bytes]:
    """The job's JSON with `video_base64` last, its value encoded block by block from the open file:
    memory holds one block, whatever the video's size (the seed's field, without the seed's cost)."""
    try:
        yield json.dumps(body)[:-1].encode() + b', "video_base64": "'
        while block := video.read(VIDEO_BASE64_BLOCK):
            yield base64.b64encode(block)
        yield b'"}'
    finally:
        video.close()


def _fill_media_schemas(content: dict[str, Any]) -> None:
    """Routes that answer a Response of their own leave FastAPI guessing: an empty JSON schema
    beside the real media type. Say what is sent: text, binary media, or a JSON object."""
    if len(content) > 1 and not content.get("application/json", {}).get("schema"):
        content.pop("application/json", None)
    for media_type, entry in content.items():
        if entry.get("schema"):
            continue
        if media_type.startswith("text/") or media_type.endswith("mpegurl"):
            entry["schema"] = {"type": "string"}
        elif media_type.endswith("json"):
            entry["schema"] = {"type": "object"}
        else:
            entry["schema"] = {"type": "string", "format": "binary"}


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, corrected to what the server really answers: no 422 (validation
    problems are 400 with {error, code}), and the guard's 400/401/429 on every guarded route."""
    if app.openapi_schema:
        return app.openapi_schema
    document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    for path, operations in document.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            problem = responses.pop("422", None)
            if problem is not None or operation.get("parameters") or operation.get("requestBody"):
                responses.setdefault("400", {"description": "Invalid request", **ERROR_RESPONSE})
            if "{job_id}" in path:
                # Unknown ids, and other keys' jobs, on every route that names a job.
                responses.setdefault("404", {"description": "No such job", **ERROR_RESPONSE})
            if not is_public(app, path):
                for status, response in GUARD_RESPONSES.items():
                    responses.setdefault(status, response)
                operation["security"] = [{"bearer": []}, {"apiKey": []}]
            for status, response in responses.items():
                response.setdefault("description", HTTPStatus(int(status)).phrase)
                _fill_media_schemas(response.get("content", {}))
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    document["components"]["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer"},
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    }
    app.openapi_schema = document
    return document


def single_range(header: str, size: int) -> tuple[int, int] | None:
    """The one byte range a valid (see check_range) header asks for, clamped to the size; None
    for several ranges, which are answered with the whole video (as RFC 9110 allows)."""
    specs = header.partition("=")[2].split(",")
    if len(specs) != 1:
        return None
    match = RANGE_SPEC.match(specs[0])
    assert match is not None
    start, end = match.groups()
    if not start:
        return max(0, size - int(end)), size - 1
    return int(start), min(int(end), size - 1) if end else size - 1


def stored_video_response(video: StoredVideo, requested: str | None, filename: str) -> Response:
    """A video in the shared store, streamed through this replica, whole or one range (206)."""
    headers = {"Accept-Ranges": "bytes", "Content-Disposition": f'inline; filename="{filename}"'}
    span = single_range(requested, video.size) if requested else None
    start, end, status = (0, video.size - 1, 200) if span is None else (*span, 206)
    if status == 206:
        headers["Content-Range"] = f"bytes {start}-{end}/{video.size}"
    headers["Content-Length"] = str(end - start + 1 if video.size else 0)
    body = video.iter_range(start, end, STREAM_PIECE) if video.size else iter(())
    return StreamingResponse(body, status_code=status, media_type="video/mp4", headers=headers)


async def _discard_body(request: Request) -> None:
    """Read what is left of the body (up to a bound) so the client gets to read our answer
    instead of a reset connection while it is still sending."""
    discarded = 0
    try:
        async for data in request.stream():
            discarded += len(data)
            if discarded > DISCARD_LIMIT:
                return
    except (ClientDisconnect, RuntimeError, RequestTimeoutError):
        return


def create_app(service: JobService, metrics: GatewayMetrics, guard: Guard, is_serving=lambda: True) -> FastAPI:
    settings = service.settings
    app = FastAPI(
        title="InfiniteTalk gateway",
        version="1.0.0",
        description="Lip-synced talking videos of any length: submit a portrait and a recording, poll, download.",
    )
    mark_public(app, *DEFAULT_PUBLIC_PATHS)
    app.add_middleware(SecurityMiddleware, guard=guard, fastapi_app=app, trusted_hosts=settings.trusted_hosts,
                       body_timeout_sec=settings.body_read_timeout_sec)
    if settings.cors_allowed_origins:
        # Outermost, so that browsers' preflight requests (which carry no key) get their answer.
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_allowed_origins,
                           allow_methods=["GET", "HEAD", "POST", "OPTIONS"],
                           allow_headers=["Content-Type", "Authorization", "X-API-Key", "Range",
                                          "Idempotency-Key", "Modal-Key", "Modal-Secret"],
                           expose_headers=["Retry-After", "Content-Range", "Idempotent-Replayed"])
    app.openapi = lambda: openapi_document(app)  # type: ignore[method-assign]
    limit = settings.max_upload_bytes
    limit_mb = settings.max_upload_mb
    app.include_router(create_modal_router(service))

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        headers = {"Retry-After": exc.retry_after} if exc.retry_after else None
        return error_response(exc.http_status, exc.message, exc.code, headers=headers)

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

    # Health and readiness run on the event loop itself, never waiting for a worker thread: they
    # answer even when every worker is busy.
    @app.get("/health", tags=["Health"], response_model=HealthResponse,
             responses={503: {"model": HealthResponse, "description": "Shutting down"}})
    async def health() -> JSONResponse:
        if not is_serving():
            return JSONResponse({"status": "shutting_down"}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/ready", tags=["Health"], response_model=HealthResponse,
             responses={503: {"model": HealthResponse, "description": "Shutting down, or the data volume is full"}})
    async def ready() -> JSONResponse:
        """Whether to send this replica new work: serving, and room on its data volume."""
        if not is_serving():
            return JSONResponse({"status": "shutting_down"}, status_code=503)
        if service.space.low():
            return JSONResponse({"status": "storage_full", "detail": service.space.describe()}, status_code=503)
        return JSONResponse({"status": "ok"})

    if settings.metrics_port is None:
        # With METRICS_PORT set, metrics are served there instead (for a scraper without a key).
        @app.get("/metrics", tags=["Health"], include_in_schema=False)
        def prometheus(_who: Principal = Depends(principal)) -> Response:
            return Response(metrics.render(), media_type=METRICS_CONTENT_TYPE)

    @app.post(
        "/jobs", status_code=202, tags=["Jobs"], response_model=CreateJobResponse,
        responses={400: ERROR_RESPONSE, 408: ERROR_RESPONSE, 413: ERROR_RESPONSE, 415: ERROR_RESPONSE,
                   429: {"headers": RETRY_AFTER, **ERROR_RESPONSE}, 503: ERROR_RESPONSE,
                   507: {"description": "The gateway's storage is full", "headers": RETRY_AFTER, **ERROR_RESPONSE}},
        openapi_extra={"requestBody": {"required": True, "content": {
            "application/json": {"schema": CreateJobBody.model_json_schema()},
            "multipart/form-data": {"schema": MULTIPART_SCHEMA},
        }}},
    )
    async def create_job(request: Request, who: Principal = Depends(principal)) -> JSONResponse:
        declared = request.headers.get("content-length", "")
        content_type = request.headers.get("content-type", "")
        is_form = content_type.lower().startswith("multipart/form-data")
        ceiling = limit + JSON_OVERHEAD if is_form else limit * 4 // 3 + JSON_OVERHEAD
        key = request.headers.get("idempotency-key", "")
        try:
            if not is_form and not is_json_media_type(content_type):
                # Also what keeps other sites' plain HTML forms (text/plain, urlencoded) from creating jobs.
                raise UnsupportedMediaTypeError(
                    "Content-Type must be application/json or multipart/form-data, got "
                    f"{content_type.split(';')[0].strip() or 'none'}")
            if declared.isdigit() and int(declared) > ceiling:
                raise PayloadTooLargeError(f"upload exceeds MAX_UPLOAD_MB={limit_mb} MiB")
            if is_form:
                view, replayed = await _create_from_form(request, content_type, who, key)
            else:
                view, replayed = await _create_from_json(request, ceiling, who, key)
        except ClientDisconnect:
            # The client went away mid-upload; the upload is already removed.
            return error_response(400, "the client disconnected during the upload", "VALIDATION_ERROR")
        except RequestTimeoutError:
            raise
        except ApiError:
            # Refused before the whole body arrived (its size, a malformed document, a limit): read
            # the rest (bounded) so that the client, still sending, gets to read the answer.
            await _discard_body(request)
            raise
        except Exception as exc:
            if is_storage_full(exc):
                log.error("job creation failed, storage full: %s", exc)
                return error_response(StorageFullError.http_status, f"the gateway's storage is full ({exc}); retry "
                                      "later", StorageFullError.code, headers={"Retry-After": "60"})
            log.exception("job creation failed")
            return error_response(500, "failed to create job", "JOB_CREATION_FAILED")
        if replayed:
            # The key's first request made this job: answer as then, and say it is a replay.
            return JSONResponse({"id": view.id, "status": "IN_QUEUE"}, status_code=202,
                                headers={"Idempotent-Replayed": "true"})
        # The seed API always answers IN_QUEUE here; the job's real state is one GET away.
        return JSONResponse({"id": view.id, "status": "IN_QUEUE"}, status_code=202)

    async def _create_from_form(request: Request, content_type: str, who: Principal,
                                key: str) -> tuple[JobView, bool]:
        # On a worker thread: it counts the key's jobs in the database.
        upload = await run_in_threadpool(service.open_upload, who)
        with upload:
            fields = await receive_form(content_type, request.stream(), upload)
            speakers = form_speakers(fields, bool(upload.sizes["audio_2"]))
            options = options_from_form(fields, speakers)
            for kind in ("image", "audio", "audio_2"):
                if fields.get(f"{kind}_url", "").strip() and upload.sizes[kind]:
                    raise InvalidInputError(f"{kind}, {kind}_url: send one of them, not both")
            audio_url, audio_2_url = speaker_audio_urls(speakers, fields.get("audio_url", "").strip(),
                                                        fields.get("audio_2_url", "").strip())
            await run_in_threadpool(service.fetch_inputs, upload, fields.get("image_url", "").strip(),
                                    audio_url, ("image_url", "audio_url", "audio_2_url"), audio_2_url)
            return await run_in_threadpool(service.create_job_once, upload, options, key)

    async def _create_from_json(request: Request, ceiling: int, who: Principal, key: str) -> tuple[JobView, bool]:
        # On a worker thread: it counts the key's jobs in the database.
        upload = await run_in_threadpool(service.open_upload, who)
        with upload:
            upload.names = {"image": "image_base64", "audio": "audio_base64", "audio_2": "audio_2_base64"}
            parser = JsonUploadParser(upload.write)
            received = 0
            async for data in request.stream():
                received += len(data)
                if received > ceiling:
                    raise PayloadTooLargeError(f"upload exceeds MAX_UPLOAD_MB={limit_mb} MiB")
                if data:
                    # Decoded media are written to disk as they come: off the event loop.
                    await run_in_threadpool(parser.feed, data)
            body: CreateJobBody = parse_json_body(parser.finish())
            audio_url, audio_2_url = body.audio_urls()
            await run_in_threadpool(service.fetch_inputs, upload, (body.image_url or "").strip(),
                                    audio_url, ("image_url", "audio_url", "audio_2_url"), audio_2_url)
            # The job gets the options as sent (checked in create_job), which is also what an
            # Idempotency-Key compares.
            return await run_in_threadpool(service.create_job_once, upload, body.options(), key)

    add_recent_routes(app, service)
    add_event_routes(app, service, settings.sse_keepalive_sec)
    add_hls_routes(app, service)
    add_page_routes(app, service)
    # The page and what it loads before it has a key; every other route needs one.
    mark_public(app, "/", "/config", prefixes=("/static/",))

    @app.get("/jobs/", tags=["Jobs"], include_in_schema=False)
    def missing_id() -> JSONResponse:
        return error_response(400, "job ID is required", "MISSING_JOB_ID")

    @app.get("/jobs/{job_id}", tags=["Jobs"], response_model=JobResponse, responses={404: ERROR_RESPONSE})
    def get_job(job_id: str, include_video: bool = True, who: Principal = Depends(principal)) -> Response:
        """The job's state; `video_base64` when it is COMPLETED with a local video (as the seed API),
        streamed from the file; `include_video=false` leaves it out."""
        try:
            view = service.get_job(job_id, who)
        except ApiError:
            raise
        except Exception:
            log.exception("reading job %s failed", job_id)
            return error_response(500, "failed to get job", "JOB_FETCH_FAILED")
        body = job_json(view)
        if include_video and view.video_available and not view.video_url:
            try:
                source = service.video(job_id, who)
                video = source.open_copy() if isinstance(source, StoredVideo) else \
                    source.open("rb") if source is not None else None
            except (ApiError, FileNotFoundError):
                video = None  # deleted meanwhile: the state without the video
            if video is not None:
                # The open handle keeps the bytes readable even if the video is deleted meanwhile.
                size = base64_size(os.fstat(video.fileno()).st_size)
                prefix = len(json.dumps(body)[:-1].encode()) + len(b', "video_base64": "') + 2
                return StreamingResponse(json_with_video(body, video), media_type="application/json",
                                         headers={"Content-Length": str(prefix + size)})
        return JSONResponse(body)

    @app.get("/jobs/{job_id}/video", tags=["Jobs"], response_class=Response,
             responses={200: {"description": "The whole MP4", **MP4_RESPONSE},
                        206: {"description": "The requested byte range", **MP4_RESPONSE},
                        307: {"description": "The video is on S3: a presigned URL",
                              "headers": {"Location": {"schema": {"type": "string"}}}},
                        404: ERROR_RESPONSE, 409: ERROR_RESPONSE, 416: ERROR_RESPONSE})
    def get_video(job_id: str, request: Request, who: Principal = Depends(principal)) -> Response:
        """The MP4, with Range support (206). Jobs pushed to S3 redirect to a presigned URL."""
        source = service.video(job_id, who)
        if source is None:
            return RedirectResponse(service.get_job(job_id, who).video_url, status_code=307)
        size = source.size if isinstance(source, StoredVideo) else source.stat().st_size
        requested = request.headers.get("range")
        if requested is not None:
            problem = check_range(requested, size)
            if problem is not None:
                return error_response(416, problem, "VALIDATION_ERROR",
                                      headers={"Content-Range": f"bytes */{size}"})
        if isinstance(source, StoredVideo):
            return stored_video_response(source, requested, f"{job_id}.mp4")
        return FileResponse(source, media_type="video/mp4", filename=f"{job_id}.mp4",
                            content_disposition_type="inline")

    @app.post("/jobs/{job_id}/cancel", tags=["Jobs"], response_model=JobResponse,
              responses={404: ERROR_RESPONSE, 409: ERROR_RESPONSE})
    def cancel_job(job_id: str, who: Principal = Depends(principal)) -> JSONResponse:
        return JSONResponse(job_json(service.cancel_job(job_id, who)))

    @app.post("/jobs/{job_id}/video/delete", status_code=204, tags=["Jobs"], response_class=Response,
              responses={404: ERROR_RESPONSE})
    def delete_video(job_id: str, who: Principal = Depends(principal)) -> Response:
        """Idempotent: 204 even when the video is already gone."""
        service.delete_video(job_id, who)
        return Response(status_code=204)

    return app

