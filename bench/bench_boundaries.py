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

A third table shows what the encoder's keyframe ramp (itk_common.video.keyframe_ramp) buys and
costs: one lane of the same speech rendered as two 20 s pieces, joined, with the ramp and with
plain CRF encoding; the step into the second piece's first frame against the in-lane p99, and the
size of the video.

    python bench/bench_boundaries.py [--size 256] [--duration 600]
"""

from __future__ import annotations

import argparse
import base64
import math
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
from itk_generator.preview import mouth_box  # noqa: E402
from itk_generator.preview.motion import SWAY_MAX_PX  # noqa: E402
from itk_splitter.options import SplitOptions  # noqa: E402
from itk_splitter.silence import frame_levels_db, min_silence_frames, silent_runs  # noqa: E402
from itk_splitter.split import split_audio  # noqa: E402
from scripts.stack import Stack  # noqa: E402
from tests.helpers.rest import submit_multipart, wait_for_job  # noqa: E402
from tests.helpers.speech import speech_recording  # noqa: E402

GENERATORS = 4
PORTRAIT = (ROOT / "assets" / "sample" / "portrait.png").read_bytes()
SILENCE_DB = SplitOptions().silence_threshold_db


def grey_steps(path: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(whole frame, outside the mouth): steps[i] is the mean absolute difference (grey levels)
    between frames i and i + 1. Outside the mouth (its box widened by the sway) only the sway
    and the encoding change a frame, so a step there that the mouth's own motion cannot explain
    is the encoder's."""
    x0, y0, x1, y1 = mouth_box(PORTRAIT, size, size)
    margin = math.ceil(SWAY_MAX_PX) + 2
    whole: list[float] = []
    outside: list[float] = []
    previous = None
    for frame in read_frames(path):
        grey = frame.astype(np.float32).mean(axis=2)
        if previous is not None:
            change = np.abs(grey - previous)
            whole.append(float(change.mean()))
            change[max(0, y0 - margin):y1 + margin, max(0, x0 - margin):x1 + margin] = np.nan
            outside.append(float(np.nanmean(change)))
        previous = grey
    return np.array(whole), np.array(outside)


def render(wav: bytes, size: int, workdir: Path) -> tuple[dict, Path, float]:
    image = PORTRAIT
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
        steps, outside = grey_steps(video, size)
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
    longest_gap = max((end - start for start, end in silent_runs(levels, SILENCE_DB, 1)), default=0) / FPS
    print(f"Recording: {duration_sec / 60:.0f} min of espeak-ng speech, longest silence {longest_gap:.2f} s, "
          f"{len(split.silences)} pauses of 0.5 s or more; {len(state['lanes'])} lanes at {size}x{size}, "
          f"{sum(seam.in_voiced_speech for seam in split.seams)} seams in voiced speech; job {wall:.0f} s", flush=True)
    summary = []
    for region, series in (("whole frame", steps), ("outside the mouth", outside)):
        inside = np.delete(series, sorted(excluded))
        limit = float(np.percentile(inside, 99))
        at = series[[f - 1 for f in boundaries]]
        summary.append({
            "region": region,
            "piece boundaries": len(boundaries),
            "boundary step median": float(np.median(at)) if len(at) else None,
            "boundary step max": float(at.max()) if len(at) else None,
            "boundaries above p99": int((at > limit).sum()),
            "in-lane median": float(np.median(inside)),
            "in-lane p99": limit,
            "in-lane max": float(inside.max()),
        })
    return seam_rows, summary


def ramp_comparison(size: int = 256, piece_frames: int = 500) -> list[dict[str, object]]:
    """One lane as two preview pieces, stitched, encoded with and without the keyframe ramp."""
    import threading

    import itk_common.video as video
    from itk_common.constants import frames_for_samples
    from itk_common.wav import encode_wav
    from itk_generator.backend import ChunkJob
    from itk_generator.preview import PreviewBackend
    from itk_stitcher import StitchSpec, stitch

    samples = split_audio(speech_recording(2 * piece_frames / FPS, seed=2), SplitOptions()).samples
    image = PORTRAIT
    backend = PreviewBackend()
    backend.load()
    ramp = video.keyframe_ramp
    rows: list[dict[str, object]] = []
    try:
        for name, zones in (("plain CRF 20", lambda _frames: ""), ("CRF 20 with the keyframe ramp", ramp)):
            video.keyframe_ramp = zones
            with tempfile.TemporaryDirectory(prefix="itk-ramp-") as tmp:
                workdir, parts, motion = Path(tmp), {}, None
                for index in range(2):
                    first = index * piece_frames * SAMPLES_PER_FRAME
                    audio = samples[first:first + piece_frames * SAMPLES_PER_FRAME]
                    job = ChunkJob(job_id="ramp", chunk_index=index, image=image, audio=audio,
                                   frame_count=frames_for_samples(len(audio)), width=size, height=size, seed=3,
                                   lane=0, lane_first_frame=index * piece_frames, motion=motion)
                    parts[index] = workdir / f"part-{index}.mp4"
                    motion = backend.render(job, parts[index], lambda _event: None, threading.Event()).motion
                (workdir / "audio.wav").write_bytes(encode_wav(samples))
                spec = StitchSpec(fps=FPS, width=size, height=size, frame_counts=(piece_frames, piece_frames), seams={})
                stitch(parts, workdir / "audio.wav", spec, workdir / "out.mp4", workdir=workdir)
                steps, outside = grey_steps(workdir / "out.mp4", size)
                row: dict[str, object] = {"encoding": name}
                for region, series in (("", steps), (" outside mouth", outside)):
                    inside = np.delete(series, [piece_frames - 1])
                    row[f"step into piece 2{region}"] = float(series[piece_frames - 1])
                    row[f"in-lane p99{region}"] = float(np.percentile(inside, 99))
                row["video KiB"] = (workdir / "out.mp4").stat().st_size / 1024
                rows.append(row)
    finally:
        video.keyframe_ramp = ramp
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--duration", type=float, default=600.0)
    args = parser.parse_args()
    seams, summary = run(args.size, args.duration)
    print_table("Seams, 4 lanes (preview): the silence each lies in and the largest step across its fade", seams)
    print_table("Steps between consecutive frames in the final video, grey levels", summary)
    print_table("One lane in two 20 s pieces: the step into the second piece, grey levels", ramp_comparison(args.size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
