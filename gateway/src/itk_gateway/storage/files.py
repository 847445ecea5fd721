"""Where a job's files live: a work folder per job on local disk, results locally or on S3.

Files are made and used on local disk under DATA_DIR. With several gateway replicas every one of
them must be able to read what another wrote (to take a job over, or to serve its video), so
the files that outlive a step (the upload, finished parts, the result) are also published to a
shared blob store, `S3Blobs` (BLOB_STORE=s3), under the same relative names, and fetched back
by whichever replica needs them. Without it (the default) DATA_DIR itself is the store: one
replica's local disk, or a ReadWriteMany volume that every replica mounts.

Layout under DATA_DIR (and in the blob store):
    jobs/<id>/image, jobs/<id>/audio     the upload, kept until the job ends (resume re-splits it)
    jobs/<id>/source.mp4                 a video reference normalised to 25 fps (dubbing)
    jobs/<id>/sources/<i>.mp4, <i>.png   chunk i's span of it and its first frame
    jobs/<id>/chunks/<i>.wav             chunk audio from the splitter
    jobs/<id>/parts/<i>.mp4              finished generator output, kept until the job ends
    jobs/<id>/parts/<i>.motion.npy       the part's last motion frames, which the next piece of its lane continues
    results/<id>.mp4                     the stitched video until it is deleted (or pushed to S3)
    results/<id>.reference               the portrait, until the job's quality report is stored
Files are written as `*.tmp` and renamed when complete, so a crash never leaves a half file
under a final name.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from itk_gateway.storage.blobs import S3Blobs, StoredVideo

log = logging.getLogger(__name__)


class JobFiles:
    def __init__(self, data_dir: Path, shared: S3Blobs | None = None) -> None:
        self.data_dir = data_dir
        self.shared = shared
        (data_dir / "jobs").mkdir(parents=True, exist_ok=True)
        (data_dir / "results").mkdir(parents=True, exist_ok=True)

    def work_dir(self, job_id: str) -> Path:
        return self.data_dir / "jobs" / job_id

    def image(self, job_id: str) -> Path:
        return self.work_dir(job_id) / "image"

    def audio(self, job_id: str) -> Path:
        return self.work_dir(job_id) / "audio"

    def speaker_audio(self, job_id: str, person: int) -> Path:
        """Person `person`'s recording (1-based) of a two-person job: person 1's is `audio`."""
        return self.audio(job_id) if person == 1 else self.work_dir(job_id) / f"audio_{person}"

    def mix(self, job_id: str) -> Path:
        """A multi-person job's sound: the splitter's mix of the normalised tracks (16 kHz WAV)."""
        return self.work_dir(job_id) / "mix.wav"

    def sound(self, job_id: str) -> Path:
        """The recording the final video and the live stream carry: the mix when there is one."""
        mix = self.mix(job_id)
        return mix if mix.exists() else self.audio(job_id)

    def chunk_wav(self, job_id: str, index: int) -> Path:
        return self.work_dir(job_id) / "chunks" / f"{index:05d}.wav"

    def part(self, job_id: str, index: int) -> Path:
        return self.work_dir(job_id) / "parts" / f"{index:05d}.mp4"

    def source_video(self, job_id: str) -> Path:
        return self.work_dir(job_id) / "source.mp4"

    def source_span(self, job_id: str, index: int) -> Path:
        return self.work_dir(job_id) / "sources" / f"{index:05d}.mp4"

    def source_poster(self, job_id: str, index: int) -> Path:
        return self.work_dir(job_id) / "sources" / f"{index:05d}.png"

    def motion(self, job_id: str, index: int) -> Path:
        return self.work_dir(job_id) / "parts" / f"{index:05d}.motion.npy"

    def piece_record(self, job_id: str, index: int) -> Path:
        """What a finished piece is (its span, frames, size), kept beside its part: the piece is
        recognised as finished from the files alone when the database could not record it."""
        return self.work_dir(job_id) / "parts" / f"{index:05d}.done.json"

    def result(self, job_id: str) -> Path:
        return self.data_dir / "results" / f"{job_id}.mp4"

    def quality_reference(self, job_id: str) -> Path:
        """The portrait, kept beside the result from completion until the quality report is stored
        (the work folder goes before the status says COMPLETED; the report may be computed later,
        by another replica or after a restart)."""
        return self.data_dir / "results" / f"{job_id}.reference"

    def create_work_dir(self, job_id: str) -> Path:
        work = self.work_dir(job_id)
        for sub in ("chunks", "parts", "sources"):
            (work / sub).mkdir(parents=True, exist_ok=True)
        return work

    def remove_work_dir(self, job_id: str) -> None:
        shutil.rmtree(self.work_dir(job_id), ignore_errors=True)
        if self.shared is not None:
            self.shared.delete_prefix(self._key(self.work_dir(job_id)) + "/")

    def remove_local_work_dir(self, job_id: str) -> None:
        """This replica's copies only (it stopped driving the job; another one goes on with it)."""
        shutil.rmtree(self.work_dir(job_id), ignore_errors=True)

    def remove_result(self, job_id: str) -> None:
        self.result(job_id).unlink(missing_ok=True)
        if self.shared is not None:
            self.shared.delete(self._key(self.result(job_id)))
        self.remove_quality_reference(job_id)

    def remove_quality_reference(self, job_id: str) -> None:
        self.quality_reference(job_id).unlink(missing_ok=True)
        if self.shared is not None:
            self.shared.delete(self._key(self.quality_reference(job_id)))

    def remove_local_result(self, job_id: str) -> None:
        self.result(job_id).unlink(missing_ok=True)

    # -- sharing with the other replicas -------------------------------------------------

    def _key(self, path: Path) -> str:
        return path.relative_to(self.data_dir).as_posix()

    def publish(self, path: Path) -> None:
        """Make a finished local file readable by every replica (nothing to do without a store)."""
        if self.shared is not None:
            self.shared.put(self._key(path), path)

    def fetch(self, path: Path) -> bool:
        """Have the file locally, from the shared store if need be; False when it exists nowhere."""
        if path.exists():
            return True
        if self.shared is None:
            return False
        found = self.shared.get(self._key(path), path)
        if found:
            log.info("fetched %s from the shared store", self._key(path))
        return found

    def refresh(self, path: Path) -> bool:
        """Read again a file another replica may be changing (a live stream's manifest): the
        shared store's current copy, or none when it is gone there; without a store, the file."""
        if self.shared is None:
            return path.exists()
        if self.shared.get(self._key(path), path):
            return True
        path.unlink(missing_ok=True)
        return False

    def remove_tree(self, folder: Path) -> None:
        """A folder under DATA_DIR, here and in the shared store."""
        shutil.rmtree(folder, ignore_errors=True)
        if self.shared is not None:
            self.shared.delete_prefix(self._key(folder) + "/")

    def has_result(self, job_id: str) -> bool:
        path = self.result(job_id)
        if path.exists():
            return True
        return self.shared is not None and self.shared.size(self._key(path)) is not None

    def video(self, job_id: str) -> Path | StoredVideo | None:
        """The finished video: a local file, or one in the shared store; None when it is nowhere."""
        path = self.result(job_id)
        if path.exists():
            return path
        if self.shared is None:
            return None
        key = self._key(path)
        size = self.shared.size(key)
        return None if size is None else StoredVideo(self.shared, key, size)


def tmp_path(final: Path) -> Path:
    return final.with_name(final.name + ".tmp")


class S3Store:
    """Results on S3 (or anything speaking its API, via S3_ENDPOINT_URL)."""

    def __init__(self, client: Any, bucket: str, prefix: str = "videos/", url_expiry_sec: int = 3600) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.url_expiry_sec = url_expiry_sec
        self.client = client

    def key_for(self, job_id: str) -> str:
        return f"{self.prefix}{job_id}.mp4"

    def upload(self, path: Path, key: str) -> None:
        self.client.upload_file(str(path), self.bucket, key, ExtraArgs={"ContentType": "video/mp4"})

    def presigned_url(self, key: str) -> str:
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=self.url_expiry_sec
        )

    def iter_object(self, key: str, piece_size: int) -> Iterator[bytes]:
        body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        try:
            yield from body.iter_chunks(piece_size)
        finally:
            body.close()

    def delete(self, key: str) -> None:
        # S3 deletes are idempotent: a missing key is not an error.
        self.client.delete_object(Bucket=self.bucket, Key=key)
