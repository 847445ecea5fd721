"""Jobs, their chunks and who drives them, in the job database (SQLite or PostgreSQL).

The SQL is written once for both backends (see database.py). Every change made through this
store wakes local watchers at once; changes made by other gateway replicas are seen by polling
(`watch_poll_sec`), which is what WatchJob streams on when the database is shared.

Leases: each active job is driven by one replica, named in `lease_owner` until `lease_until`
(the database's clock). The driver renews its leases; a replica that dies stops renewing, and
after the lease runs out another replica claims the job and resumes it. Writes that only the
driver may make (its job's end) are fenced by the driver's id, so a replica that lost its lease
cannot overwrite the new driver's work.

SQL that runs on both backends: `?` placeholders; `CASE WHEN ... THEN 1 ELSE 0 END` rather than
summing booleans; `INSERT ... ON CONFLICT (...) DO UPDATE SET col = excluded.col` rather than
`INSERT OR REPLACE`; times from Python (`time.time()`) or the backend's `now_sql`; new columns
and tables only through a new migration in migrations.py.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from itk_common.quality.report import quality_text, report_state
from itk_gateway.options import JobOptions
from itk_gateway.storage.database import Database, Transaction, iter_batches
from itk_gateway.storage.migrations import migrate

IN_QUEUE, RUNNING, COMPLETED, FAILED, CANCELLED, TIMED_OUT = (
    "IN_QUEUE", "RUNNING", "COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT",
)
STATUSES = (IN_QUEUE, RUNNING, COMPLETED, FAILED, CANCELLED, TIMED_OUT)
ACTIVE_STATUSES = (IN_QUEUE, RUNNING)
CHUNK_PENDING, CHUNK_RUNNING, CHUNK_DONE = "pending", "running", "done"
# Constants, so they are spelled into the SQL rather than passed as parameters everywhere.
ACTIVE_SQL = "status IN ('IN_QUEUE', 'RUNNING')"
# A job row's quality report while it is being computed (quality_text's compact JSON).
# A quality report still to be computed (its JSON starts with the state). Inline SQL, composed into
# other statements, so a prefix match: a LIKE pattern would need a literal %, which psycopg takes
# for the start of a query parameter.
PENDING_QUALITY_PREFIX = '{"state":"pending"'
QUALITY_PENDING_SQL = f"substr(quality, 1, {len(PENDING_QUALITY_PREFIX)}) = '{PENDING_QUALITY_PREFIX}'"
# A completed job whose quality report is still to be computed: leased like an active job, so one
# replica computes it and another takes it up when that one stops or dies.
REPORT_PENDING_SQL = f"(status = 'COMPLETED' AND {QUALITY_PENDING_SQL})"
LEASED_SQL = f"({ACTIVE_SQL} OR {REPORT_PENDING_SQL})"
# Rows per `IN (...)` list, well under both backends' parameter limits.
IN_BATCH = 500


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
    # No gap anywhere the seam could go (plans stored before this was recorded read as False).
    in_voiced_speech: bool = False


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
    # The generator pool (kept in the `provider` column, the API's name for it).
    pool: str
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
    lease_owner: str = ""
    lane_count: int = 0
    plan: JobPlan = field(default_factory=lambda: JobPlan([], []))
    # Finished chunks per lane.
    lane_chunks_done: dict[int, int] = field(default_factory=dict)
    # The quality report as JSON ('' until the job completed).
    quality: str = ""

    @property
    def finished(self) -> bool:
        return self.status not in ACTIVE_STATUSES




@dataclass(frozen=True)
class LeaseState:
    """Who drives a job now, as a replica checks it for the jobs it runs."""

    status: str
    driver: str


class JobStore:
    def __init__(self, database: Database, watch_poll_sec: float = 0.5) -> None:
        self.db = database
        migrate(database)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._versions: dict[str, int] = {}
        # Alone on its database (SQLite) every change goes through this store, so a watcher can
        # sleep until woken; on a shared one, other replicas change jobs too: look every so often.
        self._poll_sec = None if database.single_replica else watch_poll_sec
        self._sql_now = database.now_sql

    @property
    def single_replica(self) -> bool:
        return self.db.single_replica

    @property
    def remote_poll_sec(self) -> float | None:
        """How often to re-read a job that other replicas may change; None alone on the database."""
        return self._poll_sec

    def close(self) -> None:
        self.db.close()

    def _run(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return self.db.run(lambda tx: tx.execute(sql, params))

    def _count(self, sql: str, params: Sequence[Any] = ()) -> int:
        def work(tx: Transaction) -> int:
            tx.execute(sql, params)
            return tx.rowcount

        return self.db.run(work)

    # -- change notification -------------------------------------------------------------

    def _touch(self, job_id: str) -> None:
        with self._changed:
            self._versions[job_id] = self._versions.get(job_id, 0) + 1
            self._changed.notify_all()

    def notify(self, job_id: str) -> None:
        """Wake the job's watchers for a change kept outside the database (a new live segment)."""
        self._touch(job_id)

    def version(self, job_id: str) -> int:
        with self._lock:
            return self._versions.get(job_id, 0)

    def wait_for_change(self, job_id: str, seen: int, timeout: float) -> int:
        """Block until the job's local version differs from `seen`, or `timeout` (on a shared
        database at most the poll interval, after which the caller reads the job again)."""
        if self._poll_sec is not None:
            timeout = min(timeout, self._poll_sec)
        with self._changed:
            self._changed.wait_for(lambda: self._versions.get(job_id, 0) != seen, timeout=timeout)
            return self._versions.get(job_id, 0)

    # -- jobs ----------------------------------------------------------------------------

    def create_job(self, job_id: str, options: JobOptions, status: str = IN_QUEUE, owner: str = "",
                   driver: str = "", lease_sec: float = 0.0, max_active: int = 0) -> bool:
        """Record a new job of `owner` (who submitted it), leased to `driver` (the replica that will
        drive it) for `lease_sec`. With `max_active`, only if the owner has fewer active jobs: the
        count and the insert are one step (simultaneous creates of one owner take turns, on every
        replica), so the limit holds however many arrive at once. False when refused."""
        now = time.time()

        def create(tx: Transaction) -> bool:
            if max_active > 0:
                if self.db.key_lock_sql:
                    tx.execute(self.db.key_lock_sql, (f"active-jobs:{owner}",))
                rows = tx.execute(f"SELECT COUNT(*) AS n FROM jobs WHERE owner = ? AND {ACTIVE_SQL}", (owner,))
                if int(rows[0]["n"]) >= max_active:
                    return False
            tx.execute(
                "INSERT INTO jobs (id, provider, status, options, created_at, updated_at, owner, lease_owner,"
                f" lease_until) VALUES (?, ?, ?, ?, ?, ?, ?, ?, {self._sql_now} + ?)",
                (job_id, options.pool, status, json.dumps(asdict(options)), now, now, owner, driver, lease_sec),
            )
            return True

        created = self.db.run(create)
        if created:
            self._touch(job_id)
        return created

    def delete_job(self, job_id: str) -> None:
        self._run("DELETE FROM jobs WHERE id = ?", (job_id,))
        self._touch(job_id)

    def get_job(self, job_id: str) -> JobRecord | None:
        def read(tx: Transaction) -> tuple[dict[str, Any] | None, dict[str, Any] | None, list[dict[str, Any]]]:
            rows = tx.execute("SELECT * FROM jobs WHERE id = ?", (job_id,))
            if not rows:
                return None, None, []
            totals = tx.execute(
                "SELECT COALESCE(SUM(CASE WHEN status = 'done' THEN 1 ELSE 0 END), 0) AS done,"
                " COALESCE(SUM(frames_done), 0) AS frames FROM chunks WHERE job_id = ?",
                (job_id,),
            )
            lanes_done = tx.execute(
                "SELECT lane, COUNT(*) AS n FROM chunks WHERE job_id = ? AND status = 'done' GROUP BY lane",
                (job_id,),
            )
            return rows[0], totals[0], lanes_done

        row, totals, lanes_done = self.db.run(read)
        if row is None or totals is None:
            return None
        return JobRecord(
            id=row["id"], pool=row["provider"], status=row["status"], progress=row["progress"],
            error=row["error"], options=JobOptions.from_stored(json.loads(row["options"])),
            chunk_count=row["chunk_count"], frames_total=row["frames_total"],
            duration_sec=row["duration_sec"], split_done=bool(row["split_done"]),
            has_video=bool(row["has_video"]), s3_key=row["s3_key"], created_at=row["created_at"],
            updated_at=row["updated_at"], chunks_done=int(totals["done"]), frames_done=int(totals["frames"]),
            owner=row["owner"], lease_owner=row["lease_owner"],
            lane_count=row["lane_count"], plan=JobPlan.from_json(row["plan"]),
            lane_chunks_done={int(lane["lane"]): int(lane["n"]) for lane in lanes_done},
            quality=row["quality"],
        )

    def update_job(self, job_id: str, **fields: Any) -> None:
        if not fields:
            return
        fields["updated_at"] = time.time()
        columns = ", ".join(f"{name} = ?" for name in fields)
        self._run(f"UPDATE jobs SET {columns} WHERE id = ?", (*fields.values(), job_id))
        self._touch(job_id)

    def update_options(self, job_id: str, options: JobOptions) -> None:
        """The options completed once the inputs are in (a size taken from the reference)."""
        self.update_job(job_id, options=json.dumps(asdict(options)))

    def promote(self, job_id: str, from_status: str, to_status: str) -> None:
        if self._count("UPDATE jobs SET status = ?, updated_at = ? WHERE id = ? AND status = ?",
                       (to_status, time.time(), job_id, from_status)):
            self._touch(job_id)

    def raise_progress(self, job_id: str, progress: int) -> None:
        """Progress only ever goes up, whatever order updates arrive in."""
        if self._count("UPDATE jobs SET progress = ?, updated_at = ? WHERE id = ? AND progress < ?",
                       (progress, time.time(), job_id, progress)):
            self._touch(job_id)

    def finish_job(self, job_id: str, status: str, error: str = "", driver: str | None = None,
                   **fields: Any) -> bool:
        """Move an active job to a final status; False if it had already ended (first end wins)
        or, when `driver` is given, if that replica no longer holds the job's lease."""
        fields.update(status=status, error=error, updated_at=time.time())
        columns = ", ".join(f"{name} = ?" for name in fields)
        params: list[Any] = [*fields.values(), job_id]
        fence = ""
        if driver is not None:
            fence, params = " AND lease_owner = ?", [*params, driver]
        changed = self._count(f"UPDATE jobs SET {columns} WHERE id = ? AND {ACTIVE_SQL}{fence}", params)
        self._touch(job_id)
        return changed > 0

    def fail_stale_quality(self, older_than_sec: float) -> int:
        """Quality reports still pending this long after their job completed (the gateway computing
        them went away) are marked failed; how many."""
        failed = quality_text(report_state("failed", "the gateway computing it stopped before it was done"))
        stale = self._run(f"SELECT id FROM jobs WHERE {REPORT_PENDING_SQL} AND updated_at < ?",
                          (time.time() - older_than_sec,))
        given_up = 0
        for row in stale:
            given_up += self._count(f"UPDATE jobs SET quality = ? WHERE id = ? AND {QUALITY_PENDING_SQL}",
                                    (failed, row["id"]))
            self._touch(row["id"])
        return given_up

    def active_job_ids(self) -> list[str]:
        rows = self._run(f"SELECT id FROM jobs WHERE {ACTIVE_SQL} ORDER BY created_at")
        return [row["id"] for row in rows]

    def recent_job_ids(self, owner: str, limit: int) -> list[str]:
        """The owner's jobs, newest first."""
        rows = self._run("SELECT id FROM jobs WHERE owner = ? ORDER BY created_at DESC, id DESC LIMIT ?",
                         (owner, limit))
        return [row["id"] for row in rows]

    # -- idempotency keys ----------------------------------------------------------------

    def claim_idempotency_key(self, owner: str, key: str, fingerprint: str,
                              max_age_sec: float) -> tuple[str, str] | None:
        """Reserve `key` for a new request, or return what holds it: (fingerprint, job id; "" while
        the first request is still being created). Keys older than `max_age_sec` are forgotten.
        Replicas reserving the same key at once: the insert of one wins, the others read it."""
        now = time.time()

        def claim(tx: Transaction) -> tuple[str, str] | None:
            tx.execute("DELETE FROM idempotency_keys WHERE created_at < ?", (now - max_age_sec,))
            tx.execute("INSERT INTO idempotency_keys (owner, key, fingerprint, created_at) VALUES (?, ?, ?, ?)"
                       " ON CONFLICT (owner, key) DO NOTHING", (owner, key, fingerprint, now))
            if tx.rowcount == 1:
                return None
            rows = tx.execute("SELECT fingerprint, job_id FROM idempotency_keys WHERE owner = ? AND key = ?",
                              (owner, key))
            return rows[0]["fingerprint"], rows[0]["job_id"]

        return self.db.run(claim)

    def settle_idempotency_key(self, owner: str, key: str, job_id: str | None) -> None:
        """Record the job a reserved key created, or release the key (None) when creation failed."""
        if job_id is None:
            self._run("DELETE FROM idempotency_keys WHERE owner = ? AND key = ?", (owner, key))
        else:
            self._run("UPDATE idempotency_keys SET job_id = ? WHERE owner = ? AND key = ?", (job_id, owner, key))

    def count_active(self, owner: str) -> int:
        """Jobs of this owner that are queued or running."""
        rows = self._run(f"SELECT COUNT(*) AS n FROM jobs WHERE owner = ? AND {ACTIVE_SQL}", (owner,))
        return int(rows[0]["n"])

    def finished_before(self, cutoff: float) -> list[tuple[str, str]]:
        """(id, s3_key) of jobs that ended before `cutoff` (a time.time() value)."""
        rows = self._run(f"SELECT id, s3_key FROM jobs WHERE NOT {ACTIVE_SQL} AND updated_at < ?", (cutoff,))
        return [(row["id"], row["s3_key"]) for row in rows]

    def known_ids(self) -> set[str]:
        return {row["id"] for row in self._run("SELECT id FROM jobs")}

    def count_by_status(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for row in self._run("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status"):
            counts[row["status"]] = int(row["n"])
        return counts

    # -- leases --------------------------------------------------------------------------

    def claim_expired(self, driver: str, lease_sec: float, limit: int) -> list[str]:
        """Take over up to `limit` active jobs whose lease ran out (or that nobody holds), oldest
        first; concurrent claimers on PostgreSQL skip each other's rows instead of waiting."""
        return self._claim(ACTIVE_SQL, "created_at", driver, lease_sec, limit)

    def claim_pending_reports(self, driver: str, lease_sec: float, limit: int) -> list[str]:
        """Take up to `limit` completed jobs whose quality report is pending and whose lease ran
        out or was given up (the replica computing it stopped or died), oldest first."""
        return self._claim(REPORT_PENDING_SQL, "updated_at", driver, lease_sec, limit)

    def _claim(self, where: str, order: str, driver: str, lease_sec: float, limit: int) -> list[str]:
        now = self._sql_now

        def claim(tx: Transaction) -> list[str]:
            rows = tx.execute(
                f"SELECT id FROM jobs WHERE {where} AND lease_until < {now}"
                f" ORDER BY {order} LIMIT ?{self.db.skip_locked}",
                (limit,),
            )
            ids = [row["id"] for row in rows]
            for job_id in ids:
                tx.execute(f"UPDATE jobs SET lease_owner = ?, lease_until = {now} + ? WHERE id = ?",
                           (driver, lease_sec, job_id))
            return ids

        return self.db.run(claim)

    def renew_leases(self, driver: str, job_ids: Sequence[str], lease_sec: float) -> int:
        """Extend `driver`'s leases on those of `job_ids` that are active (or whose quality report
        is pending) and still its own (the jobs it runs now: a job it holds but stopped running is
        left to expire and be claimed); how many were extended."""
        renewed = 0
        for batch in iter_batches(list(job_ids), IN_BATCH):
            marks = ", ".join("?" for _ in batch)
            renewed += self._count(
                f"UPDATE jobs SET lease_until = {self._sql_now} + ?"
                f" WHERE lease_owner = ? AND {LEASED_SQL} AND id IN ({marks})",
                (lease_sec, driver, *batch),
            )
        return renewed

    def lease_states(self, job_ids: Sequence[str]) -> dict[str, LeaseState]:
        """Status and lease holder of each job that still exists."""
        states: dict[str, LeaseState] = {}
        for batch in iter_batches(list(job_ids), IN_BATCH):
            marks = ", ".join("?" for _ in batch)
            for row in self._run(f"SELECT id, status, lease_owner FROM jobs WHERE id IN ({marks})", batch):
                states[row["id"]] = LeaseState(row["status"], row["lease_owner"])
        return states

    def has_live_lease(self, job_id: str) -> bool:
        """Whether some replica holds the job's lease now."""
        rows = self._run("SELECT 1 AS held FROM jobs WHERE id = ? AND lease_owner <> ''"
                         f" AND lease_until >= {self._sql_now}", (job_id,))
        return bool(rows)

    def claim_abandoned(self, driver: str, limit: int) -> list[tuple[str, str]]:
        """Ended jobs whose driver died before cleaning up (its lease ran out while still named):
        take them, clearing the lease, so their files are removed once; (id, status) of each."""
        now = self._sql_now

        def claim(tx: Transaction) -> list[tuple[str, str]]:
            rows = tx.execute(
                f"SELECT id, status FROM jobs WHERE NOT {LEASED_SQL} AND lease_owner <> '' AND lease_until < {now}"
                f" ORDER BY updated_at LIMIT ?{self.db.skip_locked}",
                (limit,),
            )
            for row in rows:
                tx.execute("UPDATE jobs SET lease_owner = '', lease_until = 0 WHERE id = ?", (row["id"],))
            return [(row["id"], row["status"]) for row in rows]

        return self.db.run(claim)

    def release_lease(self, job_id: str, driver: str) -> None:
        """Give the job up at once (a graceful stop), so another replica need not wait out the lease."""
        self._run("UPDATE jobs SET lease_owner = '', lease_until = 0 WHERE id = ? AND lease_owner = ?",
                  (job_id, driver))

    def release_all_leases(self) -> None:
        """Free every lease: on SQLite, where one gateway is alone, a lease at start is a dead process's."""
        self._run(f"UPDATE jobs SET lease_owner = '', lease_until = 0 WHERE {LEASED_SQL}")

    # -- chunks --------------------------------------------------------------------------

    def record_chunk(self, chunk: ChunkRecord) -> ChunkRecord:
        """Remember a chunk of the plan. A chunk already known with the same span keeps its state
        (that is how a resumed job skips finished chunks); a different span starts over."""
        placement = ("start_sample", "end_sample", "frame_count", "lane", "lane_first_frame",
                     "context_before", "context_after")

        def record(tx: Transaction) -> ChunkRecord | None:
            rows = tx.execute("SELECT * FROM chunks WHERE job_id = ? AND idx = ?", (chunk.job_id, chunk.idx))
            if rows and all(rows[0][name] == getattr(chunk, name) for name in placement):
                return ChunkRecord(**rows[0])
            tx.execute(
                "INSERT INTO chunks (job_id, idx, start_sample, end_sample, frame_count, lane, lane_first_frame,"
                " context_before, context_after) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (job_id, idx) DO UPDATE SET start_sample = excluded.start_sample,"
                " end_sample = excluded.end_sample, frame_count = excluded.frame_count, lane = excluded.lane,"
                " lane_first_frame = excluded.lane_first_frame, context_before = excluded.context_before,"
                " context_after = excluded.context_after, status = 'pending', frames_done = 0, attempts = 0,"
                " endpoint = '', part_width = 0, part_height = 0, motion_frames = 0",
                (chunk.job_id, chunk.idx, *(getattr(chunk, name) for name in placement)),
            )
            return None

        existing = self.db.run(record)
        if existing is not None:
            return existing
        self._touch(chunk.job_id)
        return ChunkRecord(chunk.job_id, chunk.idx, *(getattr(chunk, name) for name in placement[:3]),
                           lane=chunk.lane, lane_first_frame=chunk.lane_first_frame,
                           context_before=chunk.context_before, context_after=chunk.context_after)

    def chunks(self, job_id: str) -> list[ChunkRecord]:
        rows = self._run("SELECT * FROM chunks WHERE job_id = ? ORDER BY idx", (job_id,))
        return [ChunkRecord(**row) for row in rows]

    def update_chunk(self, job_id: str, idx: int, **fields: Any) -> None:
        columns = ", ".join(f"{name} = ?" for name in fields)
        self._run(f"UPDATE chunks SET {columns} WHERE job_id = ? AND idx = ?", (*fields.values(), job_id, idx))
        self._touch(job_id)

    def drop_chunks_from(self, job_id: str, first_idx: int) -> None:
        """Forget chunks a new plan no longer has."""
        self._run("DELETE FROM chunks WHERE job_id = ? AND idx >= ?", (job_id, first_idx))
        self._touch(job_id)
