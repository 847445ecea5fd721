"""The job store on both backends, SQLite and a real PostgreSQL: migrations, state, leases."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from itk_common.quality.report import quality_text, report_state
from itk_gateway.jobs.validation import JobOptions
from itk_gateway.storage.database import DatabaseInUseError, PostgresDatabase, SqliteDatabase
from itk_gateway.storage.migrations import MIGRATIONS, migrate
from itk_gateway.storage.store import CANCELLED, CHUNK_DONE, COMPLETED, RUNNING, ChunkRecord, JobStore
from tests.helpers.postgres import PostgresServer

OPTIONS = JobOptions(width=64, height=64, pool="infinitetalk")


@pytest.fixture(params=["sqlite", "postgresql"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator:
    """Opens stores on one fresh database of the parametrised kind (several, as replicas would)."""
    url = request.getfixturevalue("postgres").create_database() if request.param == "postgresql" else ""
    opened: list[JobStore] = []

    def make() -> JobStore:
        if not url and opened:
            return opened[0]  # one process per SQLite file: the replicas' ids share it
        database = PostgresDatabase(url) if url else SqliteDatabase(tmp_path / "jobs.sqlite3")
        store = JobStore(database)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def test_migrations_are_recorded_and_applied_once(make_store) -> None:
    store = make_store()
    rows = store.db.run(lambda tx: tx.execute("SELECT version FROM schema_migrations ORDER BY version"))
    assert [row["version"] for row in rows] == [m.version for m in MIGRATIONS]
    assert migrate(store.db) == []


def test_a_database_from_before_migrations_is_adopted(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(MIGRATIONS[0].statements[0].format(float="REAL"))
    # A column an unversioned release had already added: its migration skips it.
    old.execute("ALTER TABLE jobs ADD COLUMN owner TEXT NOT NULL DEFAULT ''")
    old.execute("INSERT INTO jobs (id, provider, status, options, created_at, updated_at)"
                " VALUES ('job-1-00000000', 'infinitetalk', 'RUNNING', ?, 1, 1)",
                ('{"width": 64, "height": 64, "provider": "infinitetalk"}',))
    old.commit()
    old.close()
    store = JobStore(SqliteDatabase(path))
    try:
        job = store.get_job("job-1-00000000")
        assert job is not None and job.status == RUNNING and job.lease_owner == ""
        assert store.claim_expired("me", 10, 5) == ["job-1-00000000"]
    finally:
        store.close()


def test_a_second_gateway_on_one_sqlite_file_is_refused(tmp_path: Path) -> None:
    first = SqliteDatabase(tmp_path / "jobs.sqlite3")
    with pytest.raises(DatabaseInUseError, match="several replicas need DATABASE_URL"):
        SqliteDatabase(tmp_path / "jobs.sqlite3")
    first.close()
    SqliteDatabase(tmp_path / "jobs.sqlite3").close()


def test_job_and_chunk_state(make_store) -> None:
    store = make_store()
    store.create_job("job-1-aaaaaaaa", OPTIONS, driver="a", lease_sec=10)
    first = store.record_chunk(ChunkRecord("job-1-aaaaaaaa", 0, 0, 64_000, 100))
    store.update_chunk("job-1-aaaaaaaa", 0, status=CHUNK_DONE, frames_done=100, part_width=64, part_height=64)
    # The same span keeps its state (a resumed job reuses the chunk); another span starts over.
    again = store.record_chunk(first)
    assert again.status == CHUNK_DONE and again.part_width == 64
    moved = store.record_chunk(ChunkRecord("job-1-aaaaaaaa", 0, 0, 70_400, 110))
    assert moved.status == "pending" and store.chunks("job-1-aaaaaaaa")[0].frame_count == 110
    store.raise_progress("job-1-aaaaaaaa", 40)
    store.raise_progress("job-1-aaaaaaaa", 30)
    assert store.get_job("job-1-aaaaaaaa").progress == 40
    assert store.finish_job("job-1-aaaaaaaa", CANCELLED, "stop")
    assert not store.finish_job("job-1-aaaaaaaa", COMPLETED)
    assert store.count_by_status()[CANCELLED] == 1


def test_options_stored_under_the_former_pool_name_still_load(make_store) -> None:
    """Rows written before the pool had its own name keep it as `provider` in their options JSON."""
    store = make_store()
    store.create_job("job-1-bbbbbbbb", OPTIONS, driver="a", lease_sec=10)
    legacy = json.dumps({"width": 64, "height": 64, "provider": "fast", "seed": 5})
    store.db.run(lambda tx: tx.execute("UPDATE jobs SET options = ? WHERE id = ?", (legacy, "job-1-bbbbbbbb")))
    options = store.get_job("job-1-bbbbbbbb").options
    assert options.pool == "fast" and options.seed == 5 and options.width == 64


def test_leases_claim_renew_fence_release(make_store) -> None:
    a, b = make_store(), make_store()
    a.create_job("job-1-aaaaaaaa", OPTIONS, driver="a", lease_sec=0.5)
    assert b.claim_expired("b", 10, 5) == []  # a's lease is live
    assert a.renew_leases("a", ["job-1-aaaaaaaa"], 0.5) == 1
    time.sleep(0.7)
    assert b.claim_expired("b", 10, 5) == ["job-1-aaaaaaaa"]
    assert a.lease_states(["job-1-aaaaaaaa", "job-2-bbbbbbbb"]) == {
        "job-1-aaaaaaaa": a.lease_states(["job-1-aaaaaaaa"])["job-1-aaaaaaaa"]}
    assert a.lease_states(["job-1-aaaaaaaa"])["job-1-aaaaaaaa"].driver == "b"
    # a lost the job: its renewals and its final write no longer count.
    assert a.renew_leases("a", ["job-1-aaaaaaaa"], 10) == 0
    assert not a.finish_job("job-1-aaaaaaaa", COMPLETED, driver="a")
    assert a.has_live_lease("job-1-aaaaaaaa")
    b.release_lease("job-1-aaaaaaaa", "b")
    assert not a.has_live_lease("job-1-aaaaaaaa")
    assert a.claim_expired("a", 10, 5) == ["job-1-aaaaaaaa"]
    assert a.finish_job("job-1-aaaaaaaa", COMPLETED, driver="a")
    assert a.claim_expired("b", 10, 5) == []  # finished jobs are never claimed


def test_ended_jobs_of_a_dead_driver_are_swept_once(make_store) -> None:
    store = make_store()
    store.create_job("job-1-aaaaaaaa", OPTIONS, driver="a", lease_sec=0.3)
    store.create_job("job-2-bbbbbbbb", OPTIONS, driver="a", lease_sec=0.3)
    store.finish_job("job-1-aaaaaaaa", CANCELLED, "by another replica")  # a died before cleaning up
    store.finish_job("job-2-bbbbbbbb", COMPLETED, driver="a")
    store.release_lease("job-2-bbbbbbbb", "a")  # a cleaned up after this one
    assert store.claim_abandoned("b", 5) == []  # a's lease has not run out yet
    time.sleep(0.4)
    assert store.claim_abandoned("b", 5) == [("job-1-aaaaaaaa", CANCELLED)]
    assert store.claim_abandoned("c", 5) == []


def test_pending_quality_reports_are_leased_until_stored(make_store) -> None:
    """A report being computed keeps its lease renewed; once its replica stops (lease given up)
    or dies (lease runs out) another claims it, never while the lease is live, never once stored."""
    store = make_store()
    pending = quality_text(report_state("pending"))
    store.create_job("job-1-aaaaaaaa", OPTIONS, driver="a", lease_sec=0.3)
    store.create_job("job-2-bbbbbbbb", OPTIONS, driver="a", lease_sec=0.3)
    assert store.finish_job("job-1-aaaaaaaa", COMPLETED, driver="a", quality=pending)
    assert store.finish_job("job-2-bbbbbbbb", COMPLETED, driver="a")  # no report asked for
    assert store.renew_leases("a", ["job-1-aaaaaaaa", "job-2-bbbbbbbb"], 0.3) == 1
    assert store.claim_pending_reports("b", 10, 5) == []  # a is computing it
    time.sleep(0.4)  # a died
    assert store.claim_abandoned("b", 5) == [("job-2-bbbbbbbb", COMPLETED)]  # not the pending report
    assert store.claim_pending_reports("b", 10, 5) == ["job-1-aaaaaaaa"]
    assert store.lease_states(["job-1-aaaaaaaa"])["job-1-aaaaaaaa"].driver == "b"
    assert store.claim_pending_reports("c", 10, 5) == []
    store.release_lease("job-1-aaaaaaaa", "b")  # b stopped: the next one takes it at once
    assert store.claim_pending_reports("c", 10, 5) == ["job-1-aaaaaaaa"]
    store.update_job("job-1-aaaaaaaa", quality=quality_text(report_state("failed", "no face")))
    store.release_lease("job-1-aaaaaaaa", "c")
    assert store.claim_pending_reports("d", 10, 5) == []


def test_concurrent_claims_take_each_job_once(postgres: PostgresServer) -> None:
    """Replicas claiming at the same moment (SELECT ... FOR UPDATE SKIP LOCKED) split the jobs."""
    url = postgres.create_database()
    stores = [JobStore(PostgresDatabase(url)) for _ in range(4)]
    try:
        ids = [f"job-{n}-{n:08x}" for n in range(40)]
        for job_id in ids:
            stores[0].create_job(job_id, OPTIONS)  # nobody holds them
        claimed: dict[str, list[str]] = {}
        start = threading.Barrier(len(stores))

        def claim(index: int, store: JobStore) -> None:
            start.wait()
            mine = claimed.setdefault(f"r{index}", [])
            while batch := store.claim_expired(f"r{index}", 30, 3):
                mine.extend(batch)

        threads = [threading.Thread(target=claim, args=(n, s)) for n, s in enumerate(stores)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        every = [job for jobs in claimed.values() for job in jobs]
        assert sorted(every) == sorted(ids)
        drivers = stores[0].lease_states(ids)
        assert all(drivers[job].driver == replica for replica, jobs in claimed.items() for job in jobs)
    finally:
        for store in stores:
            store.close()


def test_active_job_limit_holds_under_simultaneous_creates(make_store) -> None:
    """40 creates of one owner at the same moment, over several replicas' stores, limit 20: 20 jobs."""
    stores = [make_store() for _ in range(4)]
    start = threading.Barrier(40)
    accepted: list[bool] = []

    def create(number: int) -> None:
        start.wait()
        accepted.append(stores[number % len(stores)].create_job(
            f"job-{number}-{number:08x}", OPTIONS, owner="alice", max_active=20))

    threads = [threading.Thread(target=create, args=(n,)) for n in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert accepted.count(True) == 20
    assert stores[0].count_active("alice") == 20
    # Another owner's limit is its own.
    assert stores[0].create_job("job-99-000000ff", OPTIONS, owner="bob", max_active=20)


def test_quality_reports_left_pending_by_a_gone_gateway_are_given_up(make_store) -> None:
    from itk_common.quality.report import quality_text, report_state

    store = make_store()
    for job_id in ("job-stale", "job-fresh"):
        store.create_job(job_id, OPTIONS)
        assert store.finish_job(job_id, "COMPLETED", quality=quality_text(report_state("pending")))
    store.db.run(lambda tx: tx.execute("UPDATE jobs SET updated_at = 0 WHERE id = ?", ("job-stale",)))
    seen = store.version("job-stale")
    assert store.fail_stale_quality(older_than_sec=600) == 1
    stale, fresh = store.get_job("job-stale"), store.get_job("job-fresh")
    assert stale is not None and fresh is not None
    assert json.loads(stale.quality)["state"] == "failed" and "stopped" in json.loads(stale.quality)["error"]
    assert json.loads(fresh.quality)["state"] == "pending"
    assert store.version("job-stale") != seen  # watchers of the job's events see the change
