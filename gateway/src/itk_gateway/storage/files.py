"""Where a job's files live: a work folder per job on local disk, results locally or on S3.

Layout under DATA_DIR:
    jobs/<id>/image, jobs/<id>/audio     the upload, kept until the job ends (resume re-splits it)
    jobs/<id>/source.mp4                 a video reference normalised to 25 fps (dubbing)
    jobs/<id>/sources/<i>.mp4, <i>.png   chunk i's span of it and its first frame
    jobs/<id>/chunks/<i>.wav             chunk audio from the splitter
    jobs/<id>/parts/<i>.mp4              finished generator output, kept until the job ends
    jobs/<id>/parts/<i>.motion.npy       the part's last motion frames, which the next piece of its lane continues
    results/<id>.mp4                     the stitched video until it is deleted (or pushed to S3)
Files are written as `*.tmp` and renamed when complete, so a crash never leaves a half file
under a final name.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class JobFiles:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        (data_dir / "jobs").mkdir(parents=True, exist_ok=True)
        (data_dir / "results").mkdir(parents=True, exist_ok=True)

    def work_dir(self, job_id: str) -> Path:
        return self.data_dir / "jobs" / job_id

    def image(self, job_id: str) -> Path:
        return self.work_dir(job_id) / "image"

    def audio(self, job_id: str) -> Path:
        return self.work_dir(job_id) / "audio"

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

    def result(self, job_id: str) -> Path:
        return self.data_dir / "results" / f"{job_id}.mp4"

    def create_work_dir(self, job_id: str) -> Path:
        work = self.work_dir(job_id)
        for sub in ("chunks", "parts", "sources"):
            (work / sub).mkdir(parents=True, exist_ok=True)
        return work

    def remove_work_dir(self, job_id: str) -> None:
        shutil.rmtree(self.work_dir(job_id), ignore_errors=True)

    def remove_result(self, job_id: str) -> None:
        self.result(job_id).unlink(missing_ok=True)


def tmp_path(final: Path) -> Path:
    return final.with_name(final.name + ".tmp")


class S3Store:
    """Results on S3 (or anything speaking its API, via S3_ENDPOINT_URL)."""

    def __init__(self, bucket: str, region: str = "", endpoint_url: str = "", prefix: str = "videos/",
                 url_expiry_sec: int = 3600) -> None:
        import boto3  # only deployments that push to S3 pay for the import

        self.bucket = bucket
        self.prefix = prefix
        self.url_expiry_sec = url_expiry_sec
        self.client: Any = boto3.client(
            "s3", region_name=region or None, endpoint_url=endpoint_url or None
        )

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
