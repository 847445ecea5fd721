"""Three gateway replicas (separate processes) on a real PostgreSQL and moto S3, two generators.

Jobs created on one replica are watched, read, downloaded (with Range) and cancelled on others;
the replica driving a job is killed with SIGKILL mid-job and another finishes it, every chunk
rendered exactly once (the generators count their finished renders); a replica restarted while
the database is down comes up once it is back.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from infinitetalk.v1 import gateway_pb2, gateway_pb2_grpc
from itk_common.grpc_server import insecure_channel
from itk_common.video import probe_video
from tests.helpers.audio import encode_audio, speech_like
from tests.helpers.postgres import PostgresServer
from tests.helpers.replicas import GatewayReplicas, Replica, s3_keys, start_moto
from tests.helpers.rest import call, submit_multipart, wait_for_job
from tests.helpers.services import BackendServices, start_backend_services, wait_until

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
SIZE = 64
# Each generator sleeps this long per second of audio: a 3 s chunk takes about 1.2 s.
COST = 0.4


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server, endpoint = start_moto()
    yield endpoint
    server.stop()


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackendServices]:
    started = start_backend_services(tmp_path_factory.mktemp("backends"), generators=2, cost_per_audio_sec=COST)
    yield started
    started.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer, s3_endpoint: str,
            backends: BackendServices) -> Iterator[GatewayReplicas]:
    with GatewayReplicas(tmp_path_factory.mktemp("replicas"), postgres.create_database(), s3_endpoint,
                         backends, count=3) as replicas:
        yield replicas


@pytest.fixture(scope="module")
def portrait() -> bytes:
    return (ROOT / "assets" / "sample" / "portrait.png").read_bytes()


def speech(seconds: float, seed: int) -> bytes:
    return encode_audio(speech_like(seconds, seed=seed), 16_000, "wav")


def job_keys(endpoint: str, job_id: str) -> list[str]:
    return (s3_keys(endpoint, f"work/jobs/{job_id}/") + s3_keys(endpoint, f"work/results/{job_id}")
            + s3_keys(endpoint, f"work/live/{job_id}/"))


def live_segments(replica: Replica, job_id: str) -> list[str]:
    """The media segments the replica's HLS playlist of the job lists, each fetched from it."""
    status, body, _ = fetch(f"{replica.rest_url}/jobs/{job_id}/hls/index.m3u8")
    assert status == 200, body
    playlist = body.decode()
    assert playlist.rstrip().endswith("#EXT-X-ENDLIST")
    names = [line for line in playlist.splitlines() if line.startswith("seg-")]
    for name in names:
        status, segment, _ = fetch(f"{replica.rest_url}/jobs/{job_id}/hls/{name}")
        assert status == 200 and segment
    return names


def test_every_replica_answers_for_any_job(cluster: GatewayReplicas, backends: BackendServices,
                                           s3_endpoint: str, portrait: bytes, tmp_path: Path) -> None:
    first, second, third = cluster[0], cluster[1], cluster[2]
    job_id = submit_multipart(first.rest_url, portrait, speech(9.0, seed=1), width=SIZE, height=SIZE)
    # Server-sent events from a third replica, read while the job runs.
    events: list[str] = []
    reader = threading.Thread(target=lambda: events.extend(sse_events(third, job_id)), daemon=True)
    reader.start()

    # Watched on another replica: progress moves, never backwards, to the end.
    with insecure_channel(second.grpc_target) as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        updates = list(stub.WatchJob(gateway_pb2.WatchJobRequest(id=job_id), timeout=120))
        progress = [update.progress for update in updates]
        assert progress == sorted(progress) and len(set(progress)) >= 3, progress
        assert updates[-1].status == gateway_pb2.COMPLETED, updates[-1].error
        assert gateway_pb2.RUNNING in {update.status for update in updates}

    reader.join(timeout=30)
    assert events[0] == "status" and events[-1] == "end" and events.count("progress") >= 2, events
    final = call("GET", f"{third.rest_url}/jobs/{job_id}")[1]
    assert final["status"] == "COMPLETED" and final["chunk_count"] >= 3
    video = base64.b64decode(final["video_base64"])
    path = tmp_path / "video.mp4"
    path.write_bytes(video)
    assert probe_video(path).frame_count == final["frames_total"]
    counts = backends.rendered(job_id)
    assert sorted(counts) == list(range(final["chunk_count"])) and set(counts.values()) == {1}, counts

    # Downloads from any replica, whole or in ranges, come from the shared store.
    status, whole, _ = fetch(f"{second.rest_url}/jobs/{job_id}/video")
    assert status == 200 and whole == video
    status, part, headers = fetch(f"{third.rest_url}/jobs/{job_id}/video", {"Range": "bytes=100-1099"})
    assert status == 206 and part == video[100:1100]
    assert headers["content-range"] == f"bytes 100-1099/{len(video)}"
    status, tail, _ = fetch(f"{first.rest_url}/jobs/{job_id}/video", {"Range": "bytes=-64"})
    assert status == 206 and tail == video[-64:]
    status, _, headers = fetch(f"{first.rest_url}/jobs/{job_id}/video", {"Range": f"bytes={len(video)}-"})
    assert status == 416 and headers["content-range"] == f"bytes */{len(video)}"
    with insecure_channel(third.grpc_target) as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        pieces = list(stub.DownloadVideo(gateway_pb2.DownloadVideoRequest(id=job_id)))
        assert b"".join(p.data for p in pieces) == video and pieces[-1].last

    # The live stream the driver made is served by the others too.
    assert len(live_segments(second, job_id)) == final["chunk_count"]

    # Only the result and the live stream are left in the bucket; deleting the video on any
    # replica removes them for all.
    assert not s3_keys(s3_endpoint, f"work/jobs/{job_id}/")
    assert f"work/results/{job_id}.mp4" in job_keys(s3_endpoint, job_id)
    assert call("POST", f"{third.rest_url}/jobs/{job_id}/video/delete")[0] == 204
    assert job_keys(s3_endpoint, job_id) == []
    status, body = call("GET", f"{first.rest_url}/jobs/{job_id}/video")
    assert status == 409 and "deleted" in body["error"]
    assert not call("GET", f"{second.rest_url}/jobs/{job_id}")[1]["video_available"]


def test_cancel_on_another_replica_stops_the_driver(cluster: GatewayReplicas, backends: BackendServices,
                                                    s3_endpoint: str, portrait: bytes) -> None:
    job_id = submit_multipart(cluster[1].rest_url, portrait, speech(15.0, seed=2), width=SIZE, height=SIZE)
    wait_until(lambda: backends.running_since(job_id), timeout=30, message="a chunk rendering")
    status, body = call("POST", f"{cluster[2].rest_url}/jobs/{job_id}/cancel")
    assert status == 200 and body["status"] == "CANCELLED", body
    # The driver (replica 1) hears of it through the database, stops its generators and cleans up.
    wait_until(lambda: not backends.running_since(job_id), timeout=10, message="the renders to stop")
    wait_until(lambda: job_keys(s3_endpoint, job_id) == [], timeout=10, message="the job's files to go")
    started = sum(backends.started(job_id).values())
    time.sleep(1.0)
    assert sum(backends.started(job_id).values()) == started
    assert call("GET", f"{cluster[0].rest_url}/jobs/{job_id}")[1]["status"] == "CANCELLED"
    assert "CANCELLED elsewhere" in cluster[1].log()
    status, body = call("POST", f"{cluster[0].rest_url}/jobs/{job_id}/cancel")
    assert status == 409 and "already ended" in body["error"]


def test_job_deleted_from_the_database_stops_its_driver(cluster: GatewayReplicas, backends: BackendServices,
                                                        s3_endpoint: str, portrait: bytes) -> None:
    """A job's row removed (by retention, say) while another replica drives it: the driver stops."""
    import psycopg

    job_id = submit_multipart(cluster[2].rest_url, portrait, speech(15.0, seed=7), width=SIZE, height=SIZE)
    wait_until(lambda: backends.running_since(job_id), timeout=30, message="a chunk rendering")
    with psycopg.connect(cluster.database_url) as connection:
        connection.execute("DELETE FROM jobs WHERE id = %s", (job_id,))
    wait_until(lambda: not backends.running_since(job_id), timeout=10, message="the renders to stop")
    wait_until(lambda: job_keys(s3_endpoint, job_id) == [], timeout=10, message="the job's files to go")
    assert call("GET", f"{cluster[0].rest_url}/jobs/{job_id}")[0] == 404


def wait_mid_job(cluster: GatewayReplicas, backends: BackendServices, job_id: str) -> None:
    """Until at least one chunk finished and was recorded as done, none finished but not yet
    recorded, and every render under way began less than half a render ago, so none of them is
    about to finish while its driver goes (a part finishing in that instant would be rendered
    again: see docs/kubernetes.md)."""
    import psycopg

    with psycopg.connect(cluster.database_url, autocommit=True) as connection:

        def mid_job() -> bool:
            running = backends.running_since(job_id)
            if not running or any(time.monotonic() - since > 0.5 for since in running):
                return False
            rendered = set(backends.rendered(job_id))
            done = {row[0] for row in connection.execute(
                "SELECT idx FROM chunks WHERE job_id = %s AND status = 'done'", (job_id,))}
            return bool(rendered) and rendered == done

        wait_until(mid_job, timeout=60, interval=0.02, message="a finished chunk and fresh renders")


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_driver_gone_mid_job_another_finishes_it(how: str, cluster: GatewayReplicas, backends: BackendServices,
                                                 portrait: bytes, tmp_path: Path) -> None:
    """SIGKILL: a crash, the job moves when the lease runs out. SIGTERM: a rolling update or a
    drain, the driver releases the job as it stops and another replica takes it at once."""
    driver = cluster[0]
    job_id = submit_multipart(driver.rest_url, portrait, speech(24.0, seed=3 if how == "SIGKILL" else 8),
                              width=SIZE, height=SIZE)
    takeovers_before = sum(map(takeovers, (cluster[1], cluster[2])))
    wait_mid_job(cluster, backends, job_id)
    finished_before = set(backends.rendered(job_id))
    killed = time.monotonic()
    if how == "SIGKILL":
        driver.process.kill()
    else:
        threading.Thread(target=driver.process.stop, daemon=True).start()
    started_at_kill = sum(backends.started(job_id).values())
    # The renders it had under way are cancelled with its connections; another replica takes
    # the job (once the 3 s lease has run out, after a kill) and sends the unfinished chunks out.
    wait_until(lambda: sum(backends.started(job_id).values()) > started_at_kill, timeout=30, interval=0.02,
               message="the job moving again")
    assert time.monotonic() - killed < 15
    if how == "SIGTERM":
        wait_until(lambda: not driver.process.alive(), timeout=30, message="the driver to exit")
        assert f"job {job_id}: released for another replica" in driver.log()
    final = wait_for_job(cluster[1].rest_url, job_id, timeout=120)
    assert final["status"] == "COMPLETED", final
    counts = backends.rendered(job_id)
    assert sorted(counts) == list(range(final["chunk_count"])), counts
    assert set(counts.values()) == {1}, f"chunks rendered more than once: {counts}"
    assert finished_before < set(counts)
    taken = [r for r in (cluster[1], cluster[2]) if f"job {job_id}: resuming" in r.log()]
    assert len(taken) == 1, "exactly one replica takes the job over"
    assert sum(map(takeovers, (cluster[1], cluster[2]))) == takeovers_before + 1
    # The live stream goes on where the previous driver left it, whole at the end.
    assert len(live_segments(cluster[2], job_id)) == final["chunk_count"]
    # The replica holds the job until its quality report (computed after COMPLETED) is stored.
    wait_until(lambda: b"itk_jobs_driven 0.0" in fetch(f"{taken[0].rest_url}/metrics")[1], timeout=120,
               message="the replica to let the job go once its quality report is in")
    assert wait_for_job(cluster[1].rest_url, job_id, timeout=5)["quality"]["state"] != "pending"
    path = tmp_path / "video.mp4"
    status, video, _ = fetch(f"{cluster[2].rest_url}/jobs/{job_id}/video")
    path.write_bytes(video)
    assert status == 200 and probe_video(path).frame_count == final["frames_total"]
    cluster.restart(0)


def test_replica_restarted_while_the_database_is_down(cluster: GatewayReplicas, postgres: PostgresServer,
                                                      portrait: bytes) -> None:
    earlier = submit_multipart(cluster[0].rest_url, portrait, speech(3.0, seed=4), width=SIZE, height=SIZE,
                               dry_run=True)
    wait_for_job(cluster[0].rest_url, earlier, timeout=30)
    # A job in flight while the database goes away: its replicas wait (or let it go and take it
    # back) and it still completes.
    running = submit_multipart(cluster[0].rest_url, portrait, speech(9.0, seed=6), width=SIZE, height=SIZE)
    replica = cluster[2]
    replica.process.kill()
    postgres.stop()
    try:
        cluster.restart(2, wait=False)
        time.sleep(2.0)
        assert replica.process.alive() and not replica.healthy()
    finally:
        postgres.start()
    replica.wait_serving(timeout=60)
    assert call("GET", f"{replica.rest_url}/jobs/{earlier}")[1]["status"] == "COMPLETED"
    assert wait_for_job(replica.rest_url, running, timeout=90)["status"] == "COMPLETED"
    job_id = submit_multipart(replica.rest_url, portrait, speech(6.0, seed=5), width=SIZE, height=SIZE)
    assert wait_for_job(cluster[1].rest_url, job_id, timeout=60)["status"] == "COMPLETED"
    with insecure_channel(cluster[0].grpc_target) as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        with pytest.raises(grpc.RpcError) as missing:
            stub.GetJob(gateway_pb2.GetJobRequest(id="job-1-00000000"))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND


def sse_events(replica: Replica, job_id: str) -> list[str]:
    """The kinds of the server-sent events of the job, read until its `end`."""
    import urllib.request

    kinds = []
    with urllib.request.urlopen(f"{replica.rest_url}/jobs/{job_id}/events", timeout=60) as reply:
        for raw in reply:
            line = raw.decode().strip()
            if line.startswith("event:"):
                kinds.append(line.partition(":")[2].strip())
                if kinds[-1] == "end":
                    break
    return kinds


def takeovers(replica: Replica) -> float:
    """The replica's itk_job_takeovers_total."""
    text = fetch(f"{replica.rest_url}/metrics")[1].decode()
    return float(next(line.split()[1] for line in text.splitlines()
                      if line.startswith("itk_job_takeovers_total ")))


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, reply.read(), {k.lower(): v for k, v in reply.headers.items()}
    except urllib.error.HTTPError as error:
        return error.code, error.read(), {k.lower(): v for k, v in error.headers.items()}
