"""Fifty jobs at once from five API keys against the stack as `make up` runs it, every limit on:
all complete, no answer is a 5xx, and the gateway's peak memory stays small."""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path

import httpx
import pytest

from scripts.stack import Stack
from tests.helpers.audio import encode_audio, speech_like

pytestmark = pytest.mark.e2e
JOBS = 50
KEYS = {f"tenant{n}": f"tenant{n}-key-0123456789abcdef" for n in range(5)}
SIZE = 64


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc status")


def test_fifty_concurrent_jobs(tmp_path: Path, portrait: bytes) -> None:
    gateway_env = {"API_KEYS": ",".join(f"{name}={key}" for name, key in KEYS.items()), "CHUNK_TARGET_SEC": "3"}
    with Stack(tmp_path / "stack", generators=2, gateway_env=gateway_env) as stack:
        statuses: list[int] = []
        finals: dict[str, dict] = {}
        lock = threading.Lock()

        def run(index: int) -> None:
            key = list(KEYS.values())[index % len(KEYS)]
            headers = {"Authorization": f"Bearer {key}"}
            audio = encode_audio(speech_like(4.0, seed=index), 16_000, "wav")
            body = json.dumps({"image_base64": base64.b64encode(portrait).decode(),
                               "audio_base64": base64.b64encode(audio).decode(), "width": SIZE, "height": SIZE})
            with httpx.Client(base_url=stack.rest_url, headers=headers, timeout=120) as client:
                reply = client.post("/jobs", content=body, headers={"Content-Type": "application/json"})
                with lock:
                    statuses.append(reply.status_code)
                assert reply.status_code == 202, reply.text
                job_id = reply.json()["id"]
                deadline = time.monotonic() + 600
                while time.monotonic() < deadline:
                    time.sleep(1.0)
                    state = client.get(f"/jobs/{job_id}")  # the video streams in when done
                    with lock:
                        statuses.append(state.status_code)
                    if state.status_code == 429:
                        time.sleep(float(state.headers["retry-after"]))
                        continue
                    if state.json()["status"] not in ("IN_QUEUE", "RUNNING"):
                        with lock:
                            finals[job_id] = state.json()
                        return

        started = time.monotonic()
        threads = [threading.Thread(target=run, args=(n,)) for n in range(JOBS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.monotonic() - started
        gateway = stack.services["gateway"]
        assert gateway.process is not None
        peak = peak_rss_mb(gateway.process.pid)
        print(f"{JOBS} concurrent jobs: {len(finals)} finished in {seconds:.0f} s, {len(statuses)} requests, "
              f"{sum(s >= 500 for s in statuses)} 5xx, {statuses.count(429)} 429; gateway peak RSS {peak:.0f} MiB")
        assert len(finals) == JOBS
        assert all(state["status"] == "COMPLETED" and len(base64.b64decode(state["video_base64"])) > 1000
                   for state in finals.values()), [s.get("error") for s in finals.values()]
        assert not [s for s in statuses if s >= 500]
        assert peak < 500, f"gateway peak RSS {peak:.0f} MiB"
