"""Orchestration overhead: a 10-minute job on N preview generators with a fixed artificial cost.

Every generator takes COST seconds per second of audio, rendering included (PREVIEW_COST_PER_AUDIO_SEC), and renders
tiny frames, so generation cost is known exactly and the ideal makespan is total cost / N. The
difference between the measured wall time (upload to COMPLETED) and that ideal is what the
splitting, dispatch, transfers and stitching add. `accepted_s` is when the upload was answered
(the split has produced its first chunk), `generated_s` when the last frame was generated.

    python bench/bench_orchestration.py [--generators 1 2 4] [--cost 0.5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.table import print_table  # noqa: E402
from scripts.stack import Stack  # noqa: E402
from tests.helpers.audio import encode_audio, speech_like  # noqa: E402
from tests.helpers.rest import call, submit_multipart  # noqa: E402

DURATION_SEC = 600.0
SIZE = 64  # frames this small cost next to nothing to encode, so the artificial cost dominates


def measure(generators: int, cost: float, chunk_target_sec: float, audio: bytes, image: bytes,
            workdir: Path) -> dict[str, object]:
    stack = Stack(workdir / f"n{generators}", generators=generators,
                  generator_env={"PREVIEW_COST_PER_AUDIO_SEC": str(cost)},
                  gateway_env={"CHUNK_TARGET_SEC": str(chunk_target_sec)})
    with stack:
        started = time.monotonic()
        job_id = submit_multipart(stack.rest_url, image, audio, width=SIZE, height=SIZE)
        accepted = time.monotonic() - started
        generated = None
        deadline = started + DURATION_SEC * cost * 2 + 300
        while True:
            _, state = call("GET", f"{stack.rest_url}/jobs/{job_id}?include_video=false")
            if generated is None and state.get("frames_total") and state["frames_done"] == state["frames_total"]:
                generated = time.monotonic() - started
            if state["status"] not in ("IN_QUEUE", "RUNNING") or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        wall = time.monotonic() - started
    if state["status"] != "COMPLETED":
        raise RuntimeError(f"job ended {state['status']}: {state.get('error')}")
    ideal = DURATION_SEC * cost / generators
    return {
        "generators": generators,
        "chunks": state.get("chunk_count"),
        "ideal_s": ideal,
        "accepted_s": accepted,
        "generated_s": generated,
        "wall_s": wall,
        "overhead_s": wall - ideal,
        "overhead_%": 100.0 * (wall - ideal) / ideal,
    }


def run(generators: tuple[int, ...] = (1, 2, 4), cost: float = 0.5, chunk_target_sec: float = 10.0,
        ) -> list[dict[str, object]]:
    audio = encode_audio(speech_like(DURATION_SEC, seed=7), 16_000, "wav")
    image = (ROOT / "assets" / "sample" / "portrait.png").read_bytes()
    with tempfile.TemporaryDirectory(prefix="itk-bench-") as tmp:
        return [measure(n, cost, chunk_target_sec, audio, image, Path(tmp)) for n in generators]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--generators", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--cost", type=float, default=0.5, help="generator seconds per second of audio")
    parser.add_argument("--chunk-target-sec", type=float, default=10.0)
    args = parser.parse_args()
    rows = run(tuple(args.generators), args.cost, args.chunk_target_sec)
    print_table(f"Orchestration overhead, 10-minute job, {args.cost:g} s of generation per audio second "
                f"(goal: < 5 % at 4 generators)", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
