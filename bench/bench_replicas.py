"""Gateway replicas on PostgreSQL: jobs accepted per second with 1 and 3 replicas, and takeover time.

Everything runs on loopback: a PostgreSQL server started here (tests/helpers/postgres.py), moto's
S3 in server mode, the splitter and stitcher as processes, generators in this process (so the
benchmark sees when each render begins), and N gateway processes sharing the database and the
bucket (BLOB_STORE=s3).

Acceptance: CLIENTS threads submit JOBS dry-run jobs (2 s of speech, multipart) round-robin
over the replicas; a job is accepted when its POST is answered 202, which is after the upload
is stored, published to the bucket, recorded and split into its first chunk. jobs/s is the
number of jobs over the wall time of the whole batch.

Takeover: a job runs on slow generators; its driving replica is killed (SIGKILL) while chunks
render, or stopped (SIGTERM, as in a rolling update: it releases its leases). `claimed` is the
time until another replica holds the job's lease (after a kill, the rest of the dead replica's
lease plus at most JOB_POLL_SEC), `moving` until a generator begins rendering one of its chunks
again (the job's inputs fetched and its audio split again up to that chunk).

    python bench/bench_replicas.py [--jobs 60] [--clients 8]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.table import print_table  # noqa: E402
from scripts.stack import ServiceProcess, free_port  # noqa: E402
from tests.helpers.audio import encode_audio, speech_like  # noqa: E402
from tests.helpers.postgres import PostgresServer, find_bindir  # noqa: E402
from tests.helpers.replicas import GatewayReplicas, start_moto  # noqa: E402
from tests.helpers.rest import submit_multipart, wait_for_job  # noqa: E402
from tests.helpers.services import GeneratorHandle, start_generator, wait_until  # noqa: E402

SIZE = 64
PORTRAIT = ROOT / "assets" / "sample" / "portrait.png"


@dataclass
class Backends:
    splitter: ServiceProcess
    stitcher: ServiceProcess
    generators: list[GeneratorHandle]

    @property
    def splitter_target(self) -> str:
        return self.splitter.target

    @property
    def stitcher_target(self) -> str:
        return self.stitcher.target

    @property
    def generator_targets(self) -> list[str]:
        return [g.target for g in self.generators]

    def started(self, job_id: str) -> int:
        return sum(n for g in self.generators for (job, _), n in g.backend.started.items() if job == job_id)

    def stop(self) -> None:
        for generator in self.generators:
            generator.stop()
        self.splitter.stop()
        self.stitcher.stop()


def start_backends(workdir: Path, cost: float) -> Backends:
    from itk_common.grpc_server import wait_for_serving

    splitter = ServiceProcess("splitter", "itk_splitter.server", free_port(), {}, workdir / "logs" / "splitter.log")
    stitcher = ServiceProcess("stitcher", "itk_stitcher.server", free_port(),
                              {"TEMP_DIR": str(workdir / "stitcher")}, workdir / "logs" / "stitcher.log")
    for service in (splitter, stitcher):
        service.start()
    for service in (splitter, stitcher):
        wait_for_serving(service.target, timeout=60)
    generators = [start_generator(workdir / f"generator-{n}", cost_per_audio_sec=cost) for n in range(2)]
    return Backends(splitter, stitcher, generators)


def accept_rate(replicas: GatewayReplicas, jobs: int, clients: int, image: bytes, audio: bytes) -> dict[str, object]:
    accepted: list[str] = []
    failures: list[str] = []
    lock = threading.Lock()
    counter = iter(range(jobs))

    def client() -> None:
        while True:
            with lock:
                index = next(counter, None)
            if index is None:
                return
            replica = replicas[index % len(replicas.replicas)]
            try:
                job_id = submit_multipart(replica.rest_url, image, audio, width=SIZE, height=SIZE, dry_run=True)
            except Exception as exc:
                with lock:
                    failures.append(str(exc))
                continue
            with lock:
                accepted.append(job_id)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - started
    for job_id in accepted:
        wait_for_job(replicas[0].rest_url, job_id, timeout=120)
    return {"replicas": len(replicas.replicas), "jobs": len(accepted), "failed": len(failures),
            "clients": clients, "wall_s": wall, "jobs_per_s": len(accepted) / wall}


def lease_owner(database_url: str, job_id: str) -> str:
    import psycopg

    with psycopg.connect(database_url) as connection:
        row = connection.execute("SELECT lease_owner FROM jobs WHERE id = %s", (job_id,)).fetchone()
        return str(row[0]) if row else ""


def takeover(workdir: Path, postgres: PostgresServer, s3_endpoint: str, backends: Backends, lease_sec: float,
             poll_sec: float, image: bytes, graceful: bool = False) -> dict[str, object]:
    audio = encode_audio(speech_like(30.0, seed=21), 16_000, "wav")
    env = {"JOB_LEASE_SEC": str(lease_sec), "JOB_POLL_SEC": str(poll_sec), "CHUNK_TARGET_SEC": "5"}
    with GatewayReplicas(workdir, postgres.create_database(), s3_endpoint, backends, count=3, env=env) as replicas:
        job_id = submit_multipart(replicas[0].rest_url, image, audio, width=SIZE, height=SIZE)
        driver = lease_owner(replicas.database_url, job_id)
        wait_until(lambda: backends.started(job_id) >= 2, timeout=60, message="chunks rendering")
        # Kill just after a renewal would be luckiest; kill at a random point of the lease instead.
        time.sleep(lease_sec / 3 * 0.5)
        starts = backends.started(job_id)
        killed = time.monotonic()
        if graceful:
            # What a rolling update or a node drain sends; it returns once the process exited.
            threading.Thread(target=replicas[0].process.stop, daemon=True).start()
        else:
            replicas[0].process.kill()
        claimed = moving = None
        while moving is None or claimed is None:
            now = time.monotonic() - killed
            if claimed is None and lease_owner(replicas.database_url, job_id) not in ("", driver):
                claimed = now
            if moving is None and backends.started(job_id) > starts:
                moving = now
            if now > lease_sec * 3 + 60:
                raise TimeoutError("the job was not taken over")
            time.sleep(0.01)
        final = wait_for_job(replicas[1].rest_url, job_id, timeout=300)
    return {"stop": "SIGTERM" if graceful else "SIGKILL", "JOB_LEASE_SEC": lease_sec, "JOB_POLL_SEC": poll_sec,
            "claimed_s": claimed, "moving_s": moving, "final": final["status"]}


def run(jobs: int = 60, clients: int = 8, workdir: Path | None = None) -> tuple[list[dict[str, object]],
                                                                                 list[dict[str, object]]]:
    bindir = find_bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL binaries not found: make install-postgres")
    image = PORTRAIT.read_bytes()
    audio = encode_audio(speech_like(2.0, seed=20), 16_000, "wav")
    with tempfile.TemporaryDirectory(prefix="bench-replicas-") as tmp:
        root = workdir or Path(tmp)
        postgres = PostgresServer(bindir)
        postgres.start()
        moto, s3_endpoint = start_moto()
        backends = start_backends(root / "backends", cost=0.5)
        try:
            accept_rows = []
            for count in (1, 3):
                with GatewayReplicas(root / f"accept-{count}", postgres.create_database(), s3_endpoint, backends,
                                     count=count) as replicas:
                    accept_rows.append(accept_rate(replicas, jobs, clients, image, audio))
            takeover_rows = [
                takeover(root / f"takeover-{n}", postgres, s3_endpoint, backends, lease, poll, image, graceful)
                for n, (lease, poll, graceful) in enumerate(((3.0, 0.2, False), (10.0, 1.0, False),
                                                               (10.0, 1.0, True)))]
        finally:
            backends.stop()
            moto.stop()
            postgres.remove()
    return accept_rows, takeover_rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    accept_rows, takeover_rows = run(args.jobs, args.clients)
    print_table("Gateway tier on PostgreSQL + S3: dry-run jobs accepted per second", accept_rows)
    print_table("Driver stopped mid-job: time until another replica holds the job and renders again",
                takeover_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
