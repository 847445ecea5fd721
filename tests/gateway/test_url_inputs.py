"""image_url / audio_url: fetched from a loopback server the test starts (allow-listed), and the
URLs the gateway must refuse, each answered with a 4xx naming the host and the reason."""

from __future__ import annotations

import base64
import ipaddress
import os
from collections.abc import Callable, Iterator

import grpc
import pytest

from infinitetalk.v1 import gateway_pb2, gateway_pb2_grpc
from itk_common.grpc_server import insecure_channel
from itk_gateway.jobs.fetch import AllowList, FetchSettings, UrlFetcher, refused_reason
from itk_gateway.server import Gateway
from tests.gateway.conftest import SIZE, leftovers, post_json, speech_wav
from tests.helpers.file_server import FileServer, file_server
from tests.helpers.rest import wait_for_job


@pytest.fixture(scope="module")
def server(portrait_bytes: bytes) -> Iterator[FileServer]:
    with file_server() as started:
        started.files["portrait.png"] = portrait_bytes
        started.files["speech.wav"] = speech_wav(3.0, seed=7)
        started.files["noise.bin"] = os.urandom(4096)
        started.files["big.bin"] = b"\0" * (3 * 1024 * 1024 // 2)
        yield started


@pytest.fixture(scope="module")
def portrait_bytes() -> bytes:
    from tests.gateway.conftest import PORTRAIT

    return PORTRAIT.read_bytes()


def url_job(**fields: object) -> dict:
    return {"width": SIZE, "height": SIZE, **fields}


def assert_refused(gateway: Gateway, body: dict, status: int, *words: str) -> None:
    code, reply = post_json(gateway, body)
    assert code == status, reply
    assert reply["code"] == "VALIDATION_ERROR", reply
    for word in words:
        assert word in reply["error"], reply
    assert leftovers(gateway) == []


def test_json_job_from_urls_through_a_redirect(make_gateway: Callable[..., Gateway], server: FileServer) -> None:
    gateway = make_gateway(url_allow_hosts=["127.0.0.1"])
    audio_url = f"{server.base_url}/redirect?to={server.url('speech.wav')}"
    status, created = post_json(gateway, url_job(image_url=server.url("portrait.png"), audio_url=audio_url))
    assert status == 202, created
    final = wait_for_job(gateway.rest_url, created["id"], timeout=120)
    assert final["status"] == "COMPLETED", final
    assert final["frames_total"] == 75
    assert "/redirect" in server.requests and "/files/speech.wav" in server.requests


def test_grpc_job_from_urls(make_gateway: Callable[..., Gateway], server: FileServer) -> None:
    gateway = make_gateway(url_allow_hosts=[f"127.0.0.1:{server.server_address[1]}"])
    options = gateway_pb2.JobOptions(width=SIZE, height=SIZE, image_url=server.url("portrait.png"),
                                     audio_url=server.url("speech.wav"))
    with insecure_channel(gateway.grpc_target) as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        job = stub.CreateJob(iter([gateway_pb2.CreateJobRequest(options=options)]))
        final = list(stub.WatchJob(gateway_pb2.WatchJobRequest(id=job.id)))[-1]
        assert final.status == gateway_pb2.COMPLETED, final
        # Refused URLs are INVALID_ARGUMENT with the same message as REST.
        options = gateway_pb2.JobOptions(width=SIZE, height=SIZE, image_url="http://10.20.30.40/p.png",
                                         audio_url=server.url("speech.wav"))
        with pytest.raises(grpc.RpcError) as refused:
            stub.CreateJob(iter([gateway_pb2.CreateJobRequest(options=options)]))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "10.20.30.40" in refused.value.details() and "private" in refused.value.details()


def test_refused_urls(make_gateway: Callable[..., Gateway], server: FileServer) -> None:
    # Only the file server's own port is trusted, so other loopback ports and names are not.
    port = server.server_address[1]
    gateway = make_gateway(url_allow_hosts=[f"127.0.0.1:{port}"])
    audio = server.url("speech.wav")
    cases = [
        (f"http://localhost:{port}/files/portrait.png", 400, ("localhost", "loopback")),
        ("http://10.1.2.3/portrait.png", 400, ("10.1.2.3", "private")),
        ("http://169.254.169.254/latest/meta-data", 400, ("169.254.169.254", "link-local")),
        ("http://[::1]:9/portrait.png", 400, ("::1", "loopback")),
        ("ftp://example.com/portrait.png", 400, ("only http and https",)),
        (f"{server.base_url}/redirect?to=http://169.254.169.254/latest", 400, ("169.254.169.254", "link-local")),
        (f"{server.base_url}/redirect?to=http://127.0.0.1:1/x", 400, ("127.0.0.1", "loopback")),
        (f"{server.base_url}/files/missing.png", 400, ("127.0.0.1", "404")),
        (server.url("noise.bin"), 400, ("image_url from 127.0.0.1", "image")),
    ]
    for image_url, status, words in cases:
        assert_refused(gateway, url_job(image_url=image_url, audio_url=audio), status, "image_url", *words)
    assert_refused(gateway, url_job(image_url=server.url("portrait.png"), audio_url=server.url("noise.bin")),
                   400, "audio_url from 127.0.0.1", "not")
    both = url_job(image_url=server.url("portrait.png"), audio_url=audio,
                   image_base64=base64.b64encode(b"x").decode())
    assert_refused(gateway, both, 400, "image_base64, image_url")


def test_loopback_needs_the_allow_list(make_gateway: Callable[..., Gateway], server: FileServer) -> None:
    gateway = make_gateway()
    assert_refused(gateway, url_job(image_url=server.url("portrait.png"), audio_url=server.url("speech.wav")),
                   400, "image_url", "127.0.0.1", "loopback",
                   f"URL_FETCH_ALLOW_HOSTS (e.g. 127.0.0.1:{server.server_address[1]})")


def test_too_large_and_too_slow(make_gateway: Callable[..., Gateway], server: FileServer) -> None:
    gateway = make_gateway(url_allow_hosts=["127.0.0.1"], max_upload_mb=1, url_timeout_sec=1.0)
    # Refused from its Content-Length, before the body is read.
    assert_refused(gateway, url_job(image_url=server.url("big.bin"), audio_url=server.url("speech.wav")),
                   413, "image_url", "127.0.0.1", "too large", "1572864 bytes")
    # Without a Content-Length (chunked), counted as it arrives.
    assert_refused(gateway, url_job(image_url=f"{server.base_url}/chunked/big.bin",
                                    audio_url=server.url("speech.wav")),
                   413, "image_url", "127.0.0.1", "too large", "MAX_UPLOAD_MB=1")
    assert_refused(gateway, url_job(image_url=server.url("portrait.png"), audio_url=f"{server.base_url}/slow"),
                   400, "audio_url", "127.0.0.1", "timed out")


@pytest.mark.parametrize(("address", "refused"), [
    ("8.8.8.8", None), ("2606:4700:4700::1111", None), ("127.0.0.1", "loopback"), ("10.0.0.1", "private"),
    ("172.16.5.4", "private"), ("192.168.1.1", "private"), ("169.254.169.254", "link-local"),
    ("100.64.0.1", "non-public"), ("0.0.0.0", "unspecified"), ("::1", "loopback"), ("fe80::1", "link-local"),
    ("fd00:ec2::254", "private"), ("::ffff:127.0.0.1", "loopback"), ("224.0.0.1", "multicast"),
])
def test_address_classes(address: str, refused: str | None) -> None:
    reason = refused_reason(ipaddress.ip_address(address))
    assert (reason is None) if refused is None else (refused in (reason or "")), reason


def test_allow_list_entries() -> None:
    allow = AllowList.parse(["Files.Internal", "127.0.0.1:8000", "10.0.0.0/8", "::1"])
    assert allow.allows_host("files.internal", 443)
    assert allow.allows_host("127.0.0.1", 8000) and not allow.allows_host("127.0.0.1", 8001)
    assert allow.allows_address(ipaddress.ip_address("10.9.8.7"))
    assert allow.allows_address(ipaddress.ip_address("::1"))
    assert not allow.allows_address(ipaddress.ip_address("192.168.0.1"))


def test_the_next_checked_address_is_tried_when_one_refuses(server: FileServer) -> None:
    """A host with several addresses (`localhost`: ::1, then 127.0.0.1) is fetched from the first
    that takes the connection, as a resolving client would; every one of them was checked."""
    def resolver(_host: str, _port: int) -> list:
        return [ipaddress.ip_address("127.0.0.2"), ipaddress.ip_address("127.0.0.1")]  # nothing on .2

    port = server.base_url.rsplit(":", 1)[1]
    fetcher = UrlFetcher(FetchSettings(allow=AllowList.parse(["files.test"])), resolver=resolver)
    received = bytearray()
    try:
        assert fetcher.fetch("image_url", f"http://files.test:{port}/files/noise.bin", received.extend) == "files.test"
    finally:
        fetcher.close()
    assert bytes(received) == server.files["noise.bin"]
