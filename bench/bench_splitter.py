"""Splitter speed on one core: a 10-minute speech-like recording, as WAV and as MP3.

Times each stage of `split_audio` (decode, loudness normalisation, silence detection and planning,
WAV encoding and checking of every chunk) and reports the whole as a multiple of real time.

    python bench/bench_splitter.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# One core: keep any threaded numeric library to a single thread (before numpy is imported).
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.table import print_table  # noqa: E402
from itk_splitter import SplitOptions, split_audio  # noqa: E402
from tests.helpers.audio import encode_audio, speech_like  # noqa: E402

DURATION_SEC = 600.0
FORMATS = ("wav", "mp3")


def measure(data: bytes, fmt: str, repeat: int) -> dict[str, object]:
    """Best of `repeat` full splits (every chunk encoded), by total time."""
    best: dict[str, float] | None = None
    chunks = 0
    for _ in range(repeat):
        started = time.perf_counter()
        result = split_audio(data, SplitOptions(), threads=1)
        chunks = sum(1 for _ in result.iter_encoded())
        total = time.perf_counter() - started
        if best is None or total < best["total"]:
            best = {**result.timings, "total": total}
    assert best is not None
    return {
        "input": fmt,
        "input_MB": len(data) / 1e6,
        "chunks": chunks,
        "decode_s": best["decode"],
        "normalize_s": best["normalize"],
        "plan_s": best["plan"],
        "encode_s": best["encode"],
        "total_s": best["total"],
        "x_realtime": DURATION_SEC / best["total"],
    }


def run(repeat: int = 3) -> list[dict[str, object]]:
    speech = speech_like(DURATION_SEC, seed=7)
    return [measure(encode_audio(speech, 16_000, fmt), fmt, repeat) for fmt in FORMATS]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print_table(
        f"Splitter, {DURATION_SEC / 60:.0f}-minute recording, one core (goal: >= 200x real time)",
        run(args.repeat),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
