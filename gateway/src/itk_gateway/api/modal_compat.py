"""The Modal app's API (Square-Zero-Labs/modal-infinitetalk), so its clients work unchanged
apart from the base URLs.

    POST /modal/submit          {"image": URL of an image or video, "audio1": URL, "prompt": ...}
                                -> 200 {"call_id": "<job id>"}
    GET  /modal/result?call_id= -> 202 (no body) while running; 200 video/mp4, attachment, when done
    HEAD /modal/result-head?call_id= (and HEAD /modal/result) -> 202 or 200, no body

The Modal app serves each method on its own host (`<user>--infinitetalk-api-model-submit.modal.run`
and so on); a client points those three URLs at the paths above. Beyond the Modal app: optional
`width`, `height`, `seed`, `video_extend` in the body; without a size the video has the
reference's aspect ratio at about 640x640 pixels (InfiniteTalk's 480p bucket area). Two people
talking: `audio2` (URL of person 2's recording) with optional `audio_type` (the Modal app plays
several speakers one after the other, so "add" is the default here; "para" plays them together)
and `boxes` (face boxes in pixels, person 1 first; none: the portrait's faces). Errors are
4xx with a message in `detail` (FastAPI's shape, which the Modal app answers with) and the
gateway's `{error, code}` beside it. Credentials come as the `Modal-Key` / `Modal-Secret` header
pair (`modal_credentials`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from PIL import Image
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.concurrency import run_in_threadpool

from itk_common.constants import MAX_PIECE_BYTES
from itk_common.source_video import probe
from itk_common.video import even
from itk_gateway.api.caller import principal_of
from itk_gateway.api.rest_models import describe_validation_error
from itk_gateway.errors import ApiError, InvalidInputError, InvalidJsonError, WrongJobStateError
from itk_gateway.jobs.reference import is_video_file
from itk_gateway.jobs.service import JobService
from itk_gateway.jobs.speakers import apply_speakers, speakers_from_request
from itk_gateway.jobs.views import JobView
from itk_gateway.options import JobOptions
from itk_gateway.security.keys import Principal
from itk_gateway.storage.blobs import StoredVideo

# InfiniteTalk's 480p buckets hold about this many pixels.
DEFAULT_SIDE = 640
DEFAULT_AREA = DEFAULT_SIDE * DEFAULT_SIDE
MAX_BODY_BYTES = 64 * 1024
ACTIVE = ("IN_QUEUE", "RUNNING")
KEY_HEADER, SECRET_HEADER = "modal-key", "modal-secret"


def modal_credentials(headers: Mapping[str, str]) -> tuple[str, str] | None:
    """The (key, secret) pair a Modal client sends as `Modal-Key` / `Modal-Secret`, or None.

    The gateway's authentication treats the pair as an API key id and its secret, so the Modal
    app's proxy-auth tokens become gateway credentials without changing the client.
    """
    key, secret = headers.get(KEY_HEADER, "").strip(), headers.get(SECRET_HEADER, "").strip()
    return (key, secret) if key and secret else None


class SubmitBody(BaseModel):
    """The Modal app's GenerationRequest, plus optional extras."""

    model_config = ConfigDict(extra="ignore")

    image: str
    audio1: str
    prompt: str | None = None
    width: int | None = None
    height: int | None = None
    seed: int | None = None
    video_extend: str | None = None
    audio2: str | None = None
    audio_type: str | None = None
    boxes: list[list[float]] | None = None


def default_size(width: int, height: int) -> tuple[int, int]:
    """The reference's aspect ratio at about DEFAULT_AREA pixels, even sides."""
    scale = math.sqrt(DEFAULT_AREA / (width * height))
    return even(round(width * scale)), even(round(height * scale))


def reference_size(path: Path) -> tuple[int, int]:
    """(width, height) as displayed, of the already validated image or video."""
    if is_video_file(path):
        info = probe(path)
        return info.width, info.height
    with Image.open(path) as image:
        return image.size


def _sized(width: int | None, height: int | None, reference: Path) -> tuple[int, int]:
    """Fill in a missing width or height from the reference's aspect ratio."""
    try:
        source_width, source_height = reference_size(reference)
    except Exception:
        # Not an image or video: create_job rejects it with the precise reason.
        return width or DEFAULT_SIDE, height or DEFAULT_SIDE
    if width is None and height is None:
        return default_size(source_width, source_height)
    if width is None:
        return max(2, even(round(height * source_width / source_height))), height
    return width, max(2, even(round(width * source_height / source_width)))


def error_json(status: int, message: str, code: str) -> JSONResponse:
    return JSONResponse({"detail": message, "error": message, "code": code}, status_code=status)


def create_modal_router(service: JobService) -> APIRouter:
    router = APIRouter(prefix="/modal", tags=["Modal-compatible API"])

    def submit_job(body: SubmitBody, who: Principal) -> JobView:
        with service.open_upload(who) as upload:
            upload.names = {"image": "image", "audio": "audio1", "audio_2": "audio2"}
            service.fetch_inputs(upload, body.image.strip(), body.audio1.strip(), ("image", "audio1", "audio2"),
                                 (body.audio2 or "").strip())
            width, height = body.width, body.height
            if width is None or height is None:
                upload.close_files()
                width, height = _sized(width, height, upload.path("image"))
            options = JobOptions(width=width, height=height, pool="", prompt=body.prompt or "",
                                 seed=body.seed or 0, video_extend=body.video_extend or "")
            if (body.audio2 or "").strip() or body.boxes:
                speakers = speakers_from_request(None, body.boxes, bool((body.audio2 or "").strip()), False)
                apply_speakers(options, speakers, body.audio_type or "add")
            return service.create_job(upload, options)

    @router.post("/submit", responses={400: {}, 404: {}, 413: {}}, openapi_extra={"requestBody": {
        "required": True, "content": {"application/json": {"schema": SubmitBody.model_json_schema()}}}})
    async def submit(request: Request) -> JSONResponse:
        """Fetch the image (or video) and audio URLs, start the job; `{"call_id": ...}`."""
        raw = b""
        async for data in request.stream():
            raw += data
            if len(raw) > MAX_BODY_BYTES:
                return error_json(413, f"request body larger than {MAX_BODY_BYTES} bytes", "VALIDATION_ERROR")
        try:
            try:
                body = SubmitBody.model_validate_json(raw or b"null")
            except ValidationError as exc:
                if any(error.get("type") == "json_invalid" for error in exc.errors()):
                    raise InvalidJsonError("invalid JSON body") from exc
                raise InvalidInputError(describe_validation_error(exc)) from exc
            for name in ("image", "audio1"):
                if not getattr(body, name).strip():
                    raise InvalidInputError(f"{name}: required (a URL)")
            view = await run_in_threadpool(submit_job, body, principal_of(request))
        except ApiError as error:
            return error_json(error.http_status, error.message, error.code)
        return JSONResponse({"call_id": view.id})

    def result_response(call_id: str, with_body: bool, who: Principal) -> Response:
        if not call_id:
            return error_json(400, "call_id is required", "MISSING_JOB_ID")
        try:
            view = service.get_job(call_id, who)
            if view.status in ACTIVE:
                return Response(status_code=202, headers={"X-Job-Status": view.status,
                                                          "X-Job-Progress": str(view.progress)})
            if view.status != "COMPLETED":
                raise WrongJobStateError(f"call {call_id} ended {view.status}: {view.error or 'no reason given'}")
            path = service.video(call_id, who)
        except ApiError as error:
            if not with_body:
                return Response(status_code=error.http_status)
            return error_json(error.http_status, error.message, error.code)
        disposition = {"Content-Disposition": f'attachment; filename="{call_id}.mp4"'}
        if not with_body:
            size = path.size if isinstance(path, StoredVideo) else path.stat().st_size if path is not None else None
            headers = disposition | ({"Content-Length": str(size)} if size is not None else {})
            return Response(status_code=200, media_type="video/mp4", headers=headers)
        if isinstance(path, StoredVideo):
            # In the shared blob store (several gateway replicas): streamed through this one.
            body = path.iter_range(0, path.size - 1, 1 << 20) if path.size else iter(())
            return StreamingResponse(body, media_type="video/mp4",
                                     headers=disposition | {"Content-Length": str(path.size)})
        if path is not None:
            return FileResponse(path, media_type="video/mp4", filename=f"{call_id}.mp4")
        return _from_s3(service, call_id, disposition, who)

    @router.get("/result", responses={200: {"content": {"video/mp4": {}}}, 202: {}, 404: {}, 409: {}})
    def result(request: Request, call_id: str = "") -> Response:
        """202 while the job runs, then the MP4 as an attachment."""
        return result_response(call_id, True, principal_of(request))

    @router.head("/result", include_in_schema=False)
    @router.head("/result-head", responses={200: {"description": "The video is ready"},
                                            202: {"description": "The job is still running"},
                                            404: {"description": "No such call"},
                                            409: {"description": "The job ended without a video"}})
    @router.get("/result-head", include_in_schema=False)
    def result_head(request: Request, call_id: str = "") -> Response:
        """202 while the job runs, 200 once the video is ready; no body."""
        return result_response(call_id, False, principal_of(request))

    return router


def _from_s3(service: JobService, call_id: str, headers: dict[str, Any], who: Principal) -> Response:
    s3 = service.s3
    if s3 is None:
        return error_json(409, "the video is on S3, which this gateway is not configured for", "VALIDATION_ERROR")
    pieces = s3.iter_object(service.s3_key(call_id, who), MAX_PIECE_BYTES)
    return StreamingResponse(pieces, media_type="video/mp4", headers=headers)
