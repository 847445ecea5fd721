"""The job service: what REST and gRPC both call. Neither API has logic of its own.

Creating a job: the caller opens an Upload (a job id and a work folder), streams the image and
audio into it (the size limit is enforced while writing), then calls create_job with the
options. The service validates everything, records the job, starts its runner and waits until
the splitter has accepted the audio (its first chunk) or refused it, so undecodable or empty
audio is a validation error, not a job that fails later. The split goes on in the background.
If the splitter takes longer than SPLIT_ACCEPT_TIMEOUT_SEC for its first chunk (a very long
recording), the job is accepted anyway and a later refusal fails it.
A refused request leaves nothing behind: no row, no files.

Ownership: every call takes the caller's Principal. A job belongs to the key that created it;
for anyone else (but admin keys) it does not exist: 404 on every endpoint of every API, the
same answer as for an id never issued, so ids of others cannot even be confirmed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO, NoReturn

from itk_common.faces import FaceFinder
from itk_gateway.config import Settings
from itk_gateway.errors import (
    CreationFailedError,
    IdempotencyConflictError,
    InvalidInputError,
    JobNotFoundError,
    PayloadTooLargeError,
    RateLimitedError,
    StateUnavailableError,
    StorageFullError,
    StreamNotReadyError,
    WrongJobStateError,
)
from itk_gateway.jobs.fetch import FetchError, FetchSlots, UrlFetcher
from itk_gateway.jobs.gate import AcceptGate
from itk_gateway.jobs.orchestrator import Orchestrator
from itk_gateway.jobs.reference import VideoLimits, check_audio_file, prepare_reference
from itk_gateway.jobs.speakers import check_pool_renders, check_speaker_options, resolve_boxes
from itk_gateway.jobs.validation import (
    OptionRules,
    check_audio_present,
    check_options,
    is_job_id,
    new_job_id,
)
from itk_gateway.jobs.views import JobView, JobViews, changed
from itk_gateway.jobs.webhooks import WebhookNotifier
from itk_gateway.live.publisher import LivePublisher, Manifest, render_playlist, target_duration
from itk_gateway.metrics import GatewayMetrics
from itk_gateway.options import JobOptions
from itk_gateway.security.keys import Principal
from itk_gateway.security.limits import UploadBudget
from itk_gateway.storage.blobs import BlobStoreError, StoredVideo
from itk_gateway.storage.database import DatabaseUnavailableError
from itk_gateway.storage.files import JobFiles, S3Store
from itk_gateway.storage.space import DiskSpace, is_storage_full
from itk_gateway.storage.store import CANCELLED, COMPLETED, JobRecord, JobStore

log = logging.getLogger(__name__)
WATCH_POLL_SEC = 5.0
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
MAX_RECENT_JOBS = 100
# Jobs take minutes: a caller at its jobs-in-flight limit is told to come back after this long.
ACTIVE_JOBS_RETRY_AFTER_SEC = 30.0
# A caller at its URL download limit: downloads take seconds to minutes.
FETCH_RETRY_AFTER_SEC = 10.0

# The shared state being out of reach (database, bucket): a 503 / UNAVAILABLE, never a 500.
STATE_ERRORS = (DatabaseUnavailableError, BlobStoreError)


@contextmanager
def state_unavailable_as(error: type[CreationFailedError] | type[StateUnavailableError]) -> Iterator[None]:
    try:
        yield
    except STATE_ERRORS as exc:
        log.warning("%s", exc)
        raise error(f"job state unavailable, retry later: {exc}") from exc


# The files of a job: the portrait (or video), the recording, person 2's recording.
UPLOAD_KINDS = ("image", "audio", "audio_2")


def raise_storage_full(exc: BaseException) -> None:
    """A write that hit a full volume is a server condition (507), whatever layer it came from."""
    if is_storage_full(exc) and not isinstance(exc, StorageFullError):
        raise StorageFullError(f"the gateway's storage is full ({exc}); retry later") from exc


class Upload:
    """An incoming job's files, written as they arrive; over the limit raises PayloadTooLargeError.
    Every byte is also counted in the gateway-wide budget of uploads in flight until the upload
    is accepted or discarded."""

    def __init__(self, files: JobFiles, limit_bytes: int, limit_mb: int, owner: Principal,
                 budget: UploadBudget | None = None) -> None:
        self.job_id = new_job_id()
        self.files = files
        self.limit_bytes = limit_bytes
        self.limit_mb = limit_mb
        self.owner = owner
        self.budget = budget
        self.reserved = 0
        self.received = 0
        self.sizes = dict.fromkeys(UPLOAD_KINDS, 0)
        # What was uploaded, for Idempotency-Key: the same key must come with the same files.
        self.digests = {kind: hashlib.sha256() for kind in UPLOAD_KINDS}
        # What error messages call each input (the API's field name, or the URL's field and host).
        self.names = {kind: kind for kind in UPLOAD_KINDS}
        self.fetched: set[str] = set()  # kinds that came from a URL
        self.urls: dict[str, tuple[str, str]] = {}  # kind -> (API field, URL) still to download
        self._handles: dict[str, BinaryIO] = {}
        files.create_work_dir(self.job_id)

    def path(self, kind: str) -> Path:
        if kind == "image":
            return self.files.image(self.job_id)
        return self.files.speaker_audio(self.job_id, 2 if kind == "audio_2" else 1)

    def write(self, kind: str, data: bytes) -> None:
        self.received += len(data)
        if self.received > self.limit_bytes:
            raise PayloadTooLargeError(f"upload exceeds MAX_UPLOAD_MB={self.limit_mb} MiB")
        if self.budget is not None:
            self.budget.reserve(len(data))
            self.reserved += len(data)
        try:
            handle = self._handles.get(kind)
            if handle is None:
                handle = self._handles[kind] = self.path(kind).open("wb")
            handle.write(data)
        except OSError as exc:
            if is_storage_full(exc):
                raise StorageFullError(f"the gateway's data volume is full ({exc.strerror}); retry later") from exc
            raise
        self.sizes[kind] += len(data)
        self.digests[kind].update(data)

    def close_files(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()

    def release_budget(self) -> None:
        if self.budget is not None and self.reserved:
            self.budget.release(self.reserved)
            self.reserved = 0

    def discard(self) -> None:
        self.close_files()
        self.release_budget()
        self.files.remove_work_dir(self.job_id)

    def __enter__(self) -> Upload:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        # Anything but a successful create_job removes the upload.
        self.release_budget()
        if exc_type is not None:
            self.discard()


@dataclass
class Intake:
    """What creating a job checks its inputs with: the deployment's option rules, the URL
    fetcher, the limits on a video reference, and the budget of upload bytes in flight."""

    rules: OptionRules
    fetcher: UrlFetcher
    video_limits: VideoLimits
    upload_budget: UploadBudget
    space: DiskSpace
    fetch_slots: FetchSlots


class JobService:
    """Built by the composition root (server.build_gateway) from parts built there."""

    def __init__(self, settings: Settings, store: JobStore, files: JobFiles, orchestrator: Orchestrator,
                 metrics: GatewayMetrics, views: JobViews, intake: Intake, webhooks: WebhookNotifier,
                 s3: S3Store | None, live: LivePublisher | None = None) -> None:
        self.settings = settings
        self.live = live
        self.store = store
        self.files = files
        self.orchestrator = orchestrator
        self.metrics = metrics
        self.views = views
        self.s3 = s3
        self.webhooks = webhooks
        self.rules = intake.rules
        self.fetcher = intake.fetcher
        self.video_limits = intake.video_limits
        self.upload_budget = intake.upload_budget
        self.space = intake.space
        self.fetch_slots = intake.fetch_slots
        # Detects the speakers' faces of two-person jobs sent without boxes (made when first needed).
        self.faces: FaceFinder | None = None

    # -- creating ------------------------------------------------------------------------

    def open_upload(self, principal: Principal) -> Upload:
        """Start receiving a job of `principal`; refused at once when it has too many jobs in
        flight, or when the data volume is (nearly) full."""
        self._check_active_jobs(principal)
        if self.space.low():
            self.metrics.refused.labels("storage_full").inc()
            raise StorageFullError(f"{self.space.describe()}; retry later")
        return Upload(self.files, self.settings.max_upload_bytes, self.settings.max_upload_mb, principal,
                      self.upload_budget)

    def _check_active_jobs(self, principal: Principal) -> None:
        """An early refusal, before any upload is received; the limit itself is enforced when
        the job is recorded (JobStore.create_job counts and inserts in one step)."""
        limit = self.settings.max_active_jobs_per_key
        if limit > 0 and self.store.count_active(principal.name) >= limit:
            self._refuse_active_jobs()

    def _refuse_active_jobs(self) -> NoReturn:
        self.metrics.refused.labels("jobs_in_flight").inc()
        raise RateLimitedError(
            f"too many jobs in flight: at most {self.settings.max_active_jobs_per_key} queued or running per key"
            " (MAX_ACTIVE_JOBS_PER_KEY)", ACTIVE_JOBS_RETRY_AFTER_SEC)

    def check_options(self, options: JobOptions) -> JobOptions:
        check_speaker_options(options)
        return check_options(options, self.rules)

    def create_job_once(self, upload: Upload, options: JobOptions,
                        idempotency_key: str = "") -> tuple[JobView, bool]:
        """create_job under an Idempotency-Key: the key's first request creates the job, a repeat
        with the same options and files returns that job (True: a replay), another request with
        the key is a conflict. Without a key, every request creates a job."""
        owner = upload.owner.name
        if not idempotency_key:
            return self.create_job(upload, options), False
        if not IDEMPOTENCY_KEY.fullmatch(idempotency_key):
            upload.discard()
            raise InvalidInputError("Idempotency-Key: 1 to 255 printable ASCII characters without spaces")
        upload.close_files()
        fingerprint = hashlib.sha256(json.dumps(
            [asdict(options), *(upload.digests[kind].hexdigest() for kind in UPLOAD_KINDS)],
            sort_keys=True).encode()).hexdigest()
        held = self.store.claim_idempotency_key(owner, idempotency_key, fingerprint,
                                                self.settings.idempotency_ttl_sec)
        if held is not None:
            upload.discard()
            held_fingerprint, job_id = held
            if held_fingerprint != fingerprint:
                raise IdempotencyConflictError("Idempotency-Key was already used with a different request")
            if not job_id:
                raise IdempotencyConflictError("a request with this Idempotency-Key is still being processed")
            return self.get_job(job_id, upload.owner), True
        try:
            view = self.create_job(upload, options)
        except BaseException:
            self.store.settle_idempotency_key(owner, idempotency_key, None)
            raise
        self.store.settle_idempotency_key(owner, idempotency_key, view.id)
        return view, False

    def fetch_inputs(self, upload: Upload, image_url: str = "", audio_url: str = "",
                     fields: tuple[str, ...] = ("image_url", "audio_url", "audio_2_url"),
                     audio_2_url: str = "") -> None:
        """Note URL inputs for the upload; `fields` are the API's names for the URLs (person 2's
        recording third), used in messages. Nothing is downloaded here: create_job fetches them
        outside the request."""
        for kind, url, field_name in (("image", image_url, fields[0]), ("audio", audio_url, fields[1]),
                                      ("audio_2", audio_2_url, fields[2] if len(fields) > 2 else "audio_2_url")):
            if url:
                upload.urls[kind] = (field_name, url)
                # What an Idempotency-Key compares: the same URL is the same input.
                upload.digests[kind].update(f"url:{url}".encode())

    def create_job(self, upload: Upload, options: JobOptions,
                   refine: Callable[[Upload, JobOptions], JobOptions] | None = None) -> JobView:
        """Validate, record and start the job; on any error the upload is removed. `refine`
        completes the options from the received files (a size from the reference's shape).

        With URL inputs the job is recorded first and its runner downloads them (bounded by
        URL_FETCHES_PER_KEY and URL_FETCHES_TOTAL, 429 beyond): the request waits at most
        URL_ACCEPT_WAIT_SEC for the download and the splitter's acceptance. A download failing
        within that wait is refused like any bad input, with nothing left behind; one failing
        later fails the job with the same message. No request thread waits on a slow server."""
        if upload.urls:
            return self._create_fetching(upload, options, refine)
        try:
            upload.close_files()
            if refine is not None:
                options = refine(upload, options)
            self.check_options(options)
            self._check_inputs(upload, options)
            self._record_job(upload, options)
        except BaseException as exc:
            upload.discard()
            raise_storage_full(exc)
            raise
        return self._start(upload, options, self.settings.split_accept_timeout_sec)

    def _check_inputs(self, upload: Upload, options: JobOptions) -> None:
        """The received files checked, the reference prepared, a two-speaker job's tracks and
        boxes settled (in `options`), and all of them published (readable by every replica
        before the job runs, so any of them can take it over)."""
        image_name, audio_name = upload.names["image"], upload.names["audio"]
        if upload.sizes["image"] == 0:
            raise InvalidInputError(f"{image_name}: required")
        audio = upload.path("audio")
        had_audio = upload.sizes["audio"] > 0
        if had_audio and "audio" in upload.fetched:
            # Uploads go to the splitter as they are; a URL's file is checked here so the
            # message can name where it came from.
            check_audio_file(audio_name, audio)
        prepare_reference(image_name, upload.path("image"), audio, self.files.source_video(upload.job_id),
                          self.video_limits, self.settings.max_image_pixels)
        if not had_audio and not audio.exists():
            raise InvalidInputError(
                f"{audio_name}: empty or missing (send a recording, an audio URL, or a video with sound)")
        check_audio_present(audio_name, audio.stat().st_size)
        if options.speakers >= 2:
            self._prepare_speakers(upload, options)
        with state_unavailable_as(CreationFailedError):
            self.files.publish(upload.path("image"))
            self.files.publish(audio)
            if upload.sizes["audio_2"]:
                self.files.publish(upload.path("audio_2"))
            if self.files.source_video(upload.job_id).exists():
                self.files.publish(self.files.source_video(upload.job_id))

    def _record_job(self, upload: Upload, options: JobOptions) -> None:
        """Record the job, counting the key's active jobs and inserting in one step (429 past the limit)."""
        with state_unavailable_as(CreationFailedError):
            created = self.store.create_job(
                upload.job_id, options, owner=upload.owner.name, driver=self.orchestrator.replica_id,
                lease_sec=self.orchestrator.leases.lease_sec, max_active=self.settings.max_active_jobs_per_key)
        if not created:
            self._refuse_active_jobs()

    def _start(self, upload: Upload, options: JobOptions, accept_wait_sec: float,
               prepare: Callable[[threading.Event], None] | None = None) -> JobView:
        gate = AcceptGate()
        try:
            self.orchestrator.start_job(upload.job_id, gate, prepare)
        except BaseException:
            self.store.delete_job(upload.job_id)
            upload.discard()
            raise
        gate.wait(accept_wait_sec)
        self.webhooks.watch(upload.job_id)
        self.metrics.jobs_total.inc()
        log.info("job %s accepted (%dx%d, pool %s, %d bytes, key %s)", upload.job_id, options.width,
                 options.height, options.pool, upload.received, upload.owner.name or "-")
        return self.get_job(upload.job_id, upload.owner)

    def _prepare_speakers(self, upload: Upload, options: JobOptions) -> None:
        """A two-speaker job: both recordings there, the boxes inside the portrait (or its faces
        as the boxes), and a pool that renders two people."""
        second = upload.names["audio_2"]
        if options.stereo_speakers and upload.sizes["audio_2"]:
            raise InvalidInputError(f"{second}, stereo_speakers: send person 2's recording or a stereo "
                                    "recording with both, not both")
        if not options.stereo_speakers and not upload.sizes["audio_2"]:
            raise InvalidInputError(f"{second}: person 2's recording is missing or empty (or send one stereo "
                                    "recording with a speaker per channel and stereo_speakers)")
        if "audio_2" in upload.fetched:
            check_audio_file(second, upload.path("audio_2"))
        if self.faces is None:
            self.faces = FaceFinder()
        resolve_boxes(options, upload.path("image"), self.faces)
        pool = self.orchestrator.backends.pools.get(options.pool)
        if pool is not None:
            check_pool_renders(options.pool, pool.person_counts(), options.speakers)

    def _create_fetching(self, upload: Upload, options: JobOptions,
                         refine: Callable[[Upload, JobOptions], JobOptions] | None) -> JobView:
        owner = upload.owner.name
        try:
            upload.close_files()
            self.check_options(options)
            problem = self.fetch_slots.refusal(owner)
            if problem is not None:
                self.metrics.refused.labels("url_fetches").inc()
                raise RateLimitedError(problem, FETCH_RETRY_AFTER_SEC)
        except BaseException:
            upload.discard()
            raise
        try:
            self._record_job(upload, options)
        except BaseException as exc:
            self.fetch_slots.give_back(owner)
            upload.discard()
            raise_storage_full(exc)
            raise

        def prepare(abort: threading.Event) -> None:
            try:
                self._download(upload, abort)
                upload.close_files()
                final = self.check_options(refine(upload, options)) if refine is not None else options
                self._check_inputs(upload, final)  # settles a two-speaker job's boxes in `final`
                if refine is not None or final.speakers >= 2:
                    self.store.update_options(upload.job_id, final)
            finally:
                upload.close_files()
                upload.release_budget()
                self.fetch_slots.give_back(owner)

        try:
            return self._start(upload, options, self.settings.url_accept_wait_sec, prepare)
        except BaseException:
            self.fetch_slots.give_back(owner)
            raise

    def _download(self, upload: Upload, abort: threading.Event) -> None:
        """Fetch the upload's URLs into it (in the job's runner thread); stops when the job ends."""
        for kind, (field_name, url) in upload.urls.items():
            def write(data: bytes, kind: str = kind, field_name: str = field_name) -> None:
                if abort.is_set():
                    raise FetchError(f"{field_name}: download stopped, the job ended")
                upload.write(kind, data)

            host = self.fetcher.fetch(field_name, url, write, max_bytes=upload.limit_bytes - upload.received)
            upload.names[kind] = f"{field_name} from {host}"
            upload.fetched.add(kind)

    # -- reading -------------------------------------------------------------------------

    def _record(self, job_id: str, principal: Principal) -> JobRecord:
        if not job_id or not is_job_id(job_id):
            # Malformed ids are simply unknown ids (404), as in the seed API.
            raise JobNotFoundError()
        with state_unavailable_as(StateUnavailableError):
            record = self.store.get_job(job_id)
        if record is None or not principal.can_see(record.owner):
            raise JobNotFoundError()
        return record

    def view(self, record: JobRecord) -> JobView:
        return self.views.view(record)

    def get_job(self, job_id: str, principal: Principal) -> JobView:
        return self.view(self._record(job_id, principal))

    def recent_jobs(self, principal: Principal, limit: int = 20) -> list[JobView]:
        """The caller's newest jobs first (at most MAX_RECENT_JOBS)."""
        if not 1 <= limit <= MAX_RECENT_JOBS:
            raise InvalidInputError(f"limit: must be between 1 and {MAX_RECENT_JOBS}")
        records = (self.store.get_job(job_id) for job_id in self.store.recent_job_ids(principal.name, limit))
        return [self.view(record) for record in records if record is not None]

    def progress_of(self, record: JobRecord) -> dict:
        return self.views.progress_of(record)

    def watch_job(self, job_id: str, principal: Principal,
                  active: Callable[[], bool] = lambda: True) -> Iterator[JobView]:
        """Yield the job now and after every change, until it ends (or `active()` turns false)."""
        self._record(job_id, principal)
        last: JobView | None = None
        while active():
            version = self.store.version(job_id)
            with state_unavailable_as(StateUnavailableError):
                record = self.store.get_job(job_id)
            if record is None:
                return
            view = self.view(record)
            if last is None or changed(last, view):
                yield view
                last = view
            # A completed job's quality report comes after it ends: the watch waits for it.
            if record.finished and not view.quality_pending:
                return
            self.store.wait_for_change(job_id, version, WATCH_POLL_SEC)

    # -- the video -----------------------------------------------------------------------

    def video(self, job_id: str, principal: Principal) -> Path | StoredVideo | None:
        """The finished video: a local file or one in the shared store, or None when it was
        pushed to S3 (`push_to_s3`, served by presigned URL); errors if there is none."""
        record = self._record(job_id, principal)
        if record.status != COMPLETED:
            raise WrongJobStateError(f"job {job_id} has no video: it is {record.status}")
        if not record.has_video:
            reason = "it was a dry run" if record.options.dry_run else "it was deleted"
            raise WrongJobStateError(f"job {job_id} has no video: {reason}")
        if record.s3_key:
            return None
        with state_unavailable_as(StateUnavailableError):
            video = self.files.video(job_id)
        if video is None:
            raise WrongJobStateError(f"job {job_id} has no video: the file is gone")
        return video

    def s3_key(self, job_id: str, principal: Principal) -> str:
        return self._record(job_id, principal).s3_key

    def delete_video(self, job_id: str, principal: Principal) -> None:
        """Idempotent: deleting a video that is gone (or never was) succeeds."""
        record = self._record(job_id, principal)
        if record.finished and self.live is not None:
            self.live.discard(job_id)
        with state_unavailable_as(StateUnavailableError):
            self.files.remove_result(job_id)
            if record.s3_key and self.s3 is not None:
                self.s3.delete(record.s3_key)
            if record.has_video:
                self.store.update_job(job_id, has_video=0)

    # -- the live stream -----------------------------------------------------------------

    def live_manifest(self, job_id: str, principal: Principal) -> tuple[JobRecord, Manifest]:
        """The job's live segments so far; errors when it has or will have none."""
        record = self._record(job_id, principal)
        if self.live is None:
            raise WrongJobStateError("live streams are not enabled on this gateway")
        if record.options.dry_run:
            raise WrongJobStateError(f"job {job_id} is a dry run: it has no video")
        if record.finished and record.status != COMPLETED:
            raise WrongJobStateError(f"job {job_id} has no stream: it is {record.status}")
        manifest = self.live.manifest(job_id)
        if record.status == COMPLETED and not manifest.ended:
            reason = "its video was deleted" if not record.has_video else "its stream was not kept; download the video"
            raise WrongJobStateError(f"job {job_id} has no stream: {reason}")
        return record, manifest

    def playlist(self, job_id: str, principal: Principal) -> str:
        """The HLS playlist; StreamNotReadyError until the recording is cut (its plan gives the
        segments' target duration, which a playlist must not change)."""
        record, manifest = self.live_manifest(job_id, principal)
        if not record.split_done:
            raise StreamNotReadyError(f"job {job_id} is still being split; try again in a moment")
        return render_playlist(manifest, target_duration([c.frame_count for c in self.store.chunks(job_id)]))

    def live_file(self, job_id: str, name: str, principal: Principal) -> Path:
        self.live_manifest(job_id, principal)
        path = self.live.segment_path(job_id, name) if self.live is not None else None
        if path is None:
            raise JobNotFoundError(f"job {job_id} has no segment {name!r}")
        return path

    # -- cancelling ----------------------------------------------------------------------

    def cancel_job(self, job_id: str, principal: Principal) -> JobView:
        record = self._record(job_id, principal)
        with state_unavailable_as(StateUnavailableError):
            ended = not record.finished and self.orchestrator.end_job(job_id, CANCELLED, "cancelled by the client")
        if not ended:
            current = self.store.get_job(job_id)
            status = current.status if current else record.status
            raise WrongJobStateError(f"job {job_id} already ended: it is {status}")
        return self.get_job(job_id, principal)
