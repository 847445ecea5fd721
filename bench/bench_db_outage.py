"""A PostgreSQL outage in the middle of a job: how long the job stalls, and what is rendered again.

Everything runs on loopback: a PostgreSQL server started here (tests/helpers/postgres.py), the
splitter and stitcher as processes, two generators in this process (capacity 1, COST seconds of
render per second of audio, counting every render they begin and finish), and one gateway in this
process with the production lease settings (JOB_LEASE_SEC=20, JOB_POLL_SEC=1; the database layer
retries a lost connection for 15 s). The job is SECONDS of speech cut into 3 s pieces.

For each outage length the server is stopped (fast shutdown: every connection drops) OUTAGE_AT
seconds after the job was accepted and started again that many seconds later. Columns:
    wall_s            job accepted -> COMPLETED
    stall_s           wall_s less the same job's wall time without an outage
    finished_again    pieces whose render had finished once and was finished again (the defect)
    restarted         renders begun more than once (in flight when the driver let the job go)

    python bench/bench_db_outage.py [--outages 5,20,45]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_replicas import start_backends  # noqa: E402
from bench.table import print_table  # noqa: E402
from tests.helpers.audio import encode_audio, speech_like  # noqa: E402
from tests.helpers.postgres import PostgresServer, find_bindir  # noqa: E402
from tests.helpers.rest import call, submit_multipart  # noqa: E402

SIZE = 64
SECONDS = 42.0
COST = 1.0
OUTAGE_AT = 6.0
PORTRAIT = ROOT / "assets" / "sample" / "portrait.png"


def run_job(workdir: Path, postgres: PostgresServer, backends, outage: float, audio: bytes) -> dict[str, object]:
    from itk_gateway.config import Settings
    from itk_gateway.server import build_gateway

    settings = Settings(
        port=0, grpc_port=0, data_dir=workdir / f"gateway-{outage:g}", database_url=postgres.create_database(),
        splitter_target=backends.splitter_target, stitcher_target=backends.stitcher_target,
        generator_targets=backends.generator_targets, chunk_target_sec=3.0, max_concurrent_chunks=2,
        resolve_interval_sec=0.5, retry_backoff_sec=0.2,
    )
    gateway = build_gateway(settings)
    gateway.start()
    try:
        started = time.monotonic()
        job_id = submit_multipart(gateway.rest_url, PORTRAIT.read_bytes(), audio, width=SIZE, height=SIZE, lanes=2)
        if outage > 0:
            time.sleep(max(0.0, OUTAGE_AT - (time.monotonic() - started)))
            postgres.stop()
            time.sleep(outage)
            postgres.start()
        final = wait_through_outage(gateway.rest_url, job_id, timeout=600)
        wall = time.monotonic() - started
    finally:
        gateway.stop()
    finished = [n for g in backends.generators for (job, _), n in g.backend.rendered.items() if job == job_id]
    begun = [n for g in backends.generators for (job, _), n in g.backend.started.items() if job == job_id]
    return {"outage_s": outage, "status": final["status"], "pieces": final["chunk_count"], "wall_s": wall,
            "finished_again": sum(1 for n in finished if n > 1), "restarted": sum(1 for n in begun if n > 1)}


def wait_through_outage(base_url: str, job_id: str, timeout: float) -> dict:
    """Poll until the job ends; 503 (the job's state out of reach while the database is away) is
    what the gateway answers during the outage, so it is waited through."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, state = call("GET", f"{base_url}/jobs/{job_id}?include_video=false", timeout=60)
        if status == 200 and state["status"] not in ("IN_QUEUE", "RUNNING"):
            return state
        if status not in (200, 503):
            raise RuntimeError(f"GET /jobs/{job_id} answered {status}: {state}")
        time.sleep(0.5)
    raise TimeoutError(f"job {job_id} did not end in {timeout:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outages", default="5,20,45", help="outage lengths in seconds, comma-separated")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    for noisy in ("psycopg", "psycopg.pool", "itk_gateway"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    bindir = find_bindir()
    if bindir is None:
        sys.exit("PostgreSQL server binaries not found: run `make install-postgres`")
    audio = encode_audio(speech_like(SECONDS, seed=3), 16_000, "wav")
    with tempfile.TemporaryDirectory(prefix="itk-outage-") as temp:
        workdir = Path(temp)
        postgres = PostgresServer(bindir)
        postgres.start()
        backends = start_backends(workdir, COST)
        try:
            rows = [run_job(workdir, postgres, backends, 0.0, audio)]
            for outage in (float(x) for x in args.outages.split(",")):
                rows.append(run_job(workdir, postgres, backends, outage, audio))
        finally:
            backends.stop()
            postgres.remove()
    baseline = float(rows[0]["wall_s"])  # type: ignore[arg-type]
    for row in rows:
        row["stall_s"] = float(row["wall_s"]) - baseline  # type: ignore[arg-type]
    print_table(f"PostgreSQL outage during a {SECONDS:g} s job ({COST:g} s of render per audio second, "
                f"2 generators, outage from {OUTAGE_AT:g} s after acceptance)", rows)


if __name__ == "__main__":
    main()
