"""Generators come and go during a job, as pods do when the pool scales up or a node is drained.

The gateway follows a re-readable list of targets (standing in for the headless Service's DNS
answer). Whatever happens to the pool, the job completes and every chunk is rendered exactly once.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

import pytest

from scripts.stack import Stack
from tests.e2e.checks import check_video
from tests.helpers.audio import encode_audio, speech_like
from tests.helpers.rest import download, submit_multipart, wait_for_job

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
RENDERED = re.compile(r"chunk (\S+)/(\d+): \d+ frames in")
SIZE = 64


def renders(workdir: Path, job_id: str) -> Counter[tuple[str, int]]:
    """(generator, chunk) -> times rendered to the end, from every generator's log, gone ones too."""
    counts: Counter[tuple[str, int]] = Counter()
    for log in (workdir / "logs").glob("generator-*.log"):
        for match in RENDERED.finditer(log.read_text(errors="replace")):
            if match.group(1) == job_id:
                counts[(log.stem, int(match.group(2)))] += 1
    return counts


def test_generators_added_and_evicted_during_a_job(tmp_path: Path) -> None:
    samples = speech_like(90.0, seed=3)
    audio = encode_audio(samples, 16_000, "wav")
    image = (ROOT / "assets" / "sample" / "portrait.png").read_bytes()
    workdir = tmp_path / "stack"
    stack = Stack(workdir, generators=1, targets_file=tmp_path / "targets.txt",
                  generator_env={"PREVIEW_COST_PER_AUDIO_SEC": "0.15"},
                  gateway_env={"CHUNK_TARGET_SEC": "6", "GENERATOR_RESOLVE_INTERVAL_SEC": "0.5",
                               "MAX_CONCURRENT_CHUNKS": "8", "MIN_LANE_SEC": "10"})
    with stack:
        # Lanes are planned from the generators ready at the start (one here): the job asks for six
        # so that there is parallel work for the generators that join.
        job_id = submit_multipart(stack.rest_url, image, audio, width=SIZE, height=SIZE, lanes=6)
        # Scale-up: two pods join while the first chunks are being rendered.
        first = stack.generator_services[0]
        added = [stack.scale_up(), stack.scale_up()]
        deadline = time.monotonic() + 120
        while not any(name == added[0].name for name, _ in renders(workdir, job_id)):
            assert time.monotonic() < deadline, "the gateway never used the generator that joined"
            time.sleep(0.2)
        # Eviction: the original pod is unpublished and terminated mid-job; it drains its chunk.
        assert stack.evict(first) == 0
        state = wait_for_job(stack.rest_url, job_id, timeout=300)
        assert state["status"] == "COMPLETED", state.get("error")
        path = tmp_path / "out.mp4"
        path.write_bytes(download(stack.rest_url, job_id))

    counts = renders(workdir, job_id)
    per_chunk = Counter(index for _, index in counts.elements())
    assert sorted(per_chunk) == list(range(state["chunk_count"])), "a chunk was lost"
    assert set(per_chunk.values()) == {1}, f"chunks rendered twice: {per_chunk}"
    assert {name for name, _ in counts} >= {added[0].name, added[1].name}
    check_video(path, samples, SIZE)
