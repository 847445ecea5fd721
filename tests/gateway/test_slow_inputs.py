"""No caller can hold the gateway hostage with slow URL inputs: creates answer at once (202 or
429), downloads run outside the request workers within per-key and total bounds, a download that
fails fails its job with a clear message, and /health and reads answer within 1 s throughout."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from itk_gateway.jobs.fetch import FetchSlots
from itk_gateway.server import Gateway
from tests.gateway.conftest import PORTRAIT, SIZE, json_job, post_json, speech_wav
from tests.helpers.file_server import FileServer, file_server
from tests.helpers.rest import call, wait_for_job

# More creates at once than the REST bridge has worker threads (40), as in the attack.
ATTACKERS = 44
FETCH_TIMEOUT_SEC = 6.0


@pytest.fixture
def slow_server() -> Iterator[FileServer]:
    with file_server() as server:
        server.files["portrait.png"] = PORTRAIT.read_bytes()
        server.slow_interval = 1.0  # one byte a second
        yield server


def test_slow_url_inputs_cannot_freeze_the_gateway(make_gateway, slow_server: FileServer, portrait: bytes) -> None:
    gateway: Gateway = make_gateway(url_allow_hosts=["127.0.0.1"], rate_limit_per_sec=0.0,
                                    url_timeout_sec=FETCH_TIMEOUT_SEC, url_fetches_per_key=4, url_accept_wait_sec=1.0)
    status, reader = post_json(gateway, json_job(portrait, speech_wav(3.0)))
    assert status == 202, reader
    body = {"width": SIZE, "height": SIZE, "image_url": slow_server.url("portrait.png"),
            "audio_url": f"{slow_server.base_url}/slow"}
    latencies: list[float] = []
    attack_over = threading.Event()

    def probe() -> None:
        while not attack_over.is_set():
            for path in ("/health", f"/jobs/{reader['id']}?include_video=false"):
                started = time.monotonic()
                answer, _ = call("GET", f"{gateway.rest_url}{path}", timeout=30)
                latencies.append(time.monotonic() - started)
                assert answer == 200
            time.sleep(0.05)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        with ThreadPoolExecutor(ATTACKERS) as attackers:
            replies = list(attackers.map(lambda _n: _timed_post(gateway, body), range(ATTACKERS)))
        # Keep probing while the accepted downloads trickle on.
        time.sleep(2.0)
    finally:
        attack_over.set()
        prober.join()
    accepted = [reply for status, reply, _ in replies if status == 202]
    refused = [reply for status, reply, _ in replies if status == 429]
    assert len(accepted) == 4 and len(refused) == ATTACKERS - 4, [(s, r) for s, r, _ in replies]
    assert all("URL_FETCHES_PER_KEY" in reply["error"] for reply in refused), refused[0]
    # Answered without waiting for the slow server (the wait for a quick download is 1 s).
    assert max(seconds for _, _, seconds in replies) < FETCH_TIMEOUT_SEC / 2
    assert max(latencies) < 1.0, f"slowest /health or read: {max(latencies):.2f} s"
    for reply in accepted:
        final = wait_for_job(gateway.rest_url, reply["id"], timeout=60)
        assert final["status"] == "FAILED", final
        assert "audio_url" in final["error"] and "timed out" in final["error"], final
    # The slots are back: the next create is accepted again.
    status, reply, _ = _timed_post(gateway, body)
    assert status == 202, reply


def _timed_post(gateway: Gateway, body: dict) -> tuple[int, dict, float]:
    started = time.monotonic()
    status, reply = post_json(gateway, body)
    return status, reply, time.monotonic() - started


def test_fetch_slots_bound_each_key_and_the_total() -> None:
    slots = FetchSlots(per_caller=2, total=3)
    assert slots.refusal("a") is None and slots.refusal("a") is None
    assert "URL_FETCHES_PER_KEY" in (slots.refusal("a") or "")
    assert slots.refusal("b") is None
    assert "URL_FETCHES_TOTAL" in (slots.refusal("c") or "")
    slots.give_back("a")
    assert slots.refusal("c") is None and slots.in_use() == 3
