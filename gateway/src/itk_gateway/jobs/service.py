"""The job service: what REST and gRPC both call. Neither API has logic of its own.

Creating a job: the caller opens an Upload (a job id and a work folder), streams the image and
audio into it (the size limit is enforced while writing), then calls create_job with the
options. The service validates everything, records the job, starts its runner and waits until
the splitter has accepted the audio (its first chunk) or refused it, so undecodable or empty
audio is a validation error, not a job that fails later. The split goes on in the background.
If the splitter takes longer than SPLIT_ACCEPT_TIMEOUT_SEC for its first chunk (a very long
recording), the job is accepted anyway and a later refusal fails it.
A refused request leaves nothing behind: no row, no files.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from itk_gateway.config import Settings
from itk_gateway.errors import InvalidInputError, JobNotFoundError, PayloadTooLargeError, WrongJobStateError
from itk_gateway.jobs.gate import AcceptGate
from itk_gateway.jobs.orchestrator import Orchestrator
from itk_gateway.jobs.validation import (
    JobOptions,
    OptionRules,
    check_audio_present,
    check_image,
    check_options,
    is_job_id,
    new_job_id,
)
from itk_gateway.metrics import GatewayMetrics
from itk_gateway.storage.files import JobFiles, S3Store
from itk_gateway.storage.store import CANCELLED, COMPLETED, JobRecord, JobStore

log = logging.getLogger(__name__)
WATCH_POLL_SEC = 5.0


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class JobView:
    """A job as clients see it."""

    id: str
    provider: str
    status: str
    progress: int
    error: str
    video_url: str
    chunk_count: int
    chunks_done: int
    frames_total: int
    frames_done: int
    duration_sec: float
    seed: int
    width: int
    height: int
    created_at: str
    updated_at: str
    video_available: bool
    push_to_s3: bool
    dry_run: bool


class Upload:
    """An incoming job's files, written as they arrive; over the limit raises PayloadTooLargeError."""

    def __init__(self, files: JobFiles, limit_bytes: int, limit_mb: int) -> None:
        self.job_id = new_job_id()
        self.files = files
        self.limit_bytes = limit_bytes
        self.limit_mb = limit_mb
        self.received = 0
        self.sizes = {"image": 0, "audio": 0}
        self._handles: dict[str, BinaryIO] = {}
        files.create_work_dir(self.job_id)

    def path(self, kind: str) -> Path:
        return self.files.image(self.job_id) if kind == "image" else self.files.audio(self.job_id)

    def write(self, kind: str, data: bytes) -> None:
        self.received += len(data)
        if self.received > self.limit_bytes:
            raise PayloadTooLargeError(f"upload exceeds MAX_UPLOAD_MB={self.limit_mb} MiB")
        handle = self._handles.get(kind)
        if handle is None:
            handle = self._handles[kind] = self.path(kind).open("wb")
        handle.write(data)
        self.sizes[kind] += len(data)

    def close_files(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()

    def discard(self) -> None:
        self.close_files()
        self.files.remove_work_dir(self.job_id)

    def __enter__(self) -> Upload:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        # Anything but a successful create_job removes the upload.
        if exc_type is not None:
            self.discard()


class JobService:
    def __init__(self, settings: Settings, store: JobStore, files: JobFiles, orchestrator: Orchestrator,
                 metrics: GatewayMetrics, s3: S3Store | None) -> None:
        self.settings = settings
        self.store = store
        self.files = files
        self.orchestrator = orchestrator
        self.metrics = metrics
        self.s3 = s3
        self.rules = OptionRules(
            providers=list(settings.pool_targets()), default_provider=settings.default_provider,
            aliases=settings.provider_aliases, s3_enabled=s3 is not None,
        )

    # -- creating ------------------------------------------------------------------------

    def open_upload(self) -> Upload:
        return Upload(self.files, self.settings.max_upload_bytes, self.settings.max_upload_mb)

    def check_options(self, options: JobOptions) -> JobOptions:
        return check_options(options, self.rules)

    def create_job(self, upload: Upload, options: JobOptions) -> JobView:
        """Validate, record and start the job; on any error the upload is removed."""
        try:
            upload.close_files()
            self.check_options(options)
            if upload.sizes["image"] == 0:
                raise InvalidInputError("image: required")
            check_audio_present("audio", upload.sizes["audio"])
            check_image("image", upload.path("image").read_bytes(), self.settings.max_image_pixels)
            self.store.create_job(upload.job_id, options)
        except BaseException:
            upload.discard()
            raise
        gate = AcceptGate()
        try:
            self.orchestrator.start_job(upload.job_id, gate)
        except BaseException:
            self.store.delete_job(upload.job_id)
            upload.discard()
            raise
        gate.wait(self.settings.split_accept_timeout_sec)
        self.metrics.jobs_total.inc()
        log.info("job %s accepted (%dx%d, provider %s, %d bytes)", upload.job_id, options.width,
                 options.height, options.provider, upload.received)
        return self.get_job(upload.job_id)

    # -- reading -------------------------------------------------------------------------

    def _record(self, job_id: str) -> JobRecord:
        if not job_id or not is_job_id(job_id):
            # Malformed ids are simply unknown ids (404), as in the seed API.
            raise JobNotFoundError()
        record = self.store.get_job(job_id)
        if record is None:
            raise JobNotFoundError()
        return record

    def view(self, record: JobRecord) -> JobView:
        video_url = ""
        if record.status == COMPLETED and record.has_video and record.s3_key and self.s3 is not None:
            video_url = self.s3.presigned_url(record.s3_key)
        return JobView(
            id=record.id, provider=record.provider, status=record.status, progress=record.progress,
            error=record.error, video_url=video_url, chunk_count=record.chunk_count,
            chunks_done=record.chunks_done, frames_total=record.frames_total, frames_done=record.frames_done,
            duration_sec=record.duration_sec, seed=record.options.seed, width=record.options.width,
            height=record.options.height, created_at=_iso(record.created_at), updated_at=_iso(record.updated_at),
            video_available=record.status == COMPLETED and record.has_video,
            push_to_s3=record.options.push_to_s3, dry_run=record.options.dry_run,
        )

    def get_job(self, job_id: str) -> JobView:
        return self.view(self._record(job_id))

    def watch_job(self, job_id: str, active: Callable[[], bool] = lambda: True) -> Iterator[JobView]:
        """Yield the job now and after every change, until it ends (or `active()` turns false)."""
        self._record(job_id)
        last: JobView | None = None
        while active():
            version = self.store.version(job_id)
            record = self.store.get_job(job_id)
            if record is None:
                return
            view = self.view(record)
            if last is None or _changed(last, view):
                yield view
                last = view
            if record.finished:
                return
            self.store.wait_for_change(job_id, version, WATCH_POLL_SEC)

    # -- the video -----------------------------------------------------------------------

    def local_video(self, job_id: str) -> Path | None:
        """The finished video's local path, or None if it lives on S3; errors if there is none."""
        record = self._record(job_id)
        if record.status != COMPLETED:
            raise WrongJobStateError(f"job {job_id} has no video: it is {record.status}")
        if not record.has_video:
            reason = "it was a dry run" if record.options.dry_run else "it was deleted"
            raise WrongJobStateError(f"job {job_id} has no video: {reason}")
        if record.s3_key:
            return None
        path = self.files.result(job_id)
        if not path.exists():
            raise WrongJobStateError(f"job {job_id} has no video: the file is gone")
        return path

    def s3_key(self, job_id: str) -> str:
        return self._record(job_id).s3_key

    def delete_video(self, job_id: str) -> None:
        """Idempotent: deleting a video that is gone (or never was) succeeds."""
        record = self._record(job_id)
        self.files.remove_result(job_id)
        if record.s3_key and self.s3 is not None:
            self.s3.delete(record.s3_key)
        if record.has_video:
            self.store.update_job(job_id, has_video=0)

    # -- cancelling ----------------------------------------------------------------------

    def cancel_job(self, job_id: str) -> JobView:
        record = self._record(job_id)
        if record.finished or not self.orchestrator.end_job(job_id, CANCELLED, "cancelled by the client"):
            current = self.store.get_job(job_id)
            status = current.status if current else record.status
            raise WrongJobStateError(f"job {job_id} already ended: it is {status}")
        return self.get_job(job_id)


def _changed(before: JobView, after: JobView) -> bool:
    # The presigned URL differs on every read; it is not a change of the job.
    return before.__dict__ | {"video_url": ""} != after.__dict__ | {"video_url": ""}
