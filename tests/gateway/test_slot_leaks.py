"""Generator slots and job leases never leak: a storage error at any write of a piece's life
leaves every slot free, and the next job runs to completion (SQLite and PostgreSQL); the
dispatch watchdog notices work waiting beside idle generators and gives abandoned slots back."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from typing import Any

import pytest

from itk_gateway.server import Gateway
from itk_gateway.storage.database import DatabaseUnavailableError
from itk_gateway.storage.store import CHUNK_DONE, CHUNK_PENDING, CHUNK_RUNNING
from tests.gateway.conftest import json_job, post_json, speech_wav
from tests.helpers.rest import wait_for_job
from tests.helpers.services import wait_until

# The writes of one piece's life, each named by the store call that makes it.
PIECE_WRITES: dict[str, tuple[str, Callable[[dict[str, Any]], bool]]] = {
    "chunk pending": ("update_chunk", lambda f: f.get("status") == CHUNK_PENDING),
    "chunk running": ("update_chunk", lambda f: f.get("status") == CHUNK_RUNNING),
    "job running": ("promote", lambda f: True),
    "chunk progress": ("update_chunk", lambda f: set(f) == {"frames_done"}),
    "chunk done": ("update_chunk", lambda f: f.get("status") == CHUNK_DONE),
    "job progress": ("raise_progress", lambda f: True),
}


def fail_once(gateway: Gateway, write: str, error: Exception) -> threading.Event:
    """Make the first matching store write raise `error`; the event says it did."""
    method, matches = PIECE_WRITES[write]
    original = getattr(gateway.store, method)
    fired = threading.Event()
    lock = threading.Lock()

    def failing(*args: Any, **fields: Any) -> Any:
        with lock:
            hit = not fired.is_set() and matches(fields)
            if hit:
                fired.set()
        if hit:
            raise error
        return original(*args, **fields)

    setattr(gateway.store, method, failing)
    return fired


def slots_taken(gateway: Gateway) -> int:
    return sum(endpoint.active for pool in gateway.backends.pools.values() for endpoint in pool.endpoints())


@pytest.mark.parametrize("write", list(PIECE_WRITES))
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_storage_error_at_each_piece_write_leaks_no_slot(make_gateway, portrait: bytes, write: str,
                                                         backend: str, request: pytest.FixtureRequest) -> None:
    overrides: dict[str, Any] = {"dispatch_stall_sec": 0.0}  # the release itself is under test, not the watchdog
    if backend == "postgresql":
        overrides |= {"database_url": request.getfixturevalue("postgres").create_database(),
                      "job_lease_sec": 3.0, "job_poll_sec": 0.5}
        error: Exception = DatabaseUnavailableError("PostgreSQL unreachable: injected")
    else:
        error = sqlite3.OperationalError("disk I/O error")
    gateway = make_gateway(**overrides)
    fired = fail_once(gateway, write, error)
    status, first = post_json(gateway, json_job(portrait, speech_wav(4.0, seed=1)))
    assert status == 202, first
    wait_until(fired.is_set, timeout=60, message=f"the {write} write")
    # The job with the error ends or, when the database was lost, is resumed; either way no slot
    # stays taken once nothing renders.
    ended = wait_for_job(gateway.rest_url, first["id"], timeout=120)
    assert ended["status"] in ("COMPLETED", "FAILED"), ended
    wait_until(lambda: slots_taken(gateway) == 0, timeout=30, message="every generator slot free")
    status, second = post_json(gateway, json_job(portrait, speech_wav(4.0, seed=2)))
    assert status == 202, second
    assert wait_for_job(gateway.rest_url, second["id"], timeout=120)["status"] == "COMPLETED"
    assert slots_taken(gateway) == 0


def test_watchdog_gives_back_a_slot_whose_holder_died(make_gateway, portrait: bytes, services) -> None:
    gateway = make_gateway(generator_targets=services.generator_targets[:1], dispatch_stall_sec=1.0,
                           dispatch_watchdog_sec=0.2, metrics_port=0)
    pool = next(iter(gateway.backends.pools.values()))
    wait_until(lambda: pool.counts()["ready"] == 1, timeout=30, message="the generator ready")
    # A holder that ends without giving its slot back: the one generator looks busy for ever.
    leaker = threading.Thread(target=pool.acquire)
    leaker.start()
    leaker.join()
    assert slots_taken(gateway) == 1
    status, job = post_json(gateway, json_job(portrait, speech_wav(3.0, seed=3)))
    assert status == 202, job
    assert wait_for_job(gateway.rest_url, job["id"], timeout=120)["status"] == "COMPLETED"
    metrics = gateway.metrics.render().decode()
    assert 'itk_dispatch_stalls_total{pool="infinitetalk"}' in metrics
    assert 'itk_dispatch_slots_reclaimed_total{pool="infinitetalk"} 1.0' in metrics

