"""The quality report: what it costs to compute, and what it adds to a job's time to COMPLETED.

1. Compute time per minute of video: the preview backend's output for the sample portrait at the
   default size (480x832), 60 s of the sample speech, assessed in one process (one core), as the
   stitcher's report worker does it.
2. Overhead on COMPLETED: the stack (separate processes, two preview generators at COST seconds per
   audio second) runs JOBS jobs of JOB_SEC each, back to back, each submitted the moment the one
   before completed, so every report after the first is computed while the next job renders and
   stitches. Time from submission to COMPLETED, QUALITY_REPORT on against off (the first job, whose
   time no report can touch, is left out of the means).

    python bench/bench_quality.py [--jobs 3] [--job-sec 60] [--cost 0.5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.table import print_table  # noqa: E402
from itk_common.constants import frames_for_samples  # noqa: E402
from itk_common.quality.assess import assess  # noqa: E402
from itk_common.quality.faces import FaceModels  # noqa: E402
from itk_common.wav import decode_wav, encode_wav  # noqa: E402
from itk_generator.backend import ChunkJob  # noqa: E402
from itk_generator.preview.backend import PreviewBackend  # noqa: E402
from scripts.stack import Stack  # noqa: E402
from tests.helpers.rest import call, submit_multipart  # noqa: E402

PORTRAIT = ROOT / "assets" / "sample" / "portrait.png"
SPEECH = ROOT / "assets" / "sample" / "speech.wav"
WIDTH, HEIGHT = 480, 832


def speech(seconds: float) -> np.ndarray:
    """The sample recording repeated to `seconds`."""
    once = decode_wav(SPEECH.read_bytes())
    repeats = int(np.ceil(seconds * 16_000 / len(once)))
    return np.tile(once, repeats)[: round(seconds * 16_000)]


def compute_cost(seconds: float, workdir: Path) -> list[dict[str, object]]:
    audio = speech(seconds)
    video = workdir / "preview.mp4"
    job = ChunkJob("bench", 0, PORTRAIT.read_bytes(), audio, frames_for_samples(len(audio)), WIDTH, HEIGHT)
    PreviewBackend().render(job, video, lambda event: None, threading.Event())
    wav = workdir / "speech.wav"
    wav.write_bytes(encode_wav(audio))
    models = FaceModels()
    started = time.perf_counter()
    report = assess(video, audio=wav, reference=PORTRAIT.read_bytes(), models=models)
    took = time.perf_counter() - started
    return [{
        "video": f"{seconds:.0f} s {WIDTH}x{HEIGHT}",
        "segments": len(report.segments),
        "faces_%": 100 * report.face_share,
        "lag": report.sync_lag_frames,
        "corr": report.sync_correlation,
        "identity": report.identity_distance,
        "face_dE": report.face_colour_delta_e,
        "compute_s": took,
        "s per min of video": took * 60 / seconds,
        "x real time": took / seconds,
    }]


def run_jobs(quality: bool, jobs: int, job_sec: float, cost: float, workdir: Path) -> list[dict[str, float]]:
    audio = encode_wav(speech(job_sec))
    image = PORTRAIT.read_bytes()
    stack = Stack(workdir / ("on" if quality else "off"), generators=2,
                  generator_env={"PREVIEW_COST_PER_AUDIO_SEC": str(cost)},
                  gateway_env={"QUALITY_REPORT": "true" if quality else "false", "CHUNK_TARGET_SEC": "15"})
    times = []
    with stack:
        ids = []
        for _ in range(jobs):
            started = time.monotonic()
            job_id = submit_multipart(stack.rest_url, image, audio, width=WIDTH, height=HEIGHT)
            while True:
                _, state = call("GET", f"{stack.rest_url}/jobs/{job_id}?include_video=false")
                if state["status"] not in ("IN_QUEUE", "RUNNING"):
                    break
                time.sleep(0.05)
            if state["status"] != "COMPLETED":
                raise RuntimeError(f"job ended {state['status']}: {state.get('error')}")
            times.append({"to_completed_s": time.monotonic() - started})
            ids.append(job_id)
        for job_id, row in zip(ids, times, strict=True):
            deadline = time.monotonic() + 600
            while True:
                _, state = call("GET", f"{stack.rest_url}/jobs/{job_id}?include_video=false")
                report = state.get("quality") or {}
                if report.get("state") != "pending" or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            row["report_s"] = float(report.get("compute_sec", 0.0))
    return times


def overhead(jobs: int, job_sec: float, cost: float, workdir: Path) -> list[dict[str, object]]:
    rows = []
    means = {}
    for quality in (False, True):
        times = run_jobs(quality, jobs, job_sec, cost, workdir)
        later = [row["to_completed_s"] for row in times[1:]]
        means[quality] = float(np.mean(later))
        rows.append({
            "QUALITY_REPORT": "on" if quality else "off",
            "jobs": jobs,
            "to COMPLETED each (s)": " ".join(f"{row['to_completed_s']:.1f}" for row in times),
            "mean of jobs 2.. (s)": means[quality],
            "report each (s)": " ".join(f"{row['report_s']:.1f}" for row in times) if quality else "-",
        })
    rows[1]["overhead_%"] = 100 * (means[True] - means[False]) / means[False]
    rows[0]["overhead_%"] = 0.0
    return rows


def run(jobs: int = 3, job_sec: float = 60.0, cost: float = 0.5) -> tuple[list, list]:
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as folder:
        workdir = Path(folder)
        return compute_cost(job_sec, workdir), overhead(jobs, job_sec, cost, workdir)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3)
    parser.add_argument("--job-sec", type=float, default=60.0)
    parser.add_argument("--cost", type=float, default=0.5)
    args = parser.parse_args()
    cost_rows, overhead_rows = run(args.jobs, args.job_sec, args.cost)
    print_table("Quality report: compute time (one process)", cost_rows)
    print_table(f"Quality report: time to COMPLETED, {args.jobs} jobs of {args.job_sec:.0f} s back to back, "
                f"2 preview generators at {args.cost} s per audio second", overhead_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
