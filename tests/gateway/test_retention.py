"""What is kept and for how long: finished jobs expire after RESULT_TTL_HOURS; crashed processes'
leftovers (gateway uploads, stitcher and generator scratch folders) are removed at start."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path

from itk_common.scratch import ScratchRoot, lock_path, remove_stale
from itk_gateway.jobs.validation import JobOptions, new_job_id
from itk_gateway.server import Gateway
from itk_gateway.storage.store import COMPLETED, FAILED
from itk_generator.server import SCRATCH_PREFIX as GENERATOR_PREFIX
from itk_stitcher.server import SCRATCH_PREFIX as STITCHER_PREFIX
from itk_stitcher.server import start_server as start_stitcher_server
from tests.gateway.conftest import leftovers
from tests.helpers.rest import call
from tests.helpers.services import start_generator, wait_until


def finished_job(gateway: Gateway, status: str = COMPLETED) -> str:
    job_id = new_job_id()
    gateway.store.create_job(job_id, JobOptions(width=64, height=64, pool="infinitetalk", seed=1))
    gateway.store.finish_job(job_id, status, progress=100, has_video=int(status == COMPLETED))
    if status == COMPLETED:
        gateway.files.result(job_id).write_bytes(b"\x00\x00\x00\x18ftypisom")
    return job_id


def test_finished_jobs_expire_after_the_ttl(make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway(result_ttl_hours=1.0)
    done, failed = finished_job(gateway), finished_job(gateway, FAILED)
    assert gateway.retention.sweep() == []  # younger than the TTL
    assert sorted(gateway.retention.sweep(now=time.time() + 3601)) == sorted([done, failed])
    assert leftovers(gateway) == [] and gateway.store.get_job(done) is None
    assert call("GET", f"{gateway.rest_url}/jobs/{done}")[0] == 404


def test_the_sweeper_runs_by_itself_and_zero_keeps_everything(make_gateway: Callable[..., Gateway],
                                                               tmp_path: Path) -> None:
    keeper = make_gateway(result_ttl_hours=0.0, data_dir=tmp_path / "keep")
    kept = finished_job(keeper)
    assert keeper.retention.sweep(now=time.time() + 10**9) == []
    assert keeper.store.get_job(kept) is not None
    sweeper = make_gateway(result_ttl_hours=1 / 3600, data_dir=tmp_path / "sweep")  # one second
    job_id = finished_job(sweeper)
    wait_until(lambda: sweeper.store.get_job(job_id) is None, timeout=10, message="the job expired")
    assert leftovers(sweeper) == []


def test_gateway_removes_leftovers_of_a_crash_at_start(make_gateway: Callable[..., Gateway], tmp_path: Path) -> None:
    data = tmp_path / "gateway"
    first = make_gateway(data_dir=data)
    kept = finished_job(first)
    first.stop()
    # What a crash leaves: an upload that never became a job, a half-written result, an orphan result.
    (data / "jobs" / new_job_id() / "chunks").mkdir(parents=True)
    (data / "jobs" / "job-1-0123abcd" / "image").parent.mkdir(parents=True)
    (data / "results" / f"{kept}.mp4.tmp").write_bytes(b"half")
    (data / "results" / f"{new_job_id()}.mp4").write_bytes(b"orphan")
    second = make_gateway(data_dir=data)
    assert leftovers(second) == [second.files.result(kept)]


def hold_lock(folder: Path) -> int:
    """Hold `folder`'s scratch lock from another open file, as a live process would."""
    descriptor = os.open(lock_path(folder), os.O_RDWR)
    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return descriptor


def test_scratch_of_dead_processes_is_removed_and_of_live_ones_kept(tmp_path: Path) -> None:
    live = ScratchRoot(tmp_path, "itk-test-")
    dead = tmp_path / "itk-test-dead"
    (dead / "stitch-abc").mkdir(parents=True)
    lock_path(dead).touch()  # its process died: nobody holds the lock
    fresh = tmp_path / "itk-test-starting"
    fresh.mkdir()  # no lock file yet: maybe being created right now
    old = tmp_path / "itk-test-old"
    old.mkdir()
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    unrelated = tmp_path / "someone-else"
    unrelated.mkdir()
    assert remove_stale(tmp_path, "itk-test-") == [dead, old]
    assert live.path.exists() and fresh.exists() and unrelated.exists()
    assert not lock_path(dead).exists() and lock_path(live.path).exists()
    live.close()
    assert not live.path.exists() and not lock_path(live.path).exists()


def test_stitcher_and_generator_remove_scratch_of_killed_predecessors(tmp_path: Path) -> None:
    for prefix in (STITCHER_PREFIX, GENERATOR_PREFIX):
        crashed = tmp_path / f"{prefix}killed"
        (crashed / "stitch-x" / "in").mkdir(parents=True)
        lock_path(crashed).touch()
        alive = tmp_path / f"{prefix}alive"
        alive.mkdir()
        lock_path(alive).touch()
        descriptor = hold_lock(alive)
        try:
            if prefix == STITCHER_PREFIX:
                service, _ = start_stitcher_server("127.0.0.1", 0, temp_dir=tmp_path)
                service.stop(0)
            else:
                start_generator(tmp_path, cost_per_audio_sec=0.0).stop()
            assert not crashed.exists() and alive.exists()
        finally:
            os.close(descriptor)
