"""Jobs survive generators dying and the gateway restarting; hopeless chunks fail the job clearly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from itk_gateway.server import Gateway
from itk_generator.backend import BackendError
from tests.gateway.conftest import SIZE, json_job, leftovers, post_json, speech_wav
from tests.helpers.rest import call, download, wait_for_job
from tests.helpers.services import GeneratorHandle, start_generator, wait_until
from tests.helpers.video import bar_positions, bar_x, write_video

SECONDS = 9.0


@pytest.fixture
def slow_pair(tmp_path: Path) -> Iterator[list[GeneratorHandle]]:
    """Two generators taking 0.5 s per audio second, so chunks are in flight long enough to act on."""
    pair = [start_generator(tmp_path / f"slow-{n}", cost_per_audio_sec=0.5) for n in range(2)]
    yield pair
    for generator in pair:
        generator.stop()


def rendered(generators: list[GeneratorHandle], job_id: str, counter: str = "rendered") -> dict[int, int]:
    totals: dict[int, int] = {}
    for generator in generators:
        for (job, index), times in getattr(generator.backend, counter).items():
            if job == job_id:
                totals[index] = totals.get(index, 0) + times
    return totals


@pytest.mark.parametrize("reference", ["portrait", "video"])
def test_gateway_restart_resumes_without_regenerating(make_gateway, slow_pair: list[GeneratorHandle],
                                                      portrait: bytes, reference: str, tmp_path: Path) -> None:
    """A video reference too: its normalised copy stays with the job, so the spans cut after the
    restart show the same source frames."""
    targets = [g.target for g in slow_pair]
    first = make_gateway(generator_targets=targets, max_concurrent_chunks=1)
    image = portrait
    if reference == "video":
        image = write_video(tmp_path / "source.mp4", 12.0, width=SIZE, height=SIZE).read_bytes()
    status, created = post_json(first, json_job(image, speech_wav(SECONDS, seed=5)))
    assert status == 202, created
    job_id = created["id"]
    # A chunk is finished once the gateway holds its part (a generator's render ending is not enough:
    # the part still has to stream back).
    wait_until(lambda: any(c.status == "done" for c in first.store.chunks(job_id)), timeout=60,
               message="a chunk finished")
    first.stop()
    done_before = rendered(slow_pair, job_id)

    second = make_gateway(generator_targets=targets, max_concurrent_chunks=4)
    final = wait_for_job(second.rest_url, job_id, timeout=120)
    assert final["status"] == "COMPLETED", final
    counts = rendered(slow_pair, job_id)
    assert sorted(counts) == list(range(final["chunk_count"]))
    assert set(counts.values()) == {1}, counts
    starts = rendered(slow_pair, job_id, "started")
    for index in done_before:
        assert starts[index] == 1, f"chunk {index} finished before the restart but was started again"
    assert leftovers(second) == [second.files.result(job_id)]
    if reference == "video":
        result = tmp_path / "result.mp4"
        result.write_bytes(download(second.rest_url, job_id))
        positions = bar_positions(result)
        expected = [round(bar_x(int(n / 25 * 30 + 1e-6) / 30, SIZE, 12.0)) for n in range(len(positions))]
        assert np.max(np.abs(positions - np.array(expected))) <= 1.0


def test_generator_dying_mid_chunk_is_retried_elsewhere(make_gateway, slow_pair: list[GeneratorHandle],
                                                        portrait: bytes) -> None:
    gateway = make_gateway(generator_targets=[g.target for g in slow_pair])
    _, created = post_json(gateway, json_job(portrait, speech_wav(SECONDS, seed=6)))
    job_id = created["id"]
    wait_until(lambda: rendered(slow_pair, job_id, "started"), timeout=30, message="a chunk started")
    victim = next(g for g in slow_pair if any(job == job_id for job, _ in g.backend.started))
    victim.stop()
    final = wait_for_job(gateway.rest_url, job_id, timeout=120)
    assert final["status"] == "COMPLETED", final
    counts = rendered(slow_pair, job_id)
    assert sorted(counts) == list(range(final["chunk_count"])) and set(counts.values()) == {1}


def test_chunk_failing_everywhere_fails_the_job_with_the_reason(make_gateway, slow_pair: list[GeneratorHandle],
                                                                portrait: bytes) -> None:
    for generator in slow_pair:
        generator.backend.failure = RuntimeError("the GPU fell off the bus")
    gateway = make_gateway(generator_targets=[g.target for g in slow_pair], generator_max_attempts=3)
    _, created = post_json(gateway, json_job(portrait, speech_wav(4.0)))
    final = wait_for_job(gateway.rest_url, created["id"], timeout=60)
    assert final["status"] == "FAILED"
    assert "failed on 3 attempts" in final["error"] and "the GPU fell off the bus" in final["error"]
    assert "127.0.0.1:" in final["error"]
    assert leftovers(gateway) == []


def test_chunk_rejected_as_bad_input_fails_at_once(make_gateway, slow_pair: list[GeneratorHandle],
                                                   portrait: bytes) -> None:
    for generator in slow_pair:
        generator.backend.failure = BackendError("this portrait has no face")
    gateway = make_gateway(generator_targets=[g.target for g in slow_pair], max_concurrent_chunks=1)
    _, created = post_json(gateway, json_job(portrait, speech_wav(SECONDS)))
    final = wait_for_job(gateway.rest_url, created["id"], timeout=60)
    assert final["status"] == "FAILED"
    assert "rejected by generator" in final["error"] and "no face" in final["error"]
    assert sum(rendered(slow_pair, created["id"], "started").values()) == 1


def test_no_generator_at_all(make_gateway, portrait: bytes) -> None:
    gateway = make_gateway(generator_targets=["127.0.0.1:9"], generator_wait_sec=1.0)
    _, created = post_json(gateway, json_job(portrait, speech_wav(3.0)))
    final = wait_for_job(gateway.rest_url, created["id"], timeout=60)
    assert final["status"] == "FAILED" and "no ready generator endpoint" in final["error"]
    status, body = call("GET", f"{gateway.rest_url}/jobs/{created['id']}/video")
    assert status == 409 and "FAILED" in body["error"]


def test_splitter_down_at_creation(make_gateway, portrait: bytes) -> None:
    gateway: Gateway = make_gateway(splitter_target="127.0.0.1:9")
    status, body = post_json(gateway, json_job(portrait, speech_wav(3.0)))
    assert status == 503 and body["code"] == "JOB_CREATION_FAILED" and "splitter" in body["error"]
    assert leftovers(gateway) == []
