"""Seam softening: how big the jump between two lanes is with and without the cross-fade.

Two lanes of a speech-like recording rendered by the preview backend (the portrait sways; the
second lane starts still, from the portrait, as every lane does), stitched with the seam
cross-faded over 0 (a hard cut) and several frame counts on each side. The table shows the
largest change between consecutive frames near the seam (mean absolute difference in grey
levels) against the largest such change inside the lanes, where the motion is continuous, and
whether the lip-sync check (mouth motion best correlated with loudness at lag 0) still holds.

    python bench/bench_seams.py [--lane-sec 10] [--fades 0 3 6 10]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.table import print_table  # noqa: E402
from itk_common.constants import FPS, SAMPLES_PER_FRAME, frames_for_samples  # noqa: E402
from itk_common.video import read_frames  # noqa: E402
from itk_common.wav import encode_wav  # noqa: E402
from itk_generator.backend import ChunkJob  # noqa: E402
from itk_generator.preview import PreviewBackend, mouth_box  # noqa: E402
from itk_generator.preview.mouth import mouth_openness  # noqa: E402
from itk_stitcher import StitchSpec, stitch  # noqa: E402
from tests.helpers.audio import speech_like, speech_pauses  # noqa: E402
from tests.helpers.sync import best_lag, mouth_openness_series  # noqa: E402

SIZE = 256
SEED = 11
NEAR_SEAM = 15  # frames on each side of the seam examined for the jump


def render_lanes(samples: np.ndarray, seam_frame: int, workdir: Path) -> dict[int, Path]:
    """Lane 0 = frames [0, seam), lane 1 = [seam, end), each one piece, rendered by the preview."""
    image = (ROOT / "assets" / "sample" / "portrait.png").read_bytes()
    backend = PreviewBackend()
    backend.load()
    parts: dict[int, Path] = {}
    bounds = [(0, seam_frame * SAMPLES_PER_FRAME), (seam_frame * SAMPLES_PER_FRAME, len(samples))]
    for lane, (start, end) in enumerate(bounds):
        audio = samples[start:end]
        job = ChunkJob(job_id="seams", chunk_index=lane, image=image, audio=audio,
                       frame_count=frames_for_samples(len(audio)), width=SIZE, height=SIZE, seed=SEED, lane=lane)
        parts[lane] = workdir / f"part-{lane}.mp4"
        backend.render(job, parts[lane], lambda _event: None, threading.Event())
    return parts


def frame_steps(path: Path) -> np.ndarray:
    """Mean absolute difference (grey levels) between each frame and the one before it."""
    frames = [frame.astype(np.float32) for frame in read_frames(path)]
    return np.array([np.abs(b - a).mean() for a, b in itertools.pairwise(frames)])


def run(lane_sec: float = 10.0, fades: tuple[int, ...] = (0, 3, 6, 10)) -> list[dict[str, object]]:
    duration = 2 * lane_sec
    samples = speech_like(duration, pause_every_sec=4.0, seed=SEED).astype(np.float32)
    # The seam in the middle of the pause nearest the middle, as the splitter puts it.
    pauses = speech_pauses(duration, pause_every_sec=4.0, seed=SEED)
    start, end = min(pauses, key=lambda p: abs((p[0] + p[1]) / 2 - len(samples) / 2))
    seam = (start + end) // 2 // SAMPLES_PER_FRAME
    pause_frames = ((end - start) // SAMPLES_PER_FRAME)
    image = (ROOT / "assets" / "sample" / "portrait.png").read_bytes()
    box = mouth_box(image, SIZE, SIZE)
    loudness = mouth_openness(samples, frames_for_samples(len(samples)))
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="itk-seams-") as tmp:
        workdir = Path(tmp)
        parts = render_lanes(samples, seam, workdir)
        audio = workdir / "audio.wav"
        audio.write_bytes(encode_wav(samples))
        counts = (seam, frames_for_samples(len(samples)) - seam)
        for fade in fades:
            out = workdir / f"stitched-{fade}.mp4"
            scratch = workdir / f"work-{fade}"
            scratch.mkdir()
            spec = StitchSpec(fps=FPS, width=SIZE, height=SIZE, frame_counts=counts, seams={1: fade})
            stitch(parts, audio, spec, out, workdir=scratch)
            steps = frame_steps(out)
            # steps[i] is the change from frame i to frame i + 1; the hard cut is steps[seam - 1].
            near = steps[seam - 1 - NEAR_SEAM: seam - 1 + NEAR_SEAM]
            inside = np.concatenate([steps[: seam - 1 - NEAR_SEAM], steps[seam - 1 + NEAR_SEAM:]])
            lag = best_lag(mouth_openness_series(out, box), loudness, max_lag=5)
            rows.append({"fade frames a side": fade, "pause frames": pause_frames,
                         "largest step at seam": float(near.max()), "largest step inside lanes": float(inside.max()),
                         "sync lag (frames)": lag})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lane-sec", type=float, default=10.0)
    parser.add_argument("--fades", type=int, nargs="+", default=[0, 3, 6, 10])
    args = parser.parse_args()
    print_table("Seam between two lanes (preview backend, 256x256): largest change between consecutive frames, "
                "grey levels", run(args.lane_sec, tuple(args.fades)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
