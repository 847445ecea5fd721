"""The public gRPC API (infinitetalk.v1.Gateway) on top of the job service."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import grpc
from google.protobuf.message import Message

from infinitetalk.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from itk_common.constants import MAX_PIECE_BYTES
from itk_common.quality.report import report_from_json
from itk_common.streaming import file_data_pieces
from itk_gateway.api.grpc_segments import stream_segments
from itk_gateway.errors import ApiError, InvalidInputError, RateLimitedError
from itk_gateway.jobs.service import JobService
from itk_gateway.jobs.speakers import SpeakerRequest, apply_speakers, speaker_audio_urls, speakers_from_request
from itk_gateway.jobs.views import JobView, LaneView, SeamView, SpeakerView, public_fields
from itk_gateway.options import JobOptions
from itk_gateway.security.grpc_interceptor import principal_of
from itk_gateway.security.guard import Guard, peer_host
from itk_gateway.security.keys import Principal
from itk_gateway.security.limits import Slots
from itk_gateway.storage.blobs import StoredVideo

log = logging.getLogger(__name__)
SERVICE_NAME = gateway_pb2.DESCRIPTOR.services_by_name["Gateway"].full_name
# A refused long call is worth retrying once another has ended; a watch or download lasts seconds to minutes.
STREAM_RETRY_AFTER_SEC = 5.0


def view_message(view: LaneView | SeamView | SpeakerView | JobView, message: Message) -> Message:
    """Fill a message from a view (jobs/views.py), field by field under the same names: the status
    by its enum value, lanes and seams as repeated messages."""
    for item in public_fields(type(view)):
        value = getattr(view, item.name)
        target = message.DESCRIPTOR.fields_by_name[item.name]
        if item.metadata.get("message") == "QualityReport":
            if value is not None:
                getattr(message, item.name).CopyFrom(report_from_json(value))
        elif item.name == "box":  # a speaker's [x0, y0, x1, y1] as a SpeakerBox
            box = getattr(message, item.name)
            box.x0, box.y0, box.x1, box.y1 = value
        elif isinstance(value, tuple):
            for element in value:
                view_message(element, getattr(message, item.name).add())
        elif target.enum_type is not None:
            setattr(message, item.name, target.enum_type.values_by_name[value].number)
        else:
            setattr(message, item.name, value)
    return message


def job_message(view: JobView) -> gateway_pb2.Job:
    return view_message(view, gateway_pb2.Job())


def speaker_request(message: gateway_pb2.JobOptions, has_audio_2: bool) -> SpeakerRequest:
    entries = [{"audio_url": speaker.audio_url,
                "box": [speaker.box.x0, speaker.box.y0, speaker.box.x1, speaker.box.y1]
                if speaker.HasField("box") else None} for speaker in message.speakers]
    return speakers_from_request(entries, None, has_audio_2 or bool(message.audio_2_url.strip()),
                                 message.stereo_speakers)


def options_from_message(message: gateway_pb2.JobOptions, has_audio_2: bool = False) -> JobOptions:
    return apply_speakers(JobOptions(
        width=message.width, height=message.height, pool=message.provider, prompt=message.prompt,
        push_to_s3=message.push_to_s3, dry_run=message.dry_run, force_offload=message.force_offload,
        seed=message.seed, sampling={field.name: value for field, value in message.sampling.ListFields()},
        chunk_target_sec=message.chunk_target_sec, webhook_url=message.webhook_url,
        video_extend=message.video_extend, lanes=message.lanes,
    ), speaker_request(message, has_audio_2), message.audio_type, message.stereo_speakers)


def _with_last(pieces: Iterator[bytes]) -> Iterator[common_pb2.DataPiece]:
    previous: bytes | None = None
    for data in pieces:
        if previous is not None:
            yield common_pb2.DataPiece(data=previous, last=False)
        previous = data
    yield common_pb2.DataPiece(data=previous or b"", last=True)


def idle_limited(requests: Iterator[Message], context: grpc.ServicerContext, idle_sec: float) -> Iterator[Message]:
    """The upload's messages; the call is cancelled when none arrives for `idle_sec`
    (BODY_READ_TIMEOUT_SEC, as for a REST body), so a stalled upload gives its thread back."""
    if idle_sec <= 0:
        yield from requests
        return
    last = time.monotonic()
    finished = threading.Event()

    def watch() -> None:
        while not finished.wait(min(1.0, idle_sec / 4)):
            if time.monotonic() - last > idle_sec:
                log.warning("gRPC upload from %s sent nothing for %g s (BODY_READ_TIMEOUT_SEC); dropped",
                            context.peer(), idle_sec)
                context.cancel()
                return

    threading.Thread(target=watch, name="upload-idle", daemon=True).start()
    try:
        for request in requests:
            last = time.monotonic()
            yield request
    finally:
        finished.set()


class GatewayServicer(gateway_pb2_grpc.GatewayServicer):
    """Every method runs behind the AuthInterceptor; the caller's principal goes to the service.

    Each call holds one of the server's worker threads for as long as it lasts. The long ones
    (an upload, a watch, a live stream, a download) hold a slot of `streams` too, taken per caller
    and in total and refused at once when none is free, so that however many a caller opens, the
    short calls and the health check always find a thread."""

    def __init__(self, service: JobService, guard: Guard, streams: Slots, upload_idle_sec: float = 0.0,
                 on_refused: Callable[[str], None] = lambda _reason: None) -> None:
        self.service = service
        self.guard = guard
        self.streams = streams
        self.upload_idle_sec = upload_idle_sec
        self.on_refused = on_refused

    @contextmanager
    def _long_call(self, context: grpc.ServicerContext) -> Iterator[Principal]:
        who = principal_of(self.guard, context)
        # Key holders are counted per key; without keys, per address.
        caller = f"key:{who.name}" if who.name else f"addr:{peer_host(context.peer())}"
        full = self.streams.take(caller)
        if full is not None:
            self.on_refused("grpc_streams")
        if full == Slots.PER_CALLER:
            raise RateLimitedError(
                f"too many long calls open: at most {self.streams.per_caller} uploads, watches, live streams and "
                "downloads at once per key (GRPC_STREAMS_PER_KEY); close one first", STREAM_RETRY_AFTER_SEC)
        if full == Slots.TOTAL:
            raise RateLimitedError(
                f"this gateway has {self.streams.total} long calls open, its limit (GRPC_STREAMS_TOTAL); "
                "retry shortly", STREAM_RETRY_AFTER_SEC)
        try:
            yield who
        finally:
            self.streams.give_back(caller)

    @staticmethod
    def _abort(context: grpc.ServicerContext, error: ApiError) -> None:
        if error.retry_after:
            context.set_trailing_metadata((("retry-after", error.retry_after),))
        context.abort(error.grpc_status, error.message)

    @staticmethod
    def _require_id(job_id: str, context: grpc.ServicerContext) -> str:
        if not job_id:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "id is required")
        return job_id

    def CreateJob(self, request_iterator, context):  # noqa: N802 - gRPC method name
        try:
            with self._long_call(context) as who:
                requests = idle_limited(request_iterator, context, self.upload_idle_sec)
                return self._create_job(requests, context, who)
        except ApiError as error:
            self._abort(context, error)

    def _create_job(self, request_iterator, context, who: Principal) -> gateway_pb2.Job:
        key = dict(context.invocation_metadata()).get("idempotency-key", "")
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("payload") != "options":
            raise InvalidInputError("the first message must carry the job's options")
        # Checked now (before the upload), passed on as sent (what an Idempotency-Key compares).
        self.service.check_options(options_from_message(first.options))
        with self.service.open_upload(who) as upload:
            for request in request_iterator:
                kind = request.WhichOneof("payload")
                if kind == "options":
                    raise InvalidInputError("options may be sent only once, first")
                if kind in ("image", "audio", "audio_2"):
                    upload.write(kind, getattr(request, kind).data)
            for kind in ("image", "audio", "audio_2"):
                if getattr(first.options, f"{kind}_url").strip() and upload.sizes[kind]:
                    raise InvalidInputError(f"{kind}, options.{kind}_url: send one of them, not both")
            options = options_from_message(first.options, bool(upload.sizes["audio_2"]))
            speakers = speaker_request(first.options, bool(upload.sizes["audio_2"]))
            audio_url, audio_2_url = speaker_audio_urls(speakers, first.options.audio_url.strip(),
                                                        first.options.audio_2_url.strip())
            self.service.fetch_inputs(upload, first.options.image_url.strip(), audio_url,
                                      ("options.image_url", "options.audio_url", "options.audio_2_url"),
                                      audio_2_url)
            view, _ = self.service.create_job_once(upload, options, idempotency_key=key)
            return job_message(view)

    def GetJob(self, request, context):  # noqa: N802
        try:
            who = principal_of(self.guard, context)
            return job_message(self.service.get_job(self._require_id(request.id, context), who))
        except ApiError as error:
            self._abort(context, error)

    def WatchJob(self, request, context):  # noqa: N802
        try:
            job_id = self._require_id(request.id, context)
            with self._long_call(context) as who:
                for view in self.service.watch_job(job_id, who, context.is_active):
                    yield job_message(view)
        except ApiError as error:
            self._abort(context, error)

    def DownloadVideo(self, request, context):  # noqa: N802
        try:
            job_id = self._require_id(request.id, context)
            with self._long_call(context) as who:
                yield from self._video_pieces(job_id, who)
        except ApiError as error:
            self._abort(context, error)

    def _video_pieces(self, job_id: str, who: Principal) -> Iterator[common_pb2.DataPiece]:
        video = self.service.video(job_id, who)
        if isinstance(video, StoredVideo):
            yield from _with_last(video.iter_range(0, video.size - 1, MAX_PIECE_BYTES) if video.size else iter(()))
            return
        if video is not None:
            yield from file_data_pieces(video, MAX_PIECE_BYTES)
            return
        s3 = self.service.s3
        if s3 is None:
            raise InvalidInputError("the video is on S3, which this gateway is not configured for")
        yield from _with_last(s3.iter_object(self.service.s3_key(job_id, who), MAX_PIECE_BYTES))

    def StreamSegments(self, request, context):  # noqa: N802
        try:
            job_id = self._require_id(request.id, context)
            with self._long_call(context) as who:
                yield from stream_segments(self.service, job_id, request.from_index, context.is_active, who)
        except ApiError as error:
            self._abort(context, error)

    def CancelJob(self, request, context):  # noqa: N802
        try:
            who = principal_of(self.guard, context)
            return job_message(self.service.cancel_job(self._require_id(request.id, context), who))
        except ApiError as error:
            self._abort(context, error)

    def DeleteVideo(self, request, context):  # noqa: N802
        try:
            self.service.delete_video(self._require_id(request.id, context), principal_of(self.guard, context))
            return gateway_pb2.DeleteVideoResponse()
        except ApiError as error:
            self._abort(context, error)
