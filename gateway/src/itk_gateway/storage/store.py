"""Jobs and their chunks in SQLite, the gateway's only state besides files.

One connection in WAL mode, serialised by a lock: writes are small and few (a row per progress
event at most), and readers never block writers in WAL. Every change to a job bumps its version
and wakes watchers, which is what WatchJob streams on.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from itk_gateway.jobs.validation import JobOptions

IN_QUEUE, RUNNING, COMPLETED, FAILED, CANCELLED, TIMED_OUT = (
    "IN_QUEUE", "RUNNING", "COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT",
)
STATUSES = (IN_QUEUE, RUNNING, COMPLETED, FAILED, CANCELLED, TIMED_OUT)
ACTIVE_STATUSES = (IN_QUEUE, RUNNING)
CHUNK_PENDING, CHUNK_RUNNING, CHUNK_DONE = "pending", "running", "done"

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    status TEXT NOT NULL,
    progress INTEGER NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '',
    options TEXT NOT NULL,
    chunk_count INTEGER NOT NULL DEFAULT 0,
    frames_total INTEGER NOT NULL DEFAULT 0,
    duration_sec REAL NOT NULL DEFAULT 0,
    split_done INTEGER NOT NULL DEFAULT 0,
    has_video INTEGER NOT NULL DEFAULT 0,
    s3_key TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status);
CREATE TABLE IF NOT EXISTS idempotency_keys (
    owner TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    job_id TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    PRIMARY KEY (owner, key)
);
CREATE TABLE IF NOT EXISTS chunks (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    start_sample INTEGER NOT NULL,
    end_sample INTEGER NOT NULL,
    frame_count INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    frames_done INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    endpoint TEXT NOT NULL DEFAULT '',
    part_width INTEGER NOT NULL DEFAULT 0,
    part_height INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, idx)
);
"""

# Schema changes after the first version, applied in order to any database whose user_version is
# lower (PRAGMA user_version counts the steps applied). New columns only, with defaults, so a row
# written before a step reads as it did.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: lanes. A job keeps the lane count its plan was made with (a resumed job must re-plan the
    # same lanes to reuse its pieces) and the plan's lanes and seams as JSON; a chunk knows its
    # lane, its place in it, the audio context around it and how many motion frames it returned.
    (
        "ALTER TABLE jobs ADD COLUMN lane_count INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE jobs ADD COLUMN plan TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE chunks ADD COLUMN lane INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE chunks ADD COLUMN lane_first_frame INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE chunks ADD COLUMN context_before INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE chunks ADD COLUMN context_after INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE chunks ADD COLUMN motion_frames INTEGER NOT NULL DEFAULT 0",
    ),
)


@dataclass
class ChunkRecord:
    job_id: str
    idx: int
    start_sample: int
    end_sample: int
    frame_count: int
    status: str = CHUNK_PENDING
    frames_done: int = 0
    attempts: int = 0
    endpoint: str = ""
    part_width: int = 0
    part_height: int = 0
    lane: int = 0
    lane_first_frame: int = 0
    # Samples of neighbouring audio before and after the chunk's own in its WAV.
    context_before: int = 0
    context_after: int = 0
    # Motion frames the generator returned with the part (saved beside it; 0 = none).
    motion_frames: int = 0


@dataclass
class LaneInfo:
    index: int
    start_sec: float
    end_sec: float
    first_chunk: int
    chunk_count: int


@dataclass
class SeamInfo:
    chunk_index: int
    time_sec: float
    pause_start_sec: float
    pause_end_sec: float
    fade_frames: int


@dataclass
class JobPlan:
    """The lanes a job was planned as and the seams between them."""

    lanes: list[LaneInfo]
    seams: list[SeamInfo]

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> JobPlan:
        if not text:
            return cls([], [])
        raw = json.loads(text)
        return cls([LaneInfo(**lane) for lane in raw["lanes"]], [SeamInfo(**seam) for seam in raw["seams"]])


@dataclass
class JobRecord:
    id: str
    provider: str
    status: str
    progress: int
    error: str
    options: JobOptions
    chunk_count: int
    frames_total: int
    duration_sec: float
    split_done: bool
    has_video: bool
    s3_key: str
    created_at: float
    updated_at: float
    chunks_done: int = 0
    frames_done: int = 0
    owner: str = ""
    lane_count: int = 0
    plan: JobPlan = field(default_factory=lambda: JobPlan([], []))
    # Finished chunks per lane.
    lane_chunks_done: dict[int, int] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.status not in ACTIVE_STATUSES


class JobStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._versions: dict[str, int] = {}
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            self._migrate()

    def _migrate(self) -> None:
        """Columns added after the first release, for databases made before them: the owner column,
        then the numbered MIGRATIONS steps not yet applied (PRAGMA user_version counts them)."""
        columns = {row["name"] for row in self._db.execute("PRAGMA table_info(jobs)")}
        if "owner" not in columns:
            # Who submitted the job ("" without API keys): lists and webhooks are per owner.
            self._db.execute("ALTER TABLE jobs ADD COLUMN owner TEXT NOT NULL DEFAULT ''")
        self._db.execute("CREATE INDEX IF NOT EXISTS jobs_owner ON jobs(owner, created_at)")
        # Counting a key's jobs in flight (MAX_ACTIVE_JOBS_PER_KEY) on every submission.
        self._db.execute("CREATE INDEX IF NOT EXISTS jobs_owner_status ON jobs(owner, status)")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        for number, statements in enumerate(MIGRATIONS[version:], start=version + 1):
            self._db.execute("BEGIN")
            try:
                for statement in statements:
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {number}")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- change notification -------------------------------------------------------------

    def _touch(self, job_id: str) -> None:
        self._versions[job_id] = self._versions.get(job_id, 0) + 1
        self._changed.notify_all()

    def notify(self, job_id: str) -> None:
        """Wake the job's watchers for a change kept outside the database (a new live segment)."""
        with self._lock:
            self._touch(job_id)

    def version(self, job_id: str) -> int:
        with self._lock:
            return self._versions.get(job_id, 0)

    def wait_for_change(self, job_id: str, seen: int, timeout: float) -> int:
        """Block until the job's version differs from `seen` (or timeout); return the version."""
        with self._changed:
            self._changed.wait_for(lambda: self._versions.get(job_id, 0) != seen, timeout=timeout)
            return self._versions.get(job_id, 0)

    # -- jobs ----------------------------------------------------------------------------

    def create_job(self, job_id: str, options: JobOptions, status: str = IN_QUEUE, owner: str = "") -> None:
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT INTO jobs (id, provider, status, options, created_at, updated_at, owner)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (job_id, options.provider, status, json.dumps(asdict(options)), now, now, owner),
            )
            self._touch(job_id)

    def delete_job(self, job_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            self._touch(job_id)

    def get_job(self, job_id: str) -> JobRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return None
            totals = self._db.execute(
                "SELECT COALESCE(SUM(status = 'done'), 0) AS done, COALESCE(SUM(frames_done), 0) AS frames"
                " FROM chunks WHERE job_id = ?",
                (job_id,),
            ).fetchone()
            lanes_done = self._db.execute(
                "SELECT lane, COUNT(*) AS n FROM chunks WHERE job_id = ? AND status = 'done' GROUP BY lane",
                (job_id,),
            ).fetchall()
        return JobRecord(
            id=row["id"], provider=row["provider"], status=row["status"], progress=row["progress"],
            error=row["error"], options=JobOptions(**json.loads(row["options"])),
            chunk_count=row["chunk_count"], frames_total=row["frames_total"],
            duration_sec=row["duration_sec"], split_done=bool(row["split_done"]),
            has_video=bool(row["has_video"]), s3_key=row["s3_key"], created_at=row["created_at"],
            updated_at=row["updated_at"], chunks_done=int(totals["done"]), frames_done=int(totals["frames"]),
            owner=row["owner"],
            lane_count=row["lane_count"], plan=JobPlan.from_json(row["plan"]),
            lane_chunks_done={int(lane["lane"]): int(lane["n"]) for lane in lanes_done},
        )

    def update_job(self, job_id: str, **fields: Any) -> None:
        if not fields:
            return
        fields["updated_at"] = time.time()
        columns = ", ".join(f"{name} = ?" for name in fields)
        with self._lock:
            self._db.execute(f"UPDATE jobs SET {columns} WHERE id = ?", (*fields.values(), job_id))
            self._touch(job_id)

    def promote(self, job_id: str, from_status: str, to_status: str) -> None:
        with self._lock:
            cursor = self._db.execute(
                "UPDATE jobs SET status = ?, updated_at = ? WHERE id = ? AND status = ?",
                (to_status, time.time(), job_id, from_status),
            )
            if cursor.rowcount:
                self._touch(job_id)

    def raise_progress(self, job_id: str, progress: int) -> None:
        """Progress only ever goes up, whatever order updates arrive in."""
        with self._lock:
            cursor = self._db.execute(
                "UPDATE jobs SET progress = ?, updated_at = ? WHERE id = ? AND progress < ?",
                (progress, time.time(), job_id, progress),
            )
            if cursor.rowcount:
                self._touch(job_id)

    def finish_job(self, job_id: str, status: str, error: str = "", **fields: Any) -> bool:
        """Move an active job to a final status; False if it had already ended (first end wins)."""
        fields.update(status=status, error=error, updated_at=time.time())
        columns = ", ".join(f"{name} = ?" for name in fields)
        with self._lock:
            cursor = self._db.execute(
                f"UPDATE jobs SET {columns} WHERE id = ? AND status IN (?, ?)",
                (*fields.values(), job_id, *ACTIVE_STATUSES),
            )
            self._touch(job_id)
            return cursor.rowcount > 0

    def active_job_ids(self) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id FROM jobs WHERE status IN (?, ?) ORDER BY created_at", ACTIVE_STATUSES
            ).fetchall()
        return [row["id"] for row in rows]

    def recent_job_ids(self, owner: str, limit: int) -> list[str]:
        """The owner's jobs, newest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id FROM jobs WHERE owner = ? ORDER BY created_at DESC, id DESC LIMIT ?", (owner, limit)
            ).fetchall()
        return [row["id"] for row in rows]

    # -- idempotency keys ----------------------------------------------------------------

    def claim_idempotency_key(self, owner: str, key: str, fingerprint: str,
                              max_age_sec: float) -> tuple[str, str] | None:
        """Reserve `key` for a new request, or return what holds it: (fingerprint, job id; "" while
        the first request is still being created). Keys older than `max_age_sec` are forgotten."""
        now = time.time()
        with self._lock:
            self._db.execute("DELETE FROM idempotency_keys WHERE created_at < ?", (now - max_age_sec,))
            row = self._db.execute(
                "SELECT fingerprint, job_id FROM idempotency_keys WHERE owner = ? AND key = ?", (owner, key)
            ).fetchone()
            if row is not None:
                return row["fingerprint"], row["job_id"]
            self._db.execute(
                "INSERT INTO idempotency_keys (owner, key, fingerprint, created_at) VALUES (?, ?, ?, ?)",
                (owner, key, fingerprint, now),
            )
            return None

    def settle_idempotency_key(self, owner: str, key: str, job_id: str | None) -> None:
        """Record the job a reserved key created, or release the key (None) when creation failed."""
        with self._lock:
            if job_id is None:
                self._db.execute("DELETE FROM idempotency_keys WHERE owner = ? AND key = ?", (owner, key))
            else:
                self._db.execute("UPDATE idempotency_keys SET job_id = ? WHERE owner = ? AND key = ?",
                                 (job_id, owner, key))

    def count_active(self, owner: str) -> int:
        """Jobs of this owner that are queued or running."""
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*) FROM jobs WHERE owner = ? AND status IN (?, ?)", (owner, *ACTIVE_STATUSES)
            ).fetchone()
        return int(row[0])

    def finished_before(self, cutoff: float) -> list[tuple[str, str]]:
        """(id, s3_key) of jobs that ended before `cutoff` (a time.time() value)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, s3_key FROM jobs WHERE status NOT IN (?, ?) AND updated_at < ?",
                (*ACTIVE_STATUSES, cutoff),
            ).fetchall()
        return [(row["id"], row["s3_key"]) for row in rows]

    def known_ids(self) -> set[str]:
        with self._lock:
            return {row["id"] for row in self._db.execute("SELECT id FROM jobs")}

    def count_by_status(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        with self._lock:
            for row in self._db.execute("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status"):
                counts[row["status"]] = row["n"]
        return counts

    # -- chunks --------------------------------------------------------------------------

    def record_chunk(self, chunk: ChunkRecord) -> ChunkRecord:
        """Remember a chunk of the plan. A chunk already known with the same span keeps its state
        (that is how a resumed job skips finished chunks); a different span starts over."""
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM chunks WHERE job_id = ? AND idx = ?", (chunk.job_id, chunk.idx)
            ).fetchone()
            placement = ("start_sample", "end_sample", "frame_count", "lane", "lane_first_frame",
                         "context_before", "context_after")
            if row is not None and all(row[name] == getattr(chunk, name) for name in placement):
                return ChunkRecord(**dict(row))
            self._db.execute(
                "INSERT OR REPLACE INTO chunks (job_id, idx, start_sample, end_sample, frame_count, lane,"
                " lane_first_frame, context_before, context_after) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (chunk.job_id, chunk.idx, *(getattr(chunk, name) for name in placement)),
            )
            self._touch(chunk.job_id)
            return ChunkRecord(chunk.job_id, chunk.idx, *(getattr(chunk, name) for name in placement[:3]),
                               lane=chunk.lane, lane_first_frame=chunk.lane_first_frame,
                               context_before=chunk.context_before, context_after=chunk.context_after)

    def chunks(self, job_id: str) -> list[ChunkRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM chunks WHERE job_id = ? ORDER BY idx", (job_id,)
            ).fetchall()
        return [ChunkRecord(**dict(row)) for row in rows]

    def update_chunk(self, job_id: str, idx: int, **fields: Any) -> None:
        columns = ", ".join(f"{name} = ?" for name in fields)
        with self._lock:
            self._db.execute(
                f"UPDATE chunks SET {columns} WHERE job_id = ? AND idx = ?", (*fields.values(), job_id, idx)
            )
            self._touch(job_id)

    def drop_chunks_from(self, job_id: str, first_idx: int) -> None:
        """Forget chunks a new plan no longer has."""
        with self._lock:
            self._db.execute("DELETE FROM chunks WHERE job_id = ? AND idx >= ?", (job_id, first_idx))
            self._touch(job_id)
