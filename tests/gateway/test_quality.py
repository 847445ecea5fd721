"""Every completed job carries its quality report: REST, job events, gRPC, metrics."""

from __future__ import annotations

import json
import sqlite3
import urllib.request
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from infinitetalk.v1 import gateway_pb2, gateway_pb2_grpc
from itk_common.quality.report import quality_text, report_state
from itk_common.wav import encode_wav
from itk_gateway.server import Gateway
from tests.helpers.faces import portrait_png, speech
from tests.helpers.rest import call, submit_multipart, wait_for_job
from tests.helpers.services import wait_until

SIDE = 256


def sse_events(url: str) -> list[tuple[str, dict]]:
    """Every event of the stream until the server closes it."""
    events, kind = [], ""
    with urllib.request.urlopen(url, timeout=120) as stream:
        for raw in stream:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[len("event: "):]
            elif line.startswith("data: "):
                events.append((kind, json.loads(line[len("data: "):])))
    return events


def test_completed_job_reports_its_quality_everywhere(make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway(quality_report=True, min_lane_sec=2.0)
    audio = encode_wav(speech(9.0))
    job_id = submit_multipart(gateway.rest_url, portrait_png(), audio, width=SIDE, height=SIDE, lanes=2)
    events = sse_events(f"{gateway.rest_url}/jobs/{job_id}/events")
    final = wait_for_job(gateway.rest_url, job_id)
    assert final["status"] == "COMPLETED"
    wait_until(lambda: call("GET", f"{gateway.rest_url}/jobs/{job_id}")[1]["quality"]["state"] != "pending",
               timeout=120, message="the quality report")
    quality = call("GET", f"{gateway.rest_url}/jobs/{job_id}")[1]["quality"]
    assert quality["state"] == "ready", quality
    assert quality["reference"] == "portrait" and quality["face_share"] > 0.9
    # The preview's painted mouth is in sync with its sound.
    assert quality["sync_lag_frames"] == 0 and quality["sync_correlation"] > 0.7
    assert quality["identity_distance"] < 0.6
    assert abs(quality["video_duration_sec"] - quality["audio_duration_sec"]) <= 0.04 + 0.03
    kinds = {step["kind"] for step in quality["steps"]}
    assert {"seam", "boundary"} <= kinds, quality["steps"]
    # The events: COMPLETED with the report pending, then the report, then the end.
    names = [name for name, _ in events]
    completed = next(i for i, (_, body) in enumerate(events) if body.get("status") == "COMPLETED")
    assert events[completed][1]["quality"]["state"] == "pending"
    assert names[-2:] == ["quality", "end"], names
    assert events[-2][1]["quality"]["state"] == "ready"
    # gRPC.
    with grpc.insecure_channel(f"127.0.0.1:{gateway.grpc_port}") as channel:
        job = gateway_pb2_grpc.GatewayStub(channel).GetJob(gateway_pb2.GetJobRequest(id=job_id))
    assert job.quality.state == "ready" and job.quality.sync_lag_frames == 0
    assert len(job.quality.segments) == len(quality["segments"])
    # Prometheus.
    with urllib.request.urlopen(f"{gateway.rest_url}/metrics", timeout=30) as reply:
        metrics = reply.read().decode()
    assert "itk_quality_sync_lag_frames_count 1.0" in metrics
    assert "itk_quality_identity_distance_count 1.0" in metrics


def completed_job(gateway: Gateway) -> tuple[str, dict]:
    """A 2-lane job, completed with its report ready: (id, the report)."""
    job_id = submit_multipart(gateway.rest_url, portrait_png(), encode_wav(speech(9.0)), width=SIDE, height=SIDE,
                              lanes=2)
    assert wait_for_job(gateway.rest_url, job_id)["status"] == "COMPLETED"
    wait_until(lambda: call("GET", f"{gateway.rest_url}/jobs/{job_id}")[1]["quality"]["state"] != "pending",
               timeout=120, message="the quality report")
    return job_id, call("GET", f"{gateway.rest_url}/jobs/{job_id}")[1]["quality"]


@pytest.mark.parametrize("left", ["report-pending", "end-not-recorded"])
def test_report_left_behind_by_a_dead_gateway_is_computed_by_the_next(make_gateway: Callable[..., Gateway],
                                                                     left: str) -> None:
    """The gateway died while computing the report (`report-pending`), or after removing the work
    folder but before recording COMPLETED (`end-not-recorded`): the next one computes the same
    report, against the portrait kept beside the video."""
    first = make_gateway(quality_report=True, min_lane_sec=2.0)
    job_id, expected = completed_job(first)
    first.stop()
    # What the dead gateway left: the video and the portrait beside it, its lease on the row.
    reference = first.files.quality_reference(job_id)
    reference.write_bytes(portrait_png())
    database = sqlite3.connect(first.settings.database)
    state = {"status": "COMPLETED", "quality": quality_text(report_state("pending"))} if left == "report-pending" \
        else {"status": "RUNNING", "quality": "", "progress": 95}
    columns = ", ".join(f"{name} = ?" for name in state)
    with database:
        database.execute(f"UPDATE jobs SET {columns}, lease_owner = 'dead-gateway', lease_until = 0 WHERE id = ?",
                         (*state.values(), job_id))
    database.close()

    second = make_gateway(quality_report=True, min_lane_sec=2.0)

    def reported() -> bool:
        quality = call("GET", f"{second.rest_url}/jobs/{job_id}")[1]["quality"]
        return quality is not None and quality["state"] != "pending"

    wait_until(reported, timeout=120, message="the report computed again")
    job = call("GET", f"{second.rest_url}/jobs/{job_id}")[1]
    assert job["status"] == "COMPLETED" and job["progress"] == 100
    report = job["quality"]
    assert report["state"] == "ready" and report["reference"] == "portrait", report
    assert report["sync_lag_frames"] == expected["sync_lag_frames"]
    assert report["identity_distance"] == pytest.approx(expected["identity_distance"], abs=1e-6)
    assert [s["kind"] for s in report["steps"]] == [s["kind"] for s in expected["steps"]]
    # The portrait went once the report was stored; the video stays.
    assert not reference.exists() and second.files.result(job_id).exists()


def test_portrait_that_cannot_be_kept_does_not_fail_the_job(make_gateway: Callable[..., Gateway],
                                                            tmp_path: Path) -> None:
    """Keeping the portrait beside the video fails (a full volume, say): the job still completes
    and this gateway's report still compares against the portrait, which it holds in memory."""
    gateway = make_gateway(quality_report=True, min_lane_sec=2.0)
    unwritable = tmp_path / "no-such-folder"
    gateway.files.quality_reference = lambda job_id: unwritable / f"{job_id}.reference"  # type: ignore[method-assign]
    _, report = completed_job(gateway)
    assert report["state"] == "ready" and report["reference"] == "portrait", report
    assert not unwritable.exists()
