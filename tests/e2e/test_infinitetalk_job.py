"""A job through the gateway with generators running the real InfiniteTalk backend on a tiny model.

The model directory is built at test time in the published layout and file formats (random
weights, tiny sizes) and loaded by the generators through the same loaders as the real weights.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from itk_generator.infinitetalk.tiny import build_tiny_model_dir
from scripts.stack import Stack
from tests.e2e.checks import check_video
from tests.helpers.audio import encode_audio, speech_like
from tests.helpers.rest import download, submit_multipart, wait_for_job
from tests.helpers.video import write_video

pytestmark = pytest.mark.e2e
SIZE = 32


def test_job_on_tiny_infinitetalk_model(tmp_path: Path, portrait: bytes) -> None:
    model_dir = build_tiny_model_dir(tmp_path / "models")
    samples = speech_like(5.0, pause_every_sec=2.0, seed=4)
    generator_env = {
        "MODEL_DIR": str(model_dir),
        "DEVICE": "cpu",
        "INFINITETALK_PRESET": "fast",
        # A 32x32 generation with 21-frame clips keeps two CPU cores busy for seconds, not hours;
        # the clip/motion-frame structure is InfiniteTalk's own.
        "INFINITETALK_SIZE": f"{SIZE}x{SIZE}",
        "INFINITETALK_CLIP_FRAMES": "21",
    }
    with Stack(tmp_path / "stack", generators=2, backend="infinitetalk", generator_env=generator_env,
               gateway_env={"CHUNK_TARGET_SEC": "2.5", "CLIP_FRAMES": "21"}) as stack:
        job_id = submit_multipart(stack.rest_url, portrait, encode_audio(samples, 16_000, "wav"),
                                  width=SIZE, height=SIZE, prompt="A woman is talking.", seed=42)
        state = wait_for_job(stack.rest_url, job_id, timeout=600)
        assert state["status"] == "COMPLETED", state.get("error")
        # One lane (the recording is shorter than two MIN_LANE_SEC) cut into two pieces on the
        # 21-frame clip grid: the second piece continues from the first one's motion frames.
        assert state["lane_count"] == 1 and state["chunk_count"] >= 2
        path = tmp_path / "out.mp4"
        path.write_bytes(download(stack.rest_url, job_id))
        logs = "".join(g.log_path.read_text() for g in stack.generator_services)
        assert "backend infinitetalk loaded" in logs

        # Dubbing: a 30 fps source video shorter than the audio (one chunk of two clips, kept short:
        # per-chunk spans across seams are covered on the preview backend, tests/gateway).
        video = write_video(tmp_path / "source.mp4", 0.8, fps=30, width=48, height=48)
        dub_samples = speech_like(1.2, pause_every_sec=10.0, seed=5)
        dub_id = submit_multipart(stack.rest_url, video.read_bytes(), encode_audio(dub_samples, 16_000, "wav"),
                                  width=SIZE, height=SIZE, seed=7, video_extend="pingpong")
        state = wait_for_job(stack.rest_url, dub_id, timeout=600)
        assert state["status"] == "COMPLETED", state.get("error")
        dubbed = tmp_path / "dub.mp4"
        dubbed.write_bytes(download(stack.rest_url, dub_id))
    check_video(path, samples, SIZE)
    check_video(dubbed, dub_samples, SIZE)
