"""Chunk inputs put where a provider that fetches by URL can read them: S3, behind presigned URLs.

Each chunk's image and WAV are uploaded under PROVIDER_INPUT_PREFIX with a unique key, served
through GET URLs presigned for PROVIDER_INPUT_URL_EXPIRY_SEC (short: the provider reads them when
the job is submitted), and deleted when the chunk ends, whatever the outcome. Uses the gateway's
S3 settings (S3_BUCKET, S3_REGION, S3_ENDPOINT_URL, AWS credentials as boto3 reads them).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from itk_common.config import ConfigError, env_int, env_str

log = logging.getLogger(__name__)

SIGNATURES = [
    (b"\x89PNG", "image/png", "png"),
    (b"\xff\xd8\xff", "image/jpeg", "jpg"),
    (b"GIF8", "image/gif", "gif"),
    (b"BM", "image/bmp", "bmp"),
]


@dataclass(frozen=True)
class S3Staging:
    bucket: str
    region: str = ""
    endpoint_url: str = ""
    prefix: str = "provider-inputs/"
    url_expiry_sec: int = 900

    @classmethod
    def from_env(cls, backend: str) -> S3Staging:
        bucket = env_str("S3_BUCKET", "")
        if not bucket:
            raise ConfigError(f"S3_BUCKET must be set for GENERATOR_BACKEND={backend}: the provider fetches "
                              "each chunk's image and audio from presigned S3 URLs")
        return cls(bucket=bucket, region=env_str("S3_REGION", ""), endpoint_url=env_str("S3_ENDPOINT_URL", ""),
                   prefix=env_str("PROVIDER_INPUT_PREFIX", "provider-inputs/"),
                   url_expiry_sec=env_int("PROVIDER_INPUT_URL_EXPIRY_SEC", 900, minimum=1))

    def client(self):  # boto3's client type is generated at run time
        import boto3  # imported here: only backends that stage inputs need it

        return boto3.client("s3", region_name=self.region or None, endpoint_url=self.endpoint_url or None)


class StagedInputs:
    """One chunk's uploaded inputs; `urls()` presigns them, `delete()` removes them."""

    def __init__(self, staging: S3Staging, client, job_id: str, chunk_index: int) -> None:
        self.staging, self.client = staging, client
        self.folder = f"{staging.prefix}{job_id}/{chunk_index}-{uuid.uuid4().hex[:12]}/"
        self.keys: list[str] = []

    def put(self, name: str, data: bytes, content_type: str) -> str:
        key = self.folder + name
        self.client.put_object(Bucket=self.staging.bucket, Key=key, Body=data, ContentType=content_type)
        self.keys.append(key)
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.staging.bucket, "Key": key}, ExpiresIn=self.staging.url_expiry_sec)

    def put_image(self, data: bytes) -> str:
        content_type, extension = image_type(data)
        return self.put(f"image.{extension}", data, content_type)

    def put_wav(self, data: bytes) -> str:
        return self.put("audio.wav", data, "audio/wav")

    def delete(self) -> None:
        for key in self.keys:
            try:
                self.client.delete_object(Bucket=self.staging.bucket, Key=key)
            except Exception as exc:  # the chunk's outcome stands; a lifecycle rule can sweep leftovers
                log.warning("could not delete staged input s3://%s/%s: %s", self.staging.bucket, key, exc)


def image_type(data: bytes) -> tuple[str, str]:
    """Content type and file extension of an image file, from its first bytes."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp", "webp"
    for magic, content_type, extension in SIGNATURES:
        if data.startswith(magic):
            return content_type, extension
    return "application/octet-stream", "bin"
