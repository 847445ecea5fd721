"""REST request bodies and their translation into JobOptions.

The JSON body is the seed API's CreateJobRequest (unknown fields are ignored, as the seed's Go
decoder does); types are strict, so `"width": "384"` is a validation error naming `width`.
Multipart form fields carry the same names as text.
"""

from __future__ import annotations

import json
import math
import typing
from typing import Annotated, Any, Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from itk_gateway.errors import InvalidInputError
from itk_gateway.jobs.speakers import SpeakerRequest, apply_speakers, speaker_audio_urls, speakers_from_request
from itk_gateway.jobs.validation import MAX_DIMENSION
from itk_gateway.jobs.views import JobView, LaneView, SeamView, SpeakerView, public_fields, view_as_dict
from itk_gateway.options import JobOptions

Dimension = Annotated[int, Field(ge=1, le=MAX_DIMENSION)]

ERROR_SCHEMA = {
    "type": "object", "required": ["error", "code"],
    "properties": {"error": {"type": "string"}, "code": {"type": "string", "enum": [
        "INVALID_JSON", "VALIDATION_ERROR", "JOB_CREATION_FAILED", "MISSING_JOB_ID", "JOB_NOT_FOUND",
        "JOB_FETCH_FAILED", "INTERNAL_ERROR", "IDEMPOTENCY_CONFLICT", "STREAM_NOT_READY", "UNAUTHORIZED",
        "RATE_LIMITED", "REQUEST_TIMEOUT"]}},
}
ERROR_RESPONSE = {"content": {"application/json": {"schema": ERROR_SCHEMA}}}
BOOL_WORDS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False,
              "off": False}


class CreateJobBody(BaseModel):
    """POST /jobs as JSON (the seed API's body, plus optional extras)."""

    model_config = ConfigDict(extra="ignore")

    # The image (or a video to dub) and the audio: base64, or an http(s) URL the gateway fetches.
    # No audio at all takes the sound of a video reference.
    image_base64: str | None = None
    audio_base64: str | None = None
    image_url: str | None = None
    audio_url: str | None = None
    width: Dimension
    height: Dimension
    prompt: str | None = None
    provider: str | None = None
    push_to_s3: bool | None = None
    dry_run: bool | None = None
    force_offload: bool | None = None
    seed: int | None = None
    sampling: dict[str, Any] | None = None
    chunk_target_sec: float | None = None
    webhook_url: str | None = None
    video_extend: str | None = None
    lanes: int | None = None
    # Two people talking: person 2's recording (person 1's is audio_base64 / audio_url), or the
    # speakers as a list of {"audio_url", "box"}; face boxes [x0, y0, x1, y1] in pixels of the
    # image, person 1 first (none: the portrait's faces, left to right); para / add; or one stereo
    # recording with person 1 on the left channel and person 2 on the right.
    audio_2_base64: str | None = None
    audio_2_url: str | None = None
    speakers: list[dict[str, Any]] | None = None
    boxes: list[list[float]] | None = None
    audio_type: str | None = None
    stereo_speakers: bool | None = None

    def speaker_request(self) -> SpeakerRequest:
        second = bool((self.audio_2_base64 or "").strip() or (self.audio_2_url or "").strip())
        return speakers_from_request(self.speakers, self.boxes, second, bool(self.stereo_speakers))

    def audio_urls(self) -> tuple[str, str]:
        """Person 1's and person 2's audio URLs, from the top-level fields or the speakers list."""
        return speaker_audio_urls(self.speaker_request(), (self.audio_url or "").strip(),
                                  (self.audio_2_url or "").strip())

    def options(self) -> JobOptions:
        return apply_speakers(self._options(), self.speaker_request(), self.audio_type or "",
                              bool(self.stereo_speakers))

    def _options(self) -> JobOptions:
        return JobOptions(
            width=self.width, height=self.height, pool=self.provider or "", prompt=self.prompt or "",
            push_to_s3=bool(self.push_to_s3), dry_run=bool(self.dry_run),
            force_offload=True if self.force_offload is None else self.force_offload,
            seed=self.seed or 0, sampling=self.sampling or {}, chunk_target_sec=self.chunk_target_sec or 0.0,
            webhook_url=self.webhook_url or "",
            video_extend=self.video_extend or "",
            lanes=self.lanes or 0,
        )


class CreateJobResponse(BaseModel):
    """202 of POST /jobs (the seed API's answer)."""

    id: str
    status: Literal["IN_QUEUE"]


def _rest_model(view_class: type, name: str, overrides: dict[str, tuple[Any, Any]] | None = None,
                extra: dict[str, tuple[Any, Any]] | None = None) -> type[BaseModel]:
    """The REST model of a view (jobs/views.py): its public fields with their types and descriptions,
    `overrides` replacing some field's type and default, `extra` appended (REST-only fields)."""
    hints = typing.get_type_hints(view_class)
    definitions: dict[str, Any] = {}
    for item in public_fields(view_class):
        kind, default = (overrides or {}).get(item.name, (hints[item.name], ...))
        definitions[item.name] = (kind, Field(default, description=item.metadata.get("doc")))
    for field_name, (kind, info) in (extra or {}).items():
        definitions[field_name] = (kind, info)
    return create_model(name, __doc__=view_class.__doc__, **definitions)


JobStatusName = Literal["IN_QUEUE", "RUNNING", "COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"]
LaneResponse = _rest_model(LaneView, "LaneResponse")
SeamResponse = _rest_model(SeamView, "SeamResponse")
SpeakerResponse = _rest_model(SpeakerView, "SpeakerResponse", overrides={"box": (list[int], ...)})
JobResponse = _rest_model(JobView, "JobResponse", overrides={
    "status": (JobStatusName, ...),
    "progress": (Annotated[int, Field(ge=0, le=100)], ...),
    # Left out when empty, as the seed API does.
    "error": (str | None, None),
    "video_url": (str | None, None),
    "lanes": (list[LaneResponse], []),  # type: ignore[valid-type]
    "seams": (list[SeamResponse], []),  # type: ignore[valid-type]
    "speakers": (list[SpeakerResponse], []),  # type: ignore[valid-type]
    "boxes_from": (str | None, None),
    "audio_type": (str | None, None),
    "quality": (dict[str, Any] | None, None),
}, extra={
    "video_base64": (str | None, Field(None, description="The MP4, base64, when COMPLETED with a local video")),
})


class RecentJobsResponse(BaseModel):
    """GET /jobs: the caller's jobs, newest first (without their videos)."""

    jobs: list[JobResponse]


class HealthResponse(BaseModel):
    status: Literal["ok", "shutting_down"]


def describe_validation_error(error: ValidationError) -> str:
    """`field: problem` for the first problem (pydantic's wording, without its URLs)."""
    first = error.errors(include_url=False)[0]
    field = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or "body"
    message = "required" if first.get("type") == "missing" else first.get("msg", "invalid")
    return f"{field}: {message}"


def parse_json_body(data: dict[str, Any]) -> CreateJobBody:
    """Check the small members of the JSON document (the media were checked as they streamed)."""
    try:
        body = CreateJobBody.model_validate(data, strict=True)
    except ValidationError as exc:
        raise InvalidInputError(describe_validation_error(exc)) from exc
    for kind in ("image", "audio", "audio_2"):
        inline, url = (getattr(body, f"{kind}_base64") or "").strip(), (getattr(body, f"{kind}_url") or "").strip()
        if inline and url:
            raise InvalidInputError(f"{kind}_base64, {kind}_url: send one of them, not both")
    if not (body.image_base64 or "").strip() and not (body.image_url or "").strip():
        raise InvalidInputError("image_base64: required (or image_url)")
    return body


def _json_field(fields: dict[str, str], name: str) -> Any:
    raw = fields.get(name, "").strip()
    if not raw:
        return None
    try:
        return json.loads(raw, parse_constant=_no_constants)
    except (json.JSONDecodeError, RecursionError, ValueError) as exc:
        raise InvalidInputError(f"{name}: must be JSON ({exc})") from exc


def form_speakers(fields: dict[str, str], has_audio_2: bool) -> SpeakerRequest:
    return speakers_from_request(_json_field(fields, "speakers"), _json_field(fields, "boxes"),
                                 has_audio_2 or bool(fields.get("audio_2_url", "").strip()),
                                 _bool(fields, "stereo_speakers", False))


def _int(fields: dict[str, str], name: str, default: int | None = None) -> int:
    raw = fields.get(name, "").strip()
    if not raw:
        if default is None:
            raise InvalidInputError(f"{name}: required")
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise InvalidInputError(f"{name}: must be an integer, got {raw!r}") from exc


def _bool(fields: dict[str, str], name: str, default: bool) -> bool:
    raw = fields.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in BOOL_WORDS:
        raise InvalidInputError(f"{name}: must be true or false, got {raw!r}")
    return BOOL_WORDS[raw]


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def options_from_form(fields: dict[str, str], speakers: SpeakerRequest | None = None) -> JobOptions:
    sampling: dict[str, Any] = {}
    if fields.get("sampling", "").strip():
        try:
            sampling = json.loads(fields["sampling"], parse_constant=_no_constants)
        except (json.JSONDecodeError, RecursionError, ValueError) as exc:
            raise InvalidInputError(f"sampling: must be a JSON object ({exc})") from exc
        if not isinstance(sampling, dict):
            raise InvalidInputError("sampling: must be a JSON object")
    target = fields.get("chunk_target_sec", "").strip()
    try:
        chunk_target_sec = float(target) if target else 0.0
    except ValueError as exc:
        raise InvalidInputError(f"chunk_target_sec: must be a number, got {target!r}") from exc
    if not math.isfinite(chunk_target_sec):
        raise InvalidInputError("chunk_target_sec: must be a finite number")
    return JobOptions(
        width=_int(fields, "width"), height=_int(fields, "height"), pool=fields.get("provider", ""),
        prompt=fields.get("prompt", ""), push_to_s3=_bool(fields, "push_to_s3", False),
        dry_run=_bool(fields, "dry_run", False), force_offload=_bool(fields, "force_offload", True),
        seed=_int(fields, "seed", 0), sampling=sampling, chunk_target_sec=chunk_target_sec,
        webhook_url=fields.get("webhook_url", ""),
        video_extend=fields.get("video_extend", "").strip(),
        lanes=_int(fields, "lanes", 0),
    ) if speakers is None else apply_speakers(options_from_form(fields), speakers, fields.get("audio_type", ""),
                                              _bool(fields, "stereo_speakers", False))


def job_json(view: JobView, video_base64: str | None = None) -> dict[str, Any]:
    """The seed's JobResponse (empty error / video fields omitted) plus our extra fields."""
    body = view_as_dict(view)
    if video_base64:
        body["video_base64"] = video_base64
    return body


def error_response(status: int, message: str, code: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "code": code}, status_code=status, headers=headers)
