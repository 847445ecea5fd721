"""push_to_s3 against moto in server mode: presigned URLs that really download the MP4."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import grpc
import pytest
from moto.server import ThreadedMotoServer

from infinitetalk.v1 import gateway_pb2, gateway_pb2_grpc
from itk_common.grpc_server import insecure_channel
from itk_common.video import probe_video
from tests.gateway.conftest import json_job, leftovers, post_json, speech_wav
from tests.helpers.rest import call, wait_for_job

BUCKET = "itk-results"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    yield endpoint
    server.stop()


@pytest.fixture
def s3_gateway(make_gateway, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    client = boto3.client("s3", region_name="us-east-1", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket=BUCKET)
    gateway = make_gateway(s3_bucket=BUCKET, s3_region="us-east-1", s3_endpoint_url=s3_endpoint)
    return gateway, client


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as reply:
        return reply.read()


def test_push_to_s3(s3_gateway, portrait: bytes, tmp_path: Path) -> None:
    gateway, client = s3_gateway
    status, created = post_json(gateway, json_job(portrait, speech_wav(4.0), push_to_s3=True))
    assert status == 202, created
    final = wait_for_job(gateway.rest_url, created["id"], timeout=90)
    assert final["status"] == "COMPLETED", final
    assert "video_base64" not in final and final["video_url"].startswith(gateway.settings.s3_endpoint_url)
    # Nothing stays on local disk: the result went to the bucket.
    assert leftovers(gateway) == []

    video = tmp_path / "from-s3.mp4"
    video.write_bytes(fetch(final["video_url"]))
    assert probe_video(video).frame_count == 100
    # A fresh URL on every read, each one working.
    again = call("GET", f"{gateway.rest_url}/jobs/{created['id']}")[1]
    assert fetch(again["video_url"]) == video.read_bytes()
    # The video endpoint redirects to the bucket; urllib follows the redirect.
    assert fetch(f"{gateway.rest_url}/jobs/{created['id']}/video") == video.read_bytes()
    # gRPC streams it from the bucket.
    with insecure_channel(gateway.grpc_target) as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        pieces = list(stub.DownloadVideo(gateway_pb2.DownloadVideoRequest(id=created["id"])))
        assert b"".join(p.data for p in pieces) == video.read_bytes() and pieces[-1].last

        status, _ = call("POST", f"{gateway.rest_url}/jobs/{created['id']}/video/delete")
        assert status == 204
        assert client.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0
        after = call("GET", f"{gateway.rest_url}/jobs/{created['id']}")[1]
        assert "video_url" not in after and not after["video_available"]
        with pytest.raises(grpc.RpcError) as raised:
            list(stub.DownloadVideo(gateway_pb2.DownloadVideoRequest(id=created["id"])))
        assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
