"""Dubbing input cost on the gateway: normalising a source video once (25 fps, upright, long
side capped) and cutting each chunk's span of it, forward and ping-pong.

The source is a phone-like recording: 30 fps H.264 with rotation metadata, a textured still
background with a moving block (roughly a talking head's bit rate). Only the gateway's work is
timed, not writing the source.

    python bench/bench_dubbing.py [--seconds 60] [--width 1920] [--height 1080] [--chunk-sec 45]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.table import print_table  # noqa: E402
from itk_common.constants import FPS  # noqa: E402
from itk_common.source_video import ExtendMode, cut_span, normalize  # noqa: E402

SOURCE_FPS = 30


def write_source(path: Path, seconds: float, width: int, height: int) -> None:
    rng = np.random.default_rng(0)
    background = (rng.integers(40, 200, (height, width, 3), dtype=np.uint8) // 32 * 32).astype(np.uint8)
    with av.open(str(path), "w", format="mp4") as output:
        stream = output.add_stream("libx264", rate=SOURCE_FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "23"}
        stream.set_display_rotation(-90)
        for index in range(int(seconds * SOURCE_FPS)):
            frame = background.copy()
            top = height // 2 + int(height / 8 * np.sin(index / 5))
            frame[top : top + height // 6, width // 3 : width // 2] = 230
            video = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video.pts, video.time_base = index, Fraction(1, SOURCE_FPS)
            for packet in stream.encode(video):
                output.mux(packet)
        for packet in stream.encode(None):
            output.mux(packet)


def run(seconds: float = 60.0, width: int = 1920, height: int = 1080, chunk_sec: float = 45.0,
        max_side: int = 1280) -> list[dict[str, object]]:
    with tempfile.TemporaryDirectory(prefix="itk-bench-dub-") as folder:
        work = Path(folder)
        source = work / "source.mp4"
        write_source(source, seconds, width, height)
        started = time.perf_counter()
        normalized = normalize(source, work / "normalized.mp4", max_side=max_side, max_duration_sec=seconds + 10)
        normalise_sec = time.perf_counter() - started
        rows: list[dict[str, object]] = [{
            "step": f"normalise {seconds:g} s of {width}x{height} @ {SOURCE_FPS} fps (rotated)",
            "output": f"{normalized.width}x{normalized.height} @ {FPS} fps",
            "seconds": normalise_sec, "x_real_time": seconds / normalise_sec,
        }]
        frames = int(chunk_sec * FPS)
        for label, first, mode in (("cut a chunk, forward", 0, ExtendMode.HOLD),
                                   ("cut a chunk past the end, ping-pong", normalized.frame_count - FPS,
                                    ExtendMode.PINGPONG)):
            started = time.perf_counter()
            cut_span(normalized.path, normalized.frame_count, first, frames, mode, work / "span.mp4",
                     work / "first.png")
            spent = time.perf_counter() - started
            rows.append({"step": f"{label} ({chunk_sec:g} s)", "output": f"{frames} frames",
                         "seconds": spent, "x_real_time": chunk_sec / spent})
        return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--chunk-sec", type=float, default=45.0)
    args = parser.parse_args()
    print_table("Dubbing: source video on the gateway, one process",
                run(args.seconds, args.width, args.height, args.chunk_sec))


if __name__ == "__main__":
    main()
