"""Jobs planned as lanes through the gateway: lane count from the pool or the request, lanes and seams in
both APIs, pieces of a lane continuing each other's motion frames."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

from infinitetalk.v1 import gateway_pb2, gateway_pb2_grpc
from itk_common.constants import FPS
from itk_common.grpc_server import insecure_channel
from itk_common.video import probe_video
from itk_gateway.server import Gateway
from tests.gateway.conftest import json_job, post_json, speech_wav
from tests.helpers.audio import encode_audio, speech_like
from tests.helpers.rest import wait_for_job
from tests.helpers.services import BackendServices

SECONDS = 12.0


def test_two_generators_two_lanes_one_softened_seam(make_gateway: Callable[..., Gateway], services: BackendServices,
                                                     portrait: bytes, tmp_path: Path) -> None:
    gateway = make_gateway(min_lane_sec=2.0)
    # One pause, 0.2 s past the middle.
    wav = encode_audio(speech_like(SECONDS, pause_every_sec=6.0, seed=2), 16_000, "wav")
    status, created = post_json(gateway, json_job(portrait, wav))
    assert status == 202, created
    job_id = created["id"]

    final = wait_for_job(gateway.rest_url, job_id, timeout=120)
    assert final["status"] == "COMPLETED", final
    assert final["lane_count"] == 2 and len(final["lanes"]) == 2 and len(final["seams"]) == 1
    first, second = final["lanes"]
    [seam] = final["seams"]
    assert first["start_sec"] == 0 and second["end_sec"] == SECONDS
    assert first["end_sec"] == second["start_sec"] == seam["time_sec"]
    assert abs(seam["time_sec"] - SECONDS / 2) <= 1.0  # near the balanced point (1 s window at least)
    assert seam["pause_start_sec"] < seam["time_sec"] < seam["pause_end_sec"] and not seam["in_voiced_speech"]
    assert seam["chunk_index"] == first["chunk_count"]
    assert first["chunks_done"] == first["chunk_count"] >= 2 and second["chunks_done"] == second["chunk_count"] >= 2
    assert first["chunk_count"] + second["chunk_count"] == final["chunk_count"]
    assert 0 < seam["fade_frames"] <= 10
    # Every piece returned its motion frames (saved beside its part while the job ran), and each
    # lane's pieces run in lane order.
    chunks = gateway.store.chunks(job_id)
    assert [chunk.motion_frames for chunk in chunks] == [9] * len(chunks)
    assert [(chunk.lane, chunk.lane_first_frame) for chunk in chunks][:2] == [(0, 0), (0, 81)]
    video = tmp_path / "lanes.mp4"
    video.write_bytes(base64.b64decode(final["video_base64"]))
    assert probe_video(video).frame_count == round(SECONDS * FPS)

    with insecure_channel(gateway.grpc_target) as channel:
        job = gateway_pb2_grpc.GatewayStub(channel).GetJob(gateway_pb2.GetJobRequest(id=job_id))
    assert [(lane.index, lane.chunk_count, lane.chunks_done) for lane in job.lanes] == [
        (0, first["chunk_count"], first["chunk_count"]), (1, second["chunk_count"], second["chunk_count"])]
    assert [(s.chunk_index, round(s.time_sec, 3), s.fade_frames, s.in_voiced_speech) for s in job.seams] == [
        (seam["chunk_index"], seam["time_sec"], seam["fade_frames"], False)]


def test_a_seam_in_speech_without_any_gap_is_reported_and_hard_cut(make_gateway: Callable[..., Gateway],
                                                                  portrait: bytes) -> None:
    gateway = make_gateway(min_lane_sec=2.0)
    # Syllables that dip but never fall silent: no gap between words anywhere.
    wav = encode_audio(speech_like(SECONDS, pause_every_sec=100.0, seed=4), 16_000, "wav")
    _, created = post_json(gateway, json_job(portrait, wav))
    final = wait_for_job(gateway.rest_url, created["id"], timeout=120)
    assert final["status"] == "COMPLETED", final
    [seam] = final["seams"]
    assert seam["in_voiced_speech"] and seam["fade_frames"] == 0
    assert seam["pause_start_sec"] == seam["pause_end_sec"] == seam["time_sec"] == SECONDS / 2
    with insecure_channel(gateway.grpc_target) as channel:
        job = gateway_pb2_grpc.GatewayStub(channel).GetJob(gateway_pb2.GetJobRequest(id=created["id"]))
    assert [(s.in_voiced_speech, s.fade_frames) for s in job.seams] == [(True, 0)]


def test_zero_lane_length_and_seam_fade_on_the_gateway_reach_the_splitter(make_gateway: Callable[..., Gateway],
                                                                         portrait: bytes) -> None:
    """MIN_LANE_SEC=0 and SEAM_FADE_SEC=0 are sent as values: 5 s become the two lanes the pool's two
    generators allow, joined by a hard cut. Unset, the splitter's own settings (30 s lanes) apply."""
    audio = speech_wav(5.0, seed=5)
    zeros = make_gateway(min_lane_sec=0.0, seam_fade_sec=0.0)
    final = wait_for_job(zeros.rest_url, post_json(zeros, json_job(portrait, audio))[1]["id"], timeout=120)
    assert final["status"] == "COMPLETED", final
    assert final["lane_count"] == 2 and [seam["fade_frames"] for seam in final["seams"]] == [0]
    zeros.stop()
    unset = make_gateway(data_dir=zeros.settings.data_dir.parent / "unset")
    final = wait_for_job(unset.rest_url, post_json(unset, json_job(portrait, audio, dry_run=True))[1]["id"],
                         timeout=120)
    assert final["status"] == "COMPLETED", final
    assert final["lane_count"] == 1 and final["seams"] == []


def test_a_job_may_ask_for_one_stream(make_gateway: Callable[..., Gateway], portrait: bytes) -> None:
    gateway = make_gateway(min_lane_sec=2.0)
    _, created = post_json(gateway, json_job(portrait, speech_wav(SECONDS, seed=3), lanes=1))
    final = wait_for_job(gateway.rest_url, created["id"], timeout=120)
    assert final["status"] == "COMPLETED", final
    assert final["lane_count"] == 1 and final["seams"] == [] and final["chunk_count"] >= 2
    assert final["lanes"] == [{"index": 0, "start_sec": 0.0, "end_sec": SECONDS, "chunk_count": final["chunk_count"],
                               "chunks_done": final["chunk_count"]}]


def test_lane_count_is_checked(gateway: Gateway, portrait: bytes) -> None:
    for lanes in (-1, 65, "2"):
        status, body = post_json(gateway, json_job(portrait, speech_wav(1.0), lanes=lanes))
        assert status == 400 and body["code"] == "VALIDATION_ERROR" and "lanes" in body["error"], body
