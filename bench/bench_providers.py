"""Remote GPU provider pools: what the generator adds to a provider's work, and parallel chunks.

1. Conversion: a provider's video of a 45 s chunk at 832x480 (its own frame rate, 4n+1 frames)
   re-timed to the chunk's 1125 frames at 25 fps, decode + scale + H.264 encode, one generator.
2. Pool: a 3-minute job in 15 s chunks on one RunPod generator against the fake RunPod of
   tests/providers (each provider job takes RUN_SEC, whatever its length), with 1, 2, 4 and 8 jobs
   in flight (GENERATOR_CAPACITY). The ideal is ceil(chunks / in flight) x RUN_SEC; the overhead is
   what splitting, submitting, polling, downloading, converting and stitching add.

    python bench/bench_providers.py
"""

from __future__ import annotations

import math
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.table import print_table  # noqa: E402
from itk_common.constants import FPS  # noqa: E402
from itk_common.grpc_server import wait_for_serving  # noqa: E402
from itk_common.video import write_mp4  # noqa: E402
from itk_gateway.config import Settings  # noqa: E402
from itk_gateway.server import build_gateway  # noqa: E402
from itk_generator.providers.policy import CallPolicy  # noqa: E402
from itk_generator.providers.retime import retime  # noqa: E402
from itk_generator.server import start_server as start_generator_server  # noqa: E402
from tests.helpers.audio import encode_audio, speech_like  # noqa: E402
from tests.helpers.rest import submit_multipart, wait_for_job  # noqa: E402
from tests.helpers.services import HOST, start_backend_services  # noqa: E402
from tests.providers.conftest import build_backend, start_fake  # noqa: E402

CHUNK_SEC = 45.0
WIDTH, HEIGHT = 832, 480
JOB_SEC = 180.0
POOL_CHUNK_SEC = 15.0
RUN_SEC = 3.0
SIZE = 64


def provider_video(path: Path, fps: int) -> int:
    """4n+1 frames covering CHUNK_SEC at `fps`, with moving content so the encoder has work."""
    frames = 4 * math.ceil((math.ceil(CHUNK_SEC * fps) - 1) / 4) + 1
    ramp = np.linspace(0, 255, WIDTH, dtype=np.float32)[None, :, None]
    write_mp4(path, (np.broadcast_to((ramp + 3 * j) % 256, (HEIGHT, WIDTH, 3)).astype(np.uint8)
                     for j in range(frames)), WIDTH, HEIGHT, fps)
    return frames


def conversion(workdir: Path) -> list[dict[str, object]]:
    rows = []
    for fps in (16, 24, 30):
        source = workdir / f"provider-{fps}.mp4"
        frames = provider_video(source, fps)
        started = time.perf_counter()
        retime(source, workdir / "chunk.mp4", round(CHUNK_SEC * FPS), WIDTH, HEIGHT, max_pad_sec=1.0,
               cancelled=threading.Event())
        seconds = time.perf_counter() - started
        rows.append({"provider video": f"{frames} frames at {fps} fps", "out frames": round(CHUNK_SEC * FPS),
                     "seconds": seconds, "x real time": CHUNK_SEC / seconds})
    return rows


def pool(workdir: Path, in_flight: tuple[int, ...] = (1, 2, 4, 8)) -> list[dict[str, object]]:
    image = (ROOT / "assets" / "sample" / "portrait.png").read_bytes()
    audio = encode_audio(speech_like(JOB_SEC, seed=9), 16_000, "wav")
    services = start_backend_services(workdir / "backends", generators=1)
    fake = start_fake("runpod", queue_sec=0.0, run_sec=RUN_SEC)
    policy = CallPolicy(poll_interval_sec=0.1, retry_backoff_sec=0.1)
    base = Settings(port=0, grpc_port=0, splitter_target=services.splitter_target,
                    stitcher_target=services.stitcher_target, generator_targets=services.generator_targets,
                    chunk_target_sec=POOL_CHUNK_SEC, resolve_interval_sec=0.5, max_concurrent_chunks=16)
    rows = []
    try:
        for capacity in in_flight:
            (workdir / f"gen-{capacity}").mkdir()
            server, port = start_generator_server(HOST, 0, backend=build_backend("runpod", fake, policy=policy),
                                                  capacity=capacity, temp_dir=workdir / f"gen-{capacity}")
            wait_for_serving(f"{HOST}:{port}", timeout=30)
            gateway = build_gateway(replace(base, data_dir=workdir / f"gw-{capacity}",
                                            generator_pools={"runpod": [f"{HOST}:{port}"]}))
            gateway.start()
            try:
                fake.peak_in_flight = 0
                started = time.monotonic()
                job_id = submit_multipart(gateway.rest_url, image, audio, width=SIZE, height=SIZE, provider="runpod")
                final = wait_for_job(gateway.rest_url, job_id, timeout=600, poll=0.05)
                wall = time.monotonic() - started
            finally:
                gateway.stop()
                server.stop(0)
            if final["status"] != "COMPLETED":
                raise RuntimeError(f"job ended {final['status']}: {final.get('error')}")
            chunks = int(final["chunk_count"])
            ideal = math.ceil(chunks / capacity) * RUN_SEC
            rows.append({"in flight": capacity, "peak on provider": fake.peak_in_flight, "chunks": chunks,
                         "ideal_s": ideal, "wall_s": wall, "overhead_s": wall - ideal})
    finally:
        fake.stop()
        services.stop()
    return rows


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="itk-bench-providers-") as tmp:
        print_table(f"Provider video -> exact chunk frames, {CHUNK_SEC:.0f} s at {WIDTH}x{HEIGHT}",
                    conversion(Path(tmp)))
        print_table(f"Provider pool: {JOB_SEC:.0f} s job, {POOL_CHUNK_SEC:.0f} s chunks, {RUN_SEC:.0f} s per "
                    "provider job (fake RunPod)", pool(Path(tmp)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
