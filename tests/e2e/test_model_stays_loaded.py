"""The product path on the real InfiniteTalk backend (tiny model, CPU), as a seed-API client uses it:
the model is loaded once for a job of several pieces (the seed body's implied force_offload does
not unload it), and the live stream gains its first segment from the first clip, before the first
piece ends; the final MP4 is still exact to the frame."""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from itk_generator.infinitetalk.tiny import build_tiny_model_dir
from scripts.stack import Stack
from tests.e2e.checks import check_video
from tests.helpers.audio import encode_audio, speech_like
from tests.helpers.rest import call, download, wait_for_job

pytestmark = pytest.mark.e2e
SIZE = 32
CLIP_FRAMES = 21


def seed_body(image: bytes, audio: bytes) -> bytes:
    """Exactly what the seed API's client sends (no force_offload, no sampling)."""
    return json.dumps({"image_base64": base64.b64encode(image).decode(),
                       "audio_base64": base64.b64encode(audio).decode(), "width": SIZE, "height": SIZE,
                       "provider": "runpod", "push_to_s3": False, "dry_run": False}).encode()


class LiveWatcher(threading.Thread):
    """Polls the playlist; when it first lists a segment, records how many pieces were done then
    (read after the playlist, so a piece that is not done then was not done when the segment was)."""

    def __init__(self, base_url: str, job_id: str) -> None:
        super().__init__(daemon=True)
        self.base_url, self.job_id = base_url, job_id
        self.first_segment_sec: float | None = None
        self.pieces_done_then: int | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with urllib.request.urlopen(f"{self.base_url}/jobs/{self.job_id}/hls/index.m3u8", timeout=30) as got:
                    text = got.read().decode()
            except urllib.error.HTTPError:  # 503 until the recording is cut
                text = ""
            if "seg-" in text:
                _, job = call("GET", f"{self.base_url}/jobs/{self.job_id}")
                self.pieces_done_then = int(job["chunks_done"])
                self.first_segment_sec = float(text.split("#EXTINF:", 1)[1].split(",", 1)[0])
                return
            time.sleep(0.05)


def test_seed_job_loads_the_model_once_and_streams_from_the_first_clip(tmp_path: Path, portrait: bytes) -> None:
    model_dir = build_tiny_model_dir(tmp_path / "models")
    samples = speech_like(6.0, pause_every_sec=2.0, seed=6)
    generator_env = {"MODEL_DIR": str(model_dir), "DEVICE": "cpu", "INFINITETALK_PRESET": "fast",
                     "INFINITETALK_SIZE": f"{SIZE}x{SIZE}", "INFINITETALK_CLIP_FRAMES": str(CLIP_FRAMES)}
    # One lane of pieces of about 2 s: 45 frames (3 clips) first, then 48-frame pieces (4 clips).
    with Stack(tmp_path / "stack", generators=1, backend="infinitetalk", generator_env=generator_env,
               gateway_env={"CHUNK_TARGET_SEC": "2", "CLIP_FRAMES": str(CLIP_FRAMES)}) as stack:
        body = seed_body(portrait, encode_audio(samples, 16_000, "wav"))
        status, reply = call("POST", f"{stack.rest_url}/jobs", body)
        assert status == 202, reply
        job_id = reply["id"]
        watcher = LiveWatcher(stack.rest_url, job_id)
        watcher.start()
        state = wait_for_job(stack.rest_url, job_id, timeout=900)
        watcher.stop.set()
        watcher.join(10)
        assert state["status"] == "COMPLETED", state.get("error")
        assert state["chunk_count"] >= 3, state
        path = tmp_path / "out.mp4"
        path.write_bytes(download(stack.rest_url, job_id))
        log = stack.generator_services[0].log_path.read_text()
    assert log.count("InfiniteTalk DiT loaded") == 1, "the model was loaded more than once"
    # The first segment was one clip, listed while the first piece was still rendering.
    assert watcher.pieces_done_then == 0
    assert watcher.first_segment_sec == pytest.approx(CLIP_FRAMES / 25)
    check_video(path, samples, SIZE)
