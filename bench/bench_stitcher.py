"""Stitcher speed: 14 parts of 45 s at 25 fps joined with the full recording muxed once as AAC.

Two cases: every part stream-copied, and one part from another encoder (MPEG-4 Part 2) that has to
be re-encoded. The parts are generated once (one H.264 part written by the generators' writer and
reused for every chunk, which is what stream copy sees anyway), so only the stitching is timed.

    python bench/bench_stitcher.py [--parts 14] [--part-sec 45] [--width 480] [--height 832]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.table import print_table  # noqa: E402
from itk_common.constants import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME  # noqa: E402
from itk_common.video import write_mp4  # noqa: E402
from itk_common.wav import encode_wav  # noqa: E402
from itk_stitcher import StitchSpec, stitch  # noqa: E402
from itk_stitcher.audio import EncodedAudio, encode_audio  # noqa: E402
from tests.stitcher.media import write_mpeg4  # noqa: E402


def portrait_frames(count: int, width: int, height: int):
    """A still, textured background with a moving block, roughly a talking head's bit rate."""
    rng = np.random.default_rng(0)
    background = rng.integers(40, 200, (height, width, 3), dtype=np.uint8)
    background = (background // 32 * 32).astype(np.uint8)
    for index in range(count):
        frame = background.copy()
        top = height // 2 + int(20 * np.sin(index / 3))
        frame[top : top + height // 10, width // 3 : 2 * width // 3] = (200, 60, 60)
        yield frame


def write_recording(path: Path, total_frames: int) -> float:
    """A recording whose length the splitter would plan as exactly `total_frames` frames."""
    samples = total_frames * SAMPLES_PER_FRAME - SAMPLES_PER_FRAME // 2
    t = np.arange(samples) / SAMPLE_RATE
    voice = 0.3 * np.sin(2 * np.pi * 140 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))
    path.write_bytes(encode_wav(voice))
    return samples / SAMPLE_RATE


def timed_stitch(workdir: Path, parts: dict[int, Path], audio: Path | EncodedAudio,
                 spec: StitchSpec) -> tuple[float, object]:
    scratch = workdir / "scratch"
    scratch.mkdir()
    try:
        started = time.perf_counter()
        report = stitch(parts, audio, spec, workdir / "out.mp4", workdir=scratch)
        return time.perf_counter() - started, report
    finally:
        shutil.rmtree(scratch)


def run(parts: int = 14, part_sec: float = 45.0, width: int = 480, height: int = 832) -> list[dict[str, object]]:
    frames_per_part = round(part_sec * FPS)
    spec = StitchSpec(fps=FPS, width=width, height=height, frame_counts=(frames_per_part,) * parts)
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="bench-stitcher-") as tmp:
        workdir = Path(tmp)
        h264 = workdir / "h264.mp4"
        write_mp4(h264, portrait_frames(frames_per_part, width, height), width, height)
        other = workdir / "mpeg4.mp4"
        write_mpeg4(other, portrait_frames(frames_per_part, width, height), width, height)
        audio = workdir / "speech.wav"
        audio_sec = write_recording(audio, spec.total_frames)
        copied = {index: h264 for index in range(parts)}
        # The service encodes the audio while parts are still being generated (it arrives first),
        # so after the last part only the remux is left: the third case.
        encoded = encode_audio(audio, workdir / "speech.m4a")
        cases = [
            ("all stream copy", copied, audio, "AAC encode included"),
            ("1 part re-encoded", {**copied, parts // 2: other}, audio, "AAC encode included"),
            ("all stream copy", copied, encoded, "encoded ahead (service)"),
        ]
        for name, case_parts, case_audio, audio_note in cases:
            seconds, report = timed_stitch(workdir, case_parts, case_audio, spec)
            rows.append({
                "case": name,
                "parts": f"{parts} x {part_sec:g} s",
                "size": f"{width}x{height}@{FPS}",
                "frames": report.frame_count,
                "audio": f"{audio_sec:.0f} s, {audio_note}",
                "copied": report.copied_parts,
                "reencoded": report.reencoded_parts,
                "output_MiB": report.video_size / 2**20,
                "stitch_s": seconds,
                "x_realtime": audio_sec / seconds,
            })
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", type=int, default=14)
    parser.add_argument("--part-sec", type=float, default=45.0)
    parser.add_argument("--width", type=int, default=480)
    parser.add_argument("--height", type=int, default=832)
    args = parser.parse_args()
    rows = run(args.parts, args.part_sec, args.width, args.height)
    print_table(f"Stitcher: {args.parts} parts of {args.part_sec:g} s", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
