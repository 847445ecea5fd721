"""Job files shared by every gateway replica, in an S3-compatible bucket (BLOB_STORE=s3).

Keys are the files' paths relative to DATA_DIR under a prefix (`work/` by default), so a replica
finds another one's upload, parts and result by the same relative name it uses on its own disk
(see files.py). Errors of the store are raised as BlobStoreError, which the job service reports
as the store being unavailable rather than as an internal error.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO


def s3_client(region: str = "", endpoint_url: str = "") -> Any:
    import boto3  # only deployments that use S3 pay for the import

    return boto3.client("s3", region_name=region or None, endpoint_url=endpoint_url or None)


class BlobStoreError(RuntimeError):
    """The shared store failed (unreachable, denied); the message says how."""


@contextmanager
def _s3_errors(action: str, key: str) -> Iterator[None]:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (BotoCoreError, ClientError) as exc:
        raise BlobStoreError(f"S3 {action} {key}: {exc}") from exc


def _missing(exc: Exception) -> bool:
    from botocore.exceptions import ClientError

    codes = ("404", "NoSuchKey", "NotFound")
    return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in codes


class S3Blobs:
    """Job files shared by every replica, in a bucket (any S3-compatible store) under `prefix`."""

    def __init__(self, client: Any, bucket: str, prefix: str = "work/") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix

    def put(self, key: str, path: Path) -> None:
        with _s3_errors("upload", key):
            self.client.upload_file(str(path), self.bucket, self.prefix + key)

    def get(self, key: str, path: Path) -> bool:
        """Download to `path` (whole or not at all); False when there is no such blob."""
        path.parent.mkdir(parents=True, exist_ok=True)
        # A name of its own: two threads may fetch the same file at once.
        partial = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        with _s3_errors("download", key):
            try:
                self.client.download_file(self.bucket, self.prefix + key, str(partial))
            except Exception as exc:
                partial.unlink(missing_ok=True)
                if _missing(exc):
                    return False
                raise
        partial.replace(path)
        return True

    def size(self, key: str) -> int | None:
        with _s3_errors("head", key):
            try:
                return int(self.client.head_object(Bucket=self.bucket, Key=self.prefix + key)["ContentLength"])
            except Exception as exc:
                if _missing(exc):
                    return None
                raise

    def iter_range(self, key: str, start: int, end: int, piece_size: int) -> Iterator[bytes]:
        """Bytes `start`..`end` (inclusive) of the blob, in pieces."""
        with _s3_errors("read", key):
            body = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key,
                                          Range=f"bytes={start}-{end}")["Body"]
        try:
            yield from body.iter_chunks(piece_size)
        finally:
            body.close()

    def delete(self, key: str) -> None:
        with _s3_errors("delete", key):
            self.client.delete_object(Bucket=self.bucket, Key=self.prefix + key)

    def delete_prefix(self, key_prefix: str) -> None:
        with _s3_errors("delete", key_prefix + "*"):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + key_prefix):
                keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if keys:
                    self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})


@dataclass(frozen=True)
class StoredVideo:
    """A finished video in the shared blob store, served from there by any replica."""

    blobs: S3Blobs
    key: str
    size: int

    def iter_range(self, start: int, end: int, piece_size: int) -> Iterator[bytes]:
        return self.blobs.iter_range(self.key, start, end, piece_size)

    def open_copy(self) -> BinaryIO:
        """A temporary local copy, open for reading (gone once closed)."""
        handle = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the caller, who closes it
        for piece in self.iter_range(0, self.size - 1, 1 << 20) if self.size else ():
            handle.write(piece)
        handle.seek(0)
        return handle

    def read(self) -> bytes:
        return b"".join(self.iter_range(0, self.size - 1, 1 << 20)) if self.size else b""
