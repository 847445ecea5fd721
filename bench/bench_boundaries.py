"""Seams and piece boundaries in a finished video: where the seams fall and whether a viewer can find them.

A 10-minute recording of espeak-ng speech (its pauses, about 0.3 s, are all shorter than the
splitter's 0.5 s pause length) rendered by 4 preview generators as 4 lanes, through the whole
stack (gateway, splitter, generators, stitcher as processes). In the decoded final video, a
step is the mean absolute difference between consecutive frames in grey levels; the in-lane
steps are all those away from seams and piece boundaries. The first table lists the seams: the
silence each lies in (a pause, a shorter gap between words, or voiced speech) and its length,
the cross-faded frames and whether every frame the fade touches is silent, and the largest step
across the fade. The second compares the steps at piece boundaries (where a lane's next piece,
a separately encoded part, starts) and at seams with the in-lane median and 99th percentile.

    python bench/bench_boundaries.py [--size 256] [--duration 600]
"""

from __future__ import annotations

import argparse
import base64
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.table import print_table  # noqa: E402
from itk_common.constants import FPS, SAMPLES_PER_FRAME  # noqa: E402
from itk_common.video import read_frames  # noqa: E402
from itk_splitter.options import SplitOptions  # noqa: E402
from itk_splitter.silence import frame_levels_db, min_silence_frames, silent_runs  # noqa: E402
from itk_splitter.split import split_audio  # noqa: E402
from scripts.stack import Stack  # noqa: E402
from tests.helpers.rest import submit_multipart, wait_for_job  # noqa: E402
from tests.helpers.speech import speech_recording  # noqa: E402

GENERATORS = 4
SILENCE_DB = SplitOptions().silence_threshold_db


def grey_steps(path: Path) -> np.ndarray:
    """steps[i]: mean absolute difference (grey levels) between frames i and i + 1."""
    steps: list[float] = []
    previous = None
    for frame in read_frames(path):
        grey = frame.astype(np.float32).mean(axis=2)
        if previous is not None:
            steps.append(float(np.abs(grey - previous).mean()))
        previous = grey
    return np.array(steps)


def render(wav: bytes, size: int, workdir: Path) -> tuple[dict, Path, float]:
    image = (ROOT / "assets" / "sample" / "portrait.png").read_bytes()
    with Stack(workdir / "stack", generators=GENERATORS) as stack:
        started = time.monotonic()
        job_id = submit_multipart(stack.rest_url, image, wav, width=size, height=size, lanes=GENERATORS)
        state = wait_for_job(stack.rest_url, job_id, timeout=3600, poll=1.0)
        wall = time.monotonic() - started
    if state["status"] != "COMPLETED":
        raise RuntimeError(f"job ended {state['status']}: {state.get('error')}")
    video = workdir / "job.mp4"
    video.write_bytes(base64.b64decode(state["video_base64"]))
    return state, video, wall


def run(size: int = 256, duration_sec: float = 600.0) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    wav = speech_recording(duration_sec, seed=1)
    # The plan the gateway asks the splitter for (its defaults, 4 lanes); checked against the job's.
    split = split_audio(wav, SplitOptions(lane_count=GENERATORS, audio_context_sec=2.0))
    levels = frame_levels_db(split.samples)
    min_pause = min_silence_frames(SplitOptions().min_silence_sec)
    with tempfile.TemporaryDirectory(prefix="itk-boundaries-") as tmp:
        state, video, wall = render(wav, size, Path(tmp))
        steps = grey_steps(video)
    if [round(seam["time_sec"], 2) for seam in state["seams"]] != [round(s.sample / 16_000, 2) for s in split.seams]:
        raise RuntimeError("the job's seams differ from the splitter's plan")
    # steps[f - 1] is the change into frame f, the first frame of a piece or of a lane.
    boundaries = [chunk.start_sample // SAMPLES_PER_FRAME for chunk in split.chunks if chunk.lane_first_frame > 0]
    excluded = {f - 1 for f in boundaries}
    for seam in split.seams:
        excluded.update(range(seam.frame - seam.fade_frames - 2, seam.frame + seam.fade_frames + 1))
    in_lane = np.delete(steps, sorted(excluded))
    p99 = float(np.percentile(in_lane, 99))

    seam_rows: list[dict[str, object]] = []
    for seam in split.seams:
        kind = "voiced speech" if seam.in_voiced_speech else (
            "pause" if seam.pause[1] - seam.pause[0] >= min_pause else "gap between words")
        touched = range(seam.frame - max(seam.fade_frames, 1), seam.frame + max(seam.fade_frames, 1))
        across = steps[seam.frame - seam.fade_frames - 1: seam.frame + seam.fade_frames]
        seam_rows.append({
            "seam at (s)": seam.frame / FPS,
            "lies in": kind,
            "silence (s)": 0.0 if seam.pause is None else (seam.pause[1] - seam.pause[0]) / FPS,
            "fade frames a side": seam.fade_frames,
            "faded frames silent": all(levels[f] < SILENCE_DB for f in touched),
            "largest step across": float(across.max()),
            "vs in-lane p99": float(across.max()) / p99,
        })
    at_boundaries = steps[[f - 1 for f in boundaries]]
    longest_gap = max((end - start for start, end in silent_runs(levels, SILENCE_DB, 1)), default=0) / FPS
    summary = [{
        "recording": f"{duration_sec / 60:.0f} min espeak-ng, longest silence {longest_gap:.2f} s, "
                     f"{len(split.silences)} pauses >= 0.5 s",
        "size": f"{size}x{size}",
        "lanes": len(state["lanes"]),
        "seams in voiced speech": sum(seam.in_voiced_speech for seam in split.seams),
        "piece boundaries": len(boundaries),
        "boundary step median": float(np.median(at_boundaries)) if boundaries else None,
        "boundary step max": float(at_boundaries.max()) if boundaries else None,
        "boundaries above p99": int((at_boundaries > p99).sum()),
        "in-lane median": float(np.median(in_lane)),
        "in-lane p99": p99,
        "job wall (s)": wall,
    }]
    return seam_rows, summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--duration", type=float, default=600.0)
    args = parser.parse_args()
    seams, summary = run(args.size, args.duration)
    print_table("Seams, 4 lanes (preview): the silence each lies in and the largest step across its fade", seams)
    print_table("Steps between consecutive frames in the final video, grey levels", summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
