"""What the gateway answers, as typed objects (the JSON is kept in `raw`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

ACTIVE_STATUSES = ("IN_QUEUE", "RUNNING")


@dataclass(frozen=True)
class Piece:
    """One piece (chunk) of a job's recording, rendered on one generator."""

    index: int
    status: str  # pending, running, done; stopped when the job failed or was cancelled first
    frames_done: int
    frames: int
    endpoint: str = ""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Piece:
        return cls(int(data["index"]), str(data["status"]), int(data.get("frames_done", 0)),
                   int(data.get("frames", 0)), str(data.get("endpoint", "")))


@dataclass(frozen=True)
class Job:
    id: str
    status: str
    progress: int = 0
    provider: str = ""
    error: str = ""
    frames_done: int = 0
    frames_total: int = 0
    chunk_count: int = 0
    chunks_done: int = 0
    duration_sec: float = 0.0
    seed: int = 0
    width: int = 0
    height: int = 0
    video_available: bool = False
    video_url: str = ""
    created_at: str = ""
    # From the event stream: pieces, live segments ready, estimated seconds left.
    pieces: tuple[Piece, ...] = ()
    segments_ready: int = 0
    eta_sec: float | None = None
    # The quality report (JSON of the QualityReport message) once the job completed.
    quality: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        return cls(
            id=str(data["id"]), status=str(data["status"]), progress=int(data.get("progress", 0)),
            provider=str(data.get("provider", "")), error=str(data.get("error", "")),
            frames_done=int(data.get("frames_done", 0)), frames_total=int(data.get("frames_total", 0)),
            chunk_count=int(data.get("chunk_count", 0)), chunks_done=int(data.get("chunks_done", 0)),
            duration_sec=float(data.get("duration_sec", 0.0)), seed=int(data.get("seed", 0)),
            width=int(data.get("width", 0)), height=int(data.get("height", 0)),
            video_available=bool(data.get("video_available", False)), video_url=str(data.get("video_url", "")),
            created_at=str(data.get("created_at", "")),
            pieces=tuple(Piece.from_json(p) for p in data.get("pieces", ())),
            segments_ready=int(data.get("segments_ready", 0)), eta_sec=data.get("eta_sec"),
            quality=data.get("quality"), raw=data,
        )


@dataclass(frozen=True)
class Event:
    """One server-sent event of `GET /jobs/{id}/events`: `status`, `progress` or `end`."""

    kind: str
    data: dict[str, Any]

    @property
    def job(self) -> Job | None:
        return Job.from_json(self.data) if self.kind in ("status", "progress") else None


class EventParser:
    """Turns the lines of a text/event-stream into Events (comments and retry hints skipped)."""

    def __init__(self) -> None:
        self.kind = ""
        self.data: list[str] = []

    def feed(self, line: str) -> Event | None:
        if not line:
            event = None
            if self.data:
                event = Event(self.kind or "message", json.loads("\n".join(self.data)))
            self.kind, self.data = "", []
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self.kind = value
        elif name == "data":
            self.data.append(value)
        return None
