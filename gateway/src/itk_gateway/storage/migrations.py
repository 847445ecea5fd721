"""The job database's schema as numbered migrations, applied at start, the same on both backends.

`schema_migrations` records each applied version. A migration is a list of statements in the SQL
both SQLite and PostgreSQL accept, with `{float}` standing for the one type they spell
differently. A new column or table is a new migration with the next number, never an edit of an
applied one. Every pending migration runs in one transaction; on PostgreSQL an advisory lock
makes replicas that start together apply them once, one after the other.

Version 1 uses IF NOT EXISTS, and a column a migration adds is skipped where it exists already,
so a SQLite database made before migrations existed (no version table, some of the columns) is
adopted as it is.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass

from itk_gateway.storage.database import Database, Transaction

log = logging.getLogger(__name__)
# Any fixed number: the key of the advisory lock that serialises migrations on PostgreSQL.
MIGRATION_LOCK_KEY = 7_240_113


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "jobs and chunks", (
        """CREATE TABLE IF NOT EXISTS jobs (
            id TEXT PRIMARY KEY,
            provider TEXT NOT NULL,
            status TEXT NOT NULL,
            progress INTEGER NOT NULL DEFAULT 0,
            error TEXT NOT NULL DEFAULT '',
            options TEXT NOT NULL,
            chunk_count INTEGER NOT NULL DEFAULT 0,
            frames_total INTEGER NOT NULL DEFAULT 0,
            duration_sec {float} NOT NULL DEFAULT 0,
            split_done INTEGER NOT NULL DEFAULT 0,
            has_video INTEGER NOT NULL DEFAULT 0,
            s3_key TEXT NOT NULL DEFAULT '',
            created_at {float} NOT NULL,
            updated_at {float} NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status)",
        """CREATE TABLE IF NOT EXISTS chunks (
            job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
            idx INTEGER NOT NULL,
            start_sample BIGINT NOT NULL,
            end_sample BIGINT NOT NULL,
            frame_count INTEGER NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending',
            frames_done INTEGER NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 0,
            endpoint TEXT NOT NULL DEFAULT '',
            part_width INTEGER NOT NULL DEFAULT 0,
            part_height INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (job_id, idx)
        )""",
    )),
    Migration(2, "job leases", (
        # The replica driving the job, and until when (database clock, Unix seconds). A job
        # whose lease has run out is taken over by another replica.
        "ALTER TABLE jobs ADD COLUMN lease_owner TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE jobs ADD COLUMN lease_until {float} NOT NULL DEFAULT 0",
        "CREATE INDEX IF NOT EXISTS jobs_lease ON jobs(status, lease_until)",
    )),
    Migration(3, "job owners and idempotency keys", (
        # Who submitted the job ('' without API keys): lists and webhooks are per owner.
        "ALTER TABLE jobs ADD COLUMN owner TEXT NOT NULL DEFAULT ''",
        "CREATE INDEX IF NOT EXISTS jobs_owner ON jobs(owner, created_at)",
        """CREATE TABLE IF NOT EXISTS idempotency_keys (
            owner TEXT NOT NULL,
            key TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            job_id TEXT NOT NULL DEFAULT '',
            created_at {float} NOT NULL,
            PRIMARY KEY (owner, key)
        )""",
    )),
    Migration(4, "jobs in flight per owner", (
        # Counting a key's jobs in flight (MAX_ACTIVE_JOBS_PER_KEY) on every submission.
        "CREATE INDEX IF NOT EXISTS jobs_owner_status ON jobs(owner, status)",
    )),
    Migration(5, "lanes", (
        # A job keeps the lane count its plan was made with (a resumed job must re-plan the same
        # lanes to reuse its pieces) and the plan's lanes and seams as JSON; a chunk knows its
        # lane, its place in it, the audio context around it and how many motion frames it returned.
        "ALTER TABLE jobs ADD COLUMN lane_count INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE jobs ADD COLUMN plan TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE chunks ADD COLUMN lane INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE chunks ADD COLUMN lane_first_frame INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE chunks ADD COLUMN context_before INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE chunks ADD COLUMN context_after INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE chunks ADD COLUMN motion_frames INTEGER NOT NULL DEFAULT 0",
    )),
    Migration(6, "quality report", (
        # The finished video's quality report as JSON (itk_common.quality.report); '' = none.
        "ALTER TABLE jobs ADD COLUMN quality TEXT NOT NULL DEFAULT ''",
    )),
)
ADD_COLUMN = re.compile(r"^\s*ALTER TABLE (\w+) ADD COLUMN (\w+)", re.IGNORECASE)


def _columns(tx: Transaction, database: Database, table: str) -> set[str]:
    """The table's column names (SQLite, the single-replica backend, answers PRAGMA table_info)."""
    if database.single_replica:
        return {row["name"] for row in tx.execute(f"PRAGMA table_info({table})")}
    rows = tx.execute("SELECT column_name FROM information_schema.columns WHERE table_name = ?"
                      " AND table_schema = current_schema()", (table,))
    return {row["column_name"] for row in rows}


def current_version(tx: Transaction) -> int:
    rows = tx.execute("SELECT COALESCE(MAX(version), 0) AS version FROM schema_migrations")
    return int(rows[0]["version"])


def migrate(database: Database, migrations: tuple[Migration, ...] = MIGRATIONS) -> list[int]:
    """Apply every migration newer than the database; the versions applied."""

    def apply(tx: Transaction) -> list[int]:
        if not database.single_replica:
            tx.execute(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
        tx.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
            f" applied_at {database.float_type} NOT NULL)"
        )
        have = current_version(tx)
        applied = []
        for migration in migrations:
            if migration.version <= have:
                continue
            for statement in migration.statements:
                added = ADD_COLUMN.match(statement)
                if added and added.group(2) in _columns(tx, database, added.group(1)):
                    continue
                tx.execute(statement.format(float=database.float_type))
            tx.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                       (migration.version, migration.name, time.time()))
            applied.append(migration.version)
        return applied

    applied = database.run(apply)
    if applied:
        log.info("%s: applied schema migrations %s", database.name, ", ".join(map(str, applied)))
    return applied
