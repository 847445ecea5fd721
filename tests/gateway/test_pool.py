"""The generator endpoint pool against real generator servers: capacity, load, scaling, draining."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from itk_gateway.dispatch.pool import (
    STARVING_PROBE_SEC,
    AcquireCancelledError,
    EndpointPool,
    NoEndpointError,
    file_targets,
    resolve_target,
)
from tests.helpers.services import GeneratorHandle, start_generator, wait_until


@pytest.fixture(scope="module")
def generators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[GeneratorHandle]]:
    root = tmp_path_factory.mktemp("pool")
    started = [start_generator(root / "a", capacity=2), start_generator(root / "b", capacity=1),
               start_generator(root / "c", capacity=1)]
    yield started
    for generator in started:
        generator.stop()


def make_pool(source, **kwargs) -> EndpointPool:
    pool = EndpointPool("test", source, resolve_interval_sec=kwargs.pop("interval", 3600), **kwargs)
    pool.start()
    return pool


def test_resolution_gives_every_address_once() -> None:
    assert resolve_target("127.0.0.1:5000") == ["127.0.0.1:5000"]
    # localhost may answer ::1 too; one server must not count twice.
    assert resolve_target("localhost:5000") == ["127.0.0.1:5000"]
    with pytest.raises(ValueError, match="host:port"):
        resolve_target("no-port-here")


def test_capacity_and_least_loaded_first(generators: list[GeneratorHandle]) -> None:
    a, b, _ = generators
    pool = make_pool(lambda: [a.target, b.target])
    try:
        assert {e.address: e.capacity for e in pool.endpoints()} == {a.target: 2, b.target: 1}
        first = pool.acquire()
        second = pool.acquire()
        # Least loaded first: whichever took the first chunk, the other (still idle) takes the next.
        assert {first.address, second.address} == {a.target, b.target}
        third = pool.acquire()
        assert third.address == a.target  # b (capacity 1) is full, a has room for one more
        if first.address == b.target:
            first, second = second, first
        assert pool.counts() == {"known": 2, "ready": 2, "capacity": 3, "active": 3, "devices": 2}
        # Everything is full: the next acquire waits until a slot is released.
        cancelled = threading.Event()
        got: list[str] = []
        waiter = threading.Thread(target=lambda: got.append(pool.acquire(cancelled=cancelled).address))
        waiter.start()
        waiter.join(0.5)
        assert waiter.is_alive() and pool.waiting == 1
        pool.release(second)
        waiter.join(5)
        assert got == [b.target]
        # Cancelling a waiter frees it at once.
        with pytest.raises(AcquireCancelledError):
            cancelled.set()
            pool.acquire(cancelled=cancelled)
    finally:
        pool.stop()


def test_failed_endpoints_are_avoided(generators: list[GeneratorHandle]) -> None:
    _, b, c = generators
    pool = make_pool(lambda: [b.target, c.target])
    try:
        assert pool.acquire(avoid=[b.target]).address == c.target
        lease = pool.acquire()
        assert lease.address == b.target
        pool.release(lease)
        pool.mark_failed(lease, "UNAVAILABLE")
        # Until a probe says otherwise, the failed endpoint gets nothing; the probe restores it.
        assert pool.counts()["ready"] == 1
        pool.refresh()
        assert pool.counts()["ready"] == 2
    finally:
        pool.stop()


def test_targets_file_follows_scale_out_and_in(generators: list[GeneratorHandle], tmp_path: Path) -> None:
    _, b, c = generators
    targets = tmp_path / "targets.txt"
    targets.write_text(f"{b.target}\n")
    pool = make_pool(file_targets(targets))
    try:
        assert [e.address for e in pool.endpoints()] == [b.target]
        held = pool.acquire()
        targets.write_text(f"# pods\n{b.target}\n{c.target}\n\n")
        pool.refresh()
        assert sorted(e.address for e in pool.endpoints()) == sorted([b.target, c.target])
        assert pool.acquire().address == c.target  # the new pod takes work at once
        # b leaves the published list while it still runs a chunk: it keeps that chunk, gets no more.
        targets.write_text(f"{c.target}\n")
        pool.refresh()
        assert pool.counts()["known"] == 1
        assert b.target in [e.address for e in pool.endpoints()]
        pool.release(held)
        assert [e.address for e in pool.endpoints()] == [c.target]
        # A missing file keeps the last list instead of emptying the pool.
        targets.unlink()
        pool.refresh()
        assert [e.address for e in pool.endpoints()] == [c.target]
    finally:
        pool.stop()


def test_periodic_re_resolution(generators: list[GeneratorHandle]) -> None:
    a, b, _ = generators
    published = [a.target]
    pool = make_pool(lambda: list(published), interval=0.1)
    try:
        published.append(b.target)
        lease = None
        wait_until(lambda: pool.counts()["ready"] == 2, timeout=10, message="the new endpoint probed ready")
        assert sorted(e.address for e in pool.endpoints()) == sorted([a.target, b.target])
        lease = pool.acquire(avoid=[a.target])
        assert lease.address == b.target
    finally:
        if lease is not None:
            pool.release(lease)
        pool.stop()


def test_names_resolving_to_many_addresses(generators: list[GeneratorHandle]) -> None:
    """A headless Service name answers one address per pod; each is its own endpoint."""
    a, b, c = generators
    dns = {"generators.default.svc:50052": [a.target, b.target, c.target]}
    pool = make_pool(lambda: ["generators.default.svc:50052"], resolver=lambda target: dns[target])
    try:
        assert pool.counts()["known"] == 3 and pool.counts()["capacity"] == 4
        dns["generators.default.svc:50052"] = [c.target]
        pool.refresh()
        assert [e.address for e in pool.endpoints()] == [c.target]
    finally:
        pool.stop()


def test_draining_and_dead_endpoints_get_no_chunks(tmp_path: Path) -> None:
    draining = start_generator(tmp_path / "draining")
    dead = start_generator(tmp_path / "dead")
    pool = make_pool(lambda: [draining.target, dead.target], wait_sec=0.5)
    try:
        assert pool.counts()["ready"] == 2
        draining.server.start_draining()
        dead.stop()
        pool.refresh()
        assert pool.counts() == {"known": 2, "ready": 0, "capacity": 0, "active": 0, "devices": 0}
        with pytest.raises(NoEndpointError, match="no ready generator"):
            pool.acquire()
    finally:
        pool.stop()
        draining.stop()


def test_waiters_are_served_in_priority_order(generators: list[GeneratorHandle]) -> None:
    _, b, _ = generators  # capacity 1
    pool = make_pool(lambda: [b.target])
    served: list[int] = []
    try:
        held = pool.acquire()

        def wait_for_slot(priority: int) -> None:
            lease = pool.acquire(priority=(priority,))
            served.append(priority)
            pool.release(lease)

        threads = []
        for priority in (3, 1, 2):
            threads.append(threading.Thread(target=wait_for_slot, args=(priority,)))
            threads[-1].start()
            wait_until(lambda n=len(threads): pool.waiting == n, timeout=5, message="waiter queued")
        pool.release(held)
        for thread in threads:
            thread.join(10)
        assert served == [1, 2, 3]
    finally:
        pool.stop()


def test_a_multi_gpu_generator_is_one_fast_endpoint(tmp_path: Path) -> None:
    """Capacity 1 whatever its GPU count, chosen first while it is free, counted with all its devices."""
    single = start_generator(tmp_path / "single", capacity=1)
    multi = start_generator(tmp_path / "multi", capacity=1, devices=4)
    pool = make_pool(lambda: [single.target, multi.target])
    try:
        assert {e.address: (e.capacity, e.devices) for e in pool.endpoints()} == {single.target: (1, 1),
                                                                                   multi.target: (1, 4)}
        assert pool.counts()["devices"] == 5 and pool.counts()["capacity"] == 2
        first = pool.acquire()
        second = pool.acquire()
        assert (first.address, second.address) == (multi.target, single.target)
        pool.release(first)
        assert pool.acquire().address == multi.target
    finally:
        pool.stop()
        single.stop()
        multi.stop()


def test_a_chunk_waiting_for_a_loading_generator_starts_as_soon_as_it_is_ready(tmp_path: Path) -> None:
    """No endpoint ready (the generator still loading, here not even listening): the pool probes
    every STARVING_PROBE_SEC while a chunk waits, not once per resolve interval (an hour here)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pool = make_pool(lambda: [f"127.0.0.1:{port}"], wait_sec=0)
    got: list[str] = []
    waiter = threading.Thread(target=lambda: got.append(pool.acquire().address), daemon=True)
    generator = None
    try:
        waiter.start()
        time.sleep(1.5)  # a probe or two found nothing
        assert not got
        generator = start_generator(tmp_path / "late", port=port)
        waiter.join(timeout=30 * STARVING_PROBE_SEC)  # the resolve interval is an hour
        assert got, "the chunk did not get the generator once it was ready"
    finally:
        pool.stop()
        if generator is not None:
            generator.stop()
