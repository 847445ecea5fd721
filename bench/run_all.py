"""`make bench`: every CPU benchmark, each printing its table.

The GPU benchmark of the full-size model is separate (`make bench-gpu`, bench/gpu_infinitetalk.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import (  # noqa: E402
    bench_boundaries,
    bench_dubbing,
    bench_lane_context,
    bench_live,
    bench_orchestration,
    bench_providers,
    bench_quality,
    bench_replicas,
    bench_seams,
    bench_splitter,
    bench_stitcher,
)
from bench.table import print_table  # noqa: E402


def main() -> int:
    print_table("Splitter, 10-minute recording, one core", bench_splitter.run())
    print_table("Stitcher, 14 parts", bench_stitcher.run())
    print_table("Live HLS: 14 parts of 45 s at 480x832 (goal: a part is watchable within 1 s of finishing)",
                bench_live.run())
    print_table("Dubbing: a 60 s 1080p phone video on the gateway", bench_dubbing.run())
    print_table("Seam between two lanes (preview, 256x256): largest change between consecutive frames, grey levels",
                bench_seams.run())
    seams, steps = bench_boundaries.run()
    print_table("Seams in a 10-minute espeak-ng recording with pauses under 0.5 s, 4 lanes (preview, 256x256)", seams)
    print_table("Steps between consecutive frames of that job's video, grey levels: piece boundaries vs inside lanes",
                steps)
    print_table("The last piece of a 12-minute lane (tiny model): its audio features and first 33 frames against "
                "the lane rendered whole, by the audio it is sent", bench_lane_context.run())
    rows = bench_orchestration.run(generators=(1, 2, 4, 8))
    single = float(rows[0]["wall_s"])  # type: ignore[arg-type]
    for row in rows:
        row["speedup"] = single / float(row["wall_s"])  # type: ignore[arg-type]
    print_table("Lanes and scale-out: 10-minute job, 0.5 s of generation per audio second, one lane per "
                "generator (goal: overhead < 5 % at 4 generators)", rows)
    bench_providers.main()
    accepted, takeover = bench_replicas.run()
    print_table("Gateway replicas on PostgreSQL + S3: dry-run jobs accepted per second", accepted)
    print_table("Driving replica stopped mid-job: seconds until another holds the job and renders again",
                takeover)
    cost, overhead = bench_quality.run()
    print_table("Quality report: compute time (one process)", cost)
    print_table("Quality report: time to COMPLETED, 3 jobs of 60 s back to back, 2 preview generators at 0.5 s "
                "per audio second", overhead)
    return 0


if __name__ == "__main__":
    sys.exit(main())
