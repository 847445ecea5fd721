"""Faults a cluster sees: a generator pod dies mid-job; the gateway restarts mid-job."""

from __future__ import annotations

import re
import sqlite3
import time
from collections import Counter
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from scripts.stack import Stack
from tests.e2e.checks import check_video
from tests.helpers.rest import call, download, submit_multipart, wait_for_job

pytestmark = pytest.mark.e2e
SIZE = 96
# Each generator sleeps this long per second of audio, so the job lasts long enough to break it.
COST = "0.12"
RENDERED = re.compile(r"chunk (\S+)/(\d+): \d+ frames in")


def recorded_chunks(stack: Stack, job_id: str) -> set[int]:
    """The chunks of the job the gateway has recorded as done (their parts are in its hands)."""
    database = stack.workdir / "gateway-data" / "jobs.sqlite3"
    if not database.exists():
        return set()
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)) as db:
        rows = db.execute("SELECT idx FROM chunks WHERE job_id = ? AND status = 'done'", (job_id,)).fetchall()
    return {int(row[0]) for row in rows}


def rendered_chunks(stack: Stack, job_id: str) -> Counter[int]:
    """How many times each chunk of the job was rendered to the end, from the generators' logs."""
    counts: Counter[int] = Counter()
    for service in stack.generator_services:
        if service.log_path.exists():
            for match in RENDERED.finditer(service.log_path.read_text(errors="replace")):
                if match.group(1) == job_id:
                    counts[int(match.group(2))] += 1
    return counts


def wait_until(predicate, timeout: float = 120.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.1)


def job_state(stack: Stack, job_id: str) -> dict:
    status, state = call("GET", f"{stack.rest_url}/jobs/{job_id}")
    assert status == 200, state
    return state


def test_generator_killed_mid_job(tmp_path: Path, portrait: bytes, speech_wav: bytes,
                                  speech_samples: np.ndarray) -> None:
    with Stack(tmp_path / "stack", generators=2, generator_env={"PREVIEW_COST_PER_AUDIO_SEC": COST},
               gateway_env={"CHUNK_TARGET_SEC": "20"}) as stack:
        job_id = submit_multipart(stack.rest_url, portrait, speech_wav, width=SIZE, height=SIZE)
        wait_until(lambda: job_state(stack, job_id)["progress"] >= 10, what="the job to get going")
        victim = stack.generator_services[0]
        victim.kill()
        state = wait_for_job(stack.rest_url, job_id, timeout=300)
        assert state["status"] == "COMPLETED", state.get("error")
        path = tmp_path / "out.mp4"
        path.write_bytes(download(stack.rest_url, job_id))
        check_video(path, speech_samples, SIZE)


def test_gateway_restarted_mid_job(tmp_path: Path, portrait: bytes, speech_wav: bytes,
                                   speech_samples: np.ndarray) -> None:
    with Stack(tmp_path / "stack", generators=2, generator_env={"PREVIEW_COST_PER_AUDIO_SEC": COST},
               gateway_env={"CHUNK_TARGET_SEC": "20"}) as stack:
        job_id = submit_multipart(stack.rest_url, portrait, speech_wav, width=SIZE, height=SIZE)
        # A chunk is finished once the gateway has recorded its part (a generator's render ending is
        # not enough: the part may still be streaming back when the gateway dies).
        wait_until(lambda: len(recorded_chunks(stack, job_id)) >= 2, what="two finished chunks")
        finished_before = recorded_chunks(stack, job_id)
        stack.restart_gateway()
        # The resumed job must use those parts and never send those chunks out again.
        state = wait_for_job(stack.rest_url, job_id, timeout=300)
        assert state["status"] == "COMPLETED", state.get("error")
        counts = rendered_chunks(stack, job_id)
        assert set(range(state["chunk_count"])) <= set(counts)
        for index in finished_before:
            assert counts[index] == 1, f"chunk {index} was regenerated after the restart"
        path = tmp_path / "out.mp4"
        path.write_bytes(download(stack.rest_url, job_id))
        check_video(path, speech_samples, SIZE)


def test_make_up_restarts_a_killed_stitcher_and_the_job_completes(tmp_path: Path, portrait: bytes,
                                                                  speech_wav: bytes) -> None:
    """`kill -9` of the stitcher at about 40 % of a job, as `make up` runs it: the supervisor
    starts it again on its port and says so; the job's stitch is retried with every part."""
    import threading

    with Stack(tmp_path / "stack", generators=2, generator_env={"PREVIEW_COST_PER_AUDIO_SEC": COST},
               gateway_env={"CHUNK_TARGET_SEC": "20", "GENERATOR_RETRY_BACKOFF_SEC": "0.2"}) as stack:
        reports: list[str] = []
        stopping = threading.Event()
        supervisor = threading.Thread(target=stack.supervise, args=(stopping, reports.append, 0.1))
        supervisor.start()
        try:
            job_id = submit_multipart(stack.rest_url, portrait, speech_wav, width=SIZE, height=SIZE)
            wait_until(lambda: job_state(stack, job_id)["progress"] >= 40, what="40 % of the job")
            stitcher = stack.services["stitcher"]
            stitcher.kill()
            wait_until(lambda: any(r.startswith("stitcher exited (killed by signal 9)") for r in reports),
                       timeout=10, what="the supervisor's restart")
            state = wait_for_job(stack.rest_url, job_id, timeout=300)
            assert state["status"] == "COMPLETED", state.get("error")
            assert stitcher.alive() and stitcher.restarts == 1
        finally:
            stopping.set()
            supervisor.join()
        assert reports == [f"stitcher exited (killed by signal 9); restarted it on {stitcher.target} (restart 1)"]
