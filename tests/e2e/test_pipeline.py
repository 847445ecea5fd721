"""The whole pipeline, four services as separate processes, through both public APIs."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import grpc
import numpy as np
import pytest

from infinitetalk.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from itk_common.grpc_server import insecure_channel
from itk_common.streaming import data_pieces
from itk_generator.preview.backend import mouth_box
from scripts.stack import Stack
from tests.e2e.checks import check_video
from tests.helpers.rest import call, download

pytestmark = pytest.mark.e2e
SIZE = 160


def test_seed_client_json_flow(stack: Stack, portrait: bytes, speech_wav: bytes,
                               speech_samples: np.ndarray, tmp_path: Path) -> None:
    """A client of the seed API: base64 JSON in, poll, video_base64 out."""
    status, created = call("POST", f"{stack.rest_url}/jobs", json.dumps({
        "image_base64": base64.b64encode(portrait).decode(),
        "audio_base64": base64.b64encode(speech_wav).decode(),
        "width": SIZE, "height": SIZE, "push_to_s3": False, "dry_run": False,
    }).encode())
    assert status == 202 and created["status"] == "IN_QUEUE"

    progress_seen: list[int] = []
    while True:
        status, state = call("GET", f"{stack.rest_url}/jobs/{created['id']}")
        assert status == 200
        progress_seen.append(state["progress"])
        if state["status"] not in ("IN_QUEUE", "RUNNING"):
            break
    assert state["status"] == "COMPLETED", state.get("error")
    assert progress_seen == sorted(progress_seen) and progress_seen[-1] == 100
    assert len(set(progress_seen)) > 3, "progress should move with generated frames, not jump"
    assert state["chunk_count"] >= 4

    video = base64.b64decode(state["video_base64"])
    assert video == download(stack.rest_url, created["id"])
    path = tmp_path / "seed.mp4"
    path.write_bytes(video)
    check_video(path, speech_samples, SIZE, mouth_box(portrait, SIZE, SIZE))


def test_grpc_api_flow(stack: Stack, portrait: bytes, speech_wav: bytes,
                       speech_samples: np.ndarray, tmp_path: Path) -> None:
    def upload():
        yield gateway_pb2.CreateJobRequest(options=gateway_pb2.JobOptions(width=SIZE, height=SIZE, seed=5))
        for piece in data_pieces(portrait):
            yield gateway_pb2.CreateJobRequest(image=piece)
        for piece in data_pieces(speech_wav):
            yield gateway_pb2.CreateJobRequest(audio=piece)

    with insecure_channel(stack.grpc_target) as channel:
        gateway = gateway_pb2_grpc.GatewayStub(channel)
        job = gateway.CreateJob(upload(), timeout=60)
        assert job.id and job.seed == 5
        statuses = [update.status for update in gateway.WatchJob(gateway_pb2.WatchJobRequest(id=job.id),
                                                                  timeout=300)]
        assert statuses[-1] == gateway_pb2.COMPLETED
        final = gateway.GetJob(gateway_pb2.GetJobRequest(id=job.id))
        assert final.progress == 100 and final.frames_done == final.frames_total
        pieces: list[common_pb2.DataPiece] = list(
            gateway.DownloadVideo(gateway_pb2.DownloadVideoRequest(id=job.id), timeout=60))
        assert all(len(p.data) <= 1024 * 1024 for p in pieces) and pieces[-1].last
        path = tmp_path / "grpc.mp4"
        path.write_bytes(b"".join(p.data for p in pieces))
        check_video(path, speech_samples, SIZE, mouth_box(portrait, SIZE, SIZE))

        gateway.DeleteVideo(gateway_pb2.DeleteVideoRequest(id=job.id))
        gateway.DeleteVideo(gateway_pb2.DeleteVideoRequest(id=job.id))  # idempotent
        with pytest.raises(grpc.RpcError) as missing:
            gateway.GetJob(gateway_pb2.GetJobRequest(id="job-1-deadbeef"))
        assert missing.value.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)
