"""A job's settings as validated and stored: the one shape the APIs, the job layer and the store share.

It lives below both the job layer (jobs/validation.py checks it) and storage (store.py keeps it as
JSON), so neither has to import the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class JobOptions:
    """A job's settings after validation; what the store keeps and the job runner uses."""

    width: int
    height: int
    # The generator pool the job runs on (the API's `provider` field names it, after aliases).
    pool: str
    prompt: str = ""
    push_to_s3: bool = False
    dry_run: bool = False
    force_offload: bool = True
    seed: int = 0
    sampling: dict[str, Any] = field(default_factory=dict)
    chunk_target_sec: float = 0.0
    # Where the job's events are POSTed (see jobs/webhooks.py); "" = no webhook.
    webhook_url: str = ""
    # Dubbing, when the audio outlasts the video: "hold" ("" too) or "pingpong".
    video_extend: str = ""
    # 0: one lane per usable generator; n: n continuous streams (1 = the whole recording as one).
    lanes: int = 0
    # Two people talking (see jobs/speakers.py): the speaker count (0 = one), person 1's audio is
    # `audio`, person 2's `audio_2` (or both in one stereo recording, `stereo_speakers`).
    speakers: int = 0
    audio_type: str = ""  # "para" ("" too) or "add"
    stereo_speakers: bool = False
    # Each speaker's face box [x0, y0, x1, y1] in pixels of the image, person 1 first: as the
    # request gave them, then as used (detected faces when none were given).
    boxes: list[list[int]] = field(default_factory=list)
    boxes_from: str = ""  # "request", "faces" (detected) or "split" (the model's default halves)
    image_size: list[int] = field(default_factory=list)  # [width, height] the boxes refer to

    @classmethod
    def from_stored(cls, data: dict[str, Any]) -> JobOptions:
        """Options as the store keeps them (JSON of the fields); rows written before the pool had
        its own name hold it under `provider`."""
        data = dict(data)
        if "provider" in data:
            data.setdefault("pool", data.pop("provider"))
        return cls(**data)
