"""Every completed job carries its quality report: REST, job events, gRPC, metrics."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable

import grpc

from infinitetalk.v1 import gateway_pb2, gateway_pb2_grpc
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
