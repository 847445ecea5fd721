"""Lanes and orchestration overhead: a 10-minute job on N preview generators with a fixed artificial cost.

The gateway plans one lane (continuous stream) per generator; a lane's pieces run one after the
other, so the job takes as long as its longest lane. The table shows the lanes and seams it planned,
where the seams fall and how long the pauses they lie in are (against the recording's median and
longest pause), and the makespan against the ideal (total generation cost / N).

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

import numpy as np  # noqa: E402

from bench.table import print_table  # noqa: E402
from itk_common.constants import FPS  # noqa: E402
from itk_splitter.silence import frame_levels_db, min_silence_frames, silent_runs  # noqa: E402
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
    lanes, seams = state.get("lanes", []), state.get("seams", [])
    longest_lane = max((lane["end_sec"] - lane["start_sec"] for lane in lanes), default=DURATION_SEC)
    return {
        "generators": generators,
        "lanes": len(lanes),
        "seams": len(seams),
        "seams at (s)": " ".join(f"{seam['time_sec']:.1f}" for seam in seams) or "-",
        "seam pauses (s)": " ".join(f"{seam['pause_end_sec'] - seam['pause_start_sec']:.2f}" for seam in seams) or "-",
        "chunks": state.get("chunk_count"),
        "longest lane_s": longest_lane,
        "ideal_s": ideal,
        "accepted_s": accepted,
        "generated_s": generated,
        "wall_s": wall,
        "overhead_s": wall - ideal,
        "overhead_%": 100.0 * (wall - ideal) / ideal,
    }


def pause_summary(samples: np.ndarray) -> str:
    """The recording's pauses as the splitter finds them: median and longest length."""
    levels = frame_levels_db(samples)
    pauses = silent_runs(levels, -40.0, min_silence_frames(0.5))
    lengths = [(end - start) / FPS for start, end in pauses]
    return f"{len(lengths)} pauses, median {np.median(lengths):.2f} s, longest {max(lengths):.2f} s"


def run(generators: tuple[int, ...] = (1, 2, 4), cost: float = 0.5, chunk_target_sec: float = 10.0,
        ) -> list[dict[str, object]]:
    samples = speech_like(DURATION_SEC, seed=7)
    print(f"Recording: {DURATION_SEC / 60:.0f} minutes of speech-like audio; {pause_summary(samples)}", flush=True)
    audio = encode_audio(samples, 16_000, "wav")
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
    print_table(f"Lanes and orchestration overhead, 10-minute job, {args.cost:g} s of generation per audio second "
                f"(goal: < 5 % at 4 generators)", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
