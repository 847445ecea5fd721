"""What the sync and async clients share: settings, the job form, headers."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8080"
COPY_CHUNK = 1024 * 1024


def default_url() -> str:
    return os.environ.get("ITK_URL", DEFAULT_URL)


def headers(api_key: str | None) -> dict[str, str]:
    key = os.environ.get("ITK_API_KEY", "") if api_key is None else api_key
    return {"Authorization": f"Bearer {key}"} if key else {}


@dataclass
class JobRequest:
    """The options of a new job; None leaves a setting to the server."""

    width: int = 512
    height: int = 512
    prompt: str | None = None
    provider: str | None = None
    preset: str | None = None
    seed: int | None = None
    lanes: int | None = None  # 0 or None: one per free generator; 1: one continuous stream
    webhook_url: str | None = None
    push_to_s3: bool | None = None
    dry_run: bool | None = None
    extra: dict[str, Any] | None = None

    def form(self) -> dict[str, str]:
        fields: dict[str, Any] = {"width": self.width, "height": self.height, "prompt": self.prompt,
                                  "provider": self.provider, "seed": self.seed, "lanes": self.lanes,
                                  "webhook_url": self.webhook_url,
                                  "push_to_s3": self.push_to_s3, "dry_run": self.dry_run, **(self.extra or {})}
        if self.preset:
            fields["sampling"] = json.dumps({"preset": self.preset})
        return {name: _text(value) for name, value in fields.items() if value is not None}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def idempotency(key: str | None) -> dict[str, str]:
    return {"Idempotency-Key": key} if key else {}


def open_media(image: str | Path, audio: str | Path, audio_2: str | Path | None = None
               ) -> dict[str, tuple[str, Any, str]]:
    """Files for the multipart upload (httpx streams them from disk); `audio_2`: person 2's
    recording of a two-person job."""
    paths = {"image": Path(image), "audio": Path(audio)}
    if audio_2 is not None:
        paths["audio_2"] = Path(audio_2)
    return {name: (path.name, path.open("rb"), "application/octet-stream") for name, path in paths.items()}


def close_media(files: dict[str, tuple[str, Any, str]]) -> None:
    for _, handle, _ in files.values():
        handle.close()


def job_request(width: int, height: int, options: dict[str, Any]) -> JobRequest:
    """The JobRequest of submit()'s keyword arguments (unknown ones go as extra form fields)."""
    known = {name: options.pop(name) for name in list(options) if name in JobRequest.__dataclass_fields__}
    return JobRequest(width=width, height=height, **known, extra=options or None)
