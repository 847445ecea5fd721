"""A database that answers slowly, or not at all (on PostgreSQL the store retries for up to 15 s
before it gives up), holds only the requests that need it: the REST bridge's event loop never
waits for it, so /health (the liveness probe), /ready and requests that need no database answer
while event streams and creates wait."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from itk_gateway.server import Gateway
from tests.gateway.conftest import json_job, post_json, speech_wav
from tests.helpers.rest import wait_for_job

STALL_SEC = 4.0


@pytest.fixture
def stalling(make_gateway: Callable[..., Gateway]) -> Iterator[tuple[Gateway, threading.Event]]:
    """A gateway whose store calls stall STALL_SEC each while the event is set (as an unreachable
    PostgreSQL's retries do)."""
    gateway = make_gateway()
    stall = threading.Event()
    store = gateway.store
    for name in ("get_job", "count_active"):
        real = getattr(store, name)

        def slowed(*args, _real=real, **kwargs):
            if stall.is_set():
                time.sleep(STALL_SEC)
            return _real(*args, **kwargs)

        setattr(store, name, slowed)
    yield gateway, stall
    stall.clear()


def health_latencies(gateway: Gateway, seconds: float) -> list[float]:
    latencies = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.monotonic()
        assert httpx.get(f"{gateway.rest_url}/health", timeout=30).status_code == 200
        latencies.append(time.monotonic() - started)
        time.sleep(0.1)
    return latencies


def test_event_streams_do_not_block_the_event_loop(stalling, portrait: bytes) -> None:
    gateway, stall = stalling
    status, created = post_json(gateway, json_job(portrait, speech_wav(2.0)))
    assert status == 202, created
    wait_for_job(gateway.rest_url, created["id"], timeout=60)
    stall.set()

    def listen() -> None:
        try:
            with httpx.stream("GET", f"{gateway.rest_url}/jobs/{created['id']}/events", timeout=30) as reply:
                for _ in reply.iter_lines():
                    pass
        except httpx.HTTPError:
            pass

    listeners = [threading.Thread(target=listen, daemon=True) for _ in range(3)]
    # The route itself checks the job on a worker thread; its stream then reads it again.
    for listener in listeners:
        listener.start()
    latencies = health_latencies(gateway, STALL_SEC * 2)
    assert max(latencies) < 2.0, f"/health waited {max(latencies):.1f} s for the database"
    stall.clear()
    for listener in listeners:
        listener.join(timeout=STALL_SEC * 4)


def test_creates_waiting_for_the_database_do_not_block_the_event_loop(stalling, portrait: bytes) -> None:
    gateway, stall = stalling
    stall.set()
    replies: list[int] = []
    creator = threading.Thread(target=lambda: replies.append(post_json(gateway, json_job(portrait,
                                                                                       speech_wav(1.0)))[0]))
    creator.start()
    latencies = health_latencies(gateway, STALL_SEC * 1.5)
    assert max(latencies) < 2.0, f"/health waited {max(latencies):.1f} s for the database"
    creator.join(timeout=60)
    assert replies == [202]
