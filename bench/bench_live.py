"""Live HLS cost: what the gateway adds before a finished part can be watched.

The recording is encoded once as AAC when the job starts (while the first parts render); then each
finished part becomes one fMP4 segment (its H.264 copied, its audio slice copied). The time from a
part landing on disk to its segment being listed is the segment mux. Same media as the stitcher
benchmark: 14 parts of 45 s at 480x832 (one part written once, reused for each), a recording
as long as all of them.

    python bench/bench_live.py [--parts 14] [--part-sec 45] [--width 480] [--height 832]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_stitcher import portrait_frames, write_recording  # noqa: E402
from bench.table import print_table  # noqa: E402
from itk_common.constants import FPS  # noqa: E402
from itk_common.video import write_mp4  # noqa: E402
from itk_gateway.live.segments import encode_recording, mux_segment  # noqa: E402


def run(parts: int = 14, part_sec: float = 45.0, width: int = 480, height: int = 832) -> list[dict[str, object]]:
    frames_per_part = round(part_sec * FPS)
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
        workdir = Path(tmp)
        part = workdir / "part.mp4"
        write_mp4(part, portrait_frames(frames_per_part, width, height), width, height)
        recording = workdir / "speech.wav"
        audio_sec = write_recording(recording, frames_per_part * parts)
        started = time.perf_counter()
        encode_recording(recording, workdir / "audio.m4a")
        encode_s = time.perf_counter() - started
        mux_times, sizes = [], []
        for index in range(parts):
            started = time.perf_counter()
            segment = mux_segment(part, workdir / "audio.m4a", index * frames_per_part, frames_per_part,
                                  index == parts - 1, workdir / "segment.mp4")
            mux_times.append(time.perf_counter() - started)
            sizes.append(len(segment.media))
    return [
        {"step": "AAC encode of the recording (once, at job start)", "audio": f"{audio_sec:.0f} s",
         "seconds": encode_s, "x_realtime": audio_sec / encode_s, "MiB": None},
        {"step": f"segment mux per part, median of {parts}", "audio": f"{part_sec:g} s",
         "seconds": statistics.median(mux_times), "x_realtime": part_sec / statistics.median(mux_times),
         "MiB": statistics.median(sizes) / 2**20},
        {"step": "segment mux per part, slowest", "audio": f"{part_sec:g} s", "seconds": max(mux_times),
         "x_realtime": part_sec / max(mux_times), "MiB": None},
        {"step": "all segments", "audio": f"{audio_sec:.0f} s", "seconds": sum(mux_times),
         "x_realtime": audio_sec / sum(mux_times), "MiB": sum(sizes) / 2**20},
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", type=int, default=14)
    parser.add_argument("--part-sec", type=float, default=45.0)
    parser.add_argument("--width", type=int, default=480)
    parser.add_argument("--height", type=int, default=832)
    args = parser.parse_args()
    print_table(f"Live HLS: {args.parts} parts of {args.part_sec:g} s at {args.width}x{args.height}",
                run(args.parts, args.part_sec, args.width, args.height))
    return 0


if __name__ == "__main__":
    sys.exit(main())
