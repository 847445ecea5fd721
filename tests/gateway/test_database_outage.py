"""A piece finished while the database is away is never rendered again: its record beside the
part is recognised when the job goes on (here on PostgreSQL, the finished piece's write failing
as it does once the database stays away beyond its retries)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from itk_gateway.storage.database import DatabaseUnavailableError
from tests.gateway.conftest import json_job, post_json, speech_wav
from tests.gateway.test_slot_leaks import fail_once
from tests.helpers.rest import wait_for_job
from tests.helpers.services import GeneratorHandle, start_generator, wait_until


@pytest.fixture
def counted_pair(tmp_path: Path) -> Iterator[list[GeneratorHandle]]:
    pair = [start_generator(tmp_path / f"gen-{n}", cost_per_audio_sec=0.3) for n in range(2)]
    yield pair
    for generator in pair:
        generator.stop()


def renders(generators: list[GeneratorHandle], job_id: str) -> dict[int, int]:
    totals: dict[int, int] = {}
    for generator in generators:
        for (job, index), times in generator.backend.rendered.items():
            if job == job_id:
                totals[index] = totals.get(index, 0) + times
    return totals


def test_piece_finished_during_an_outage_is_not_rendered_again(make_gateway, postgres, portrait: bytes,
                                                               counted_pair: list[GeneratorHandle]) -> None:
    gateway = make_gateway(database_url=postgres.create_database(), job_lease_sec=3.0, job_poll_sec=0.5,
                           generator_targets=[g.target for g in counted_pair])
    lost = fail_once(gateway, "chunk done", DatabaseUnavailableError("PostgreSQL unreachable: injected"))
    status, created = post_json(gateway, json_job(portrait, speech_wav(9.0, seed=6)))
    assert status == 202, created
    wait_until(lost.is_set, timeout=60, message="a finished piece's write failing")
    final = wait_for_job(gateway.rest_url, created["id"], timeout=180)
    assert final["status"] == "COMPLETED", final
    counts = renders(counted_pair, created["id"])
    assert sorted(counts) == list(range(final["chunk_count"]))
    assert set(counts.values()) == {1}, f"pieces rendered more than once: {counts}"
