"""What the gateway answers, as typed objects (the JSON is kept in `raw`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
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
class Lane:
    """One continuous stream of the job: its pieces continue each other's motion."""

    index: int = 0
    start_sec: float = 0.0
    end_sec: float = 0.0
    chunk_count: int = 0
    chunks_done: int = 0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Lane:
        return _from_json(cls, data)


@dataclass(frozen=True)
class Seam:
    """Where one lane ends and the next starts (fade_frames 0: a hard cut)."""

    time_sec: float = 0.0
    chunk_index: int = 0
    pause_start_sec: float = 0.0
    pause_end_sec: float = 0.0
    fade_frames: int = 0
    # No gap between words near the seam: it lies in voiced speech, as a hard cut.
    in_voiced_speech: bool = False

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Seam:
        return _from_json(cls, data)


@dataclass(frozen=True)
class Speaker:
    """One speaker of a two-person job and the face box used for them ([x0, y0, x1, y1] pixels)."""

    person: int = 0
    box: tuple[int, ...] = ()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Speaker:
        return cls(int(data["person"]), tuple(int(value) for value in data["box"]))


@dataclass(frozen=True)
class Job:
    """A job as the gateway reports it. Its fields are the gateway's job view (a test of the gateway
    compares them); `provider` is the generator pool the job runs on."""

    id: str
    status: str
    provider: str = ""
    progress: int = 0
    error: str = ""
    video_url: str = ""
    chunk_count: int = 0
    chunks_done: int = 0
    frames_total: int = 0
    frames_done: int = 0
    duration_sec: float = 0.0
    seed: int = 0
    width: int = 0
    height: int = 0
    created_at: str = ""
    updated_at: str = ""
    video_available: bool = False
    lane_count: int = 0
    lanes: tuple[Lane, ...] = ()
    seams: tuple[Seam, ...] = ()
    # Two people talking: each speaker's box as used, where the boxes came from, para or add.
    speakers: tuple[Speaker, ...] = ()
    boxes_from: str = ""
    audio_type: str = ""
    # The quality report once the job completed: JSON of the QualityReport message (see docs/quality.md).
    quality: dict[str, Any] | None = None
    # Only on the event stream (GET /jobs/{id}/events): pieces, live segments ready, estimated seconds left.
    pieces: tuple[Piece, ...] = field(default=(), metadata={"events_only": True})
    segments_ready: int = field(default=0, metadata={"events_only": True})
    eta_sec: float | None = field(default=None, metadata={"events_only": True})
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False, metadata={"events_only": True})

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        return _from_json(cls, data, id=str(data["id"]), status=str(data["status"]), raw=data,
                          eta_sec=data.get("eta_sec"), quality=data.get("quality"))


# How each field type is read from JSON; tuples of Lane / Seam / Piece read each element.
_SCALARS: dict[Any, Any] = {"str": str, "int": int, "float": float, "bool": bool}
_ELEMENTS: dict[str, Any] = {"tuple[Lane, ...]": Lane, "tuple[Seam, ...]": Seam, "tuple[Piece, ...]": Piece,
                             "tuple[Speaker, ...]": Speaker}


def _from_json(cls: Any, data: dict[str, Any], **given: Any) -> Any:
    """An instance of dataclass `cls` from the JSON object: each field by its annotated type, absent
    ones at their defaults (a newer gateway's unknown fields are ignored); `given` fields as passed."""
    values: dict[str, Any] = dict(given)
    for item in fields(cls):
        if item.name in values or item.name not in data:
            continue
        kind = str(item.type)
        if kind in _ELEMENTS:
            values[item.name] = tuple(_ELEMENTS[kind].from_json(element) for element in data[item.name] or ())
        elif kind in _SCALARS:
            values[item.name] = _SCALARS[kind](data[item.name])
    return cls(**values)


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
