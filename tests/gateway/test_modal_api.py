"""The Modal app's API: a client written for it (the Modal README's submit / poll / download
flow, proxy-auth headers included) works against the gateway with only its URLs changed."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from itk_common.video import probe_video
from itk_gateway.api.modal_compat import default_size, modal_credentials
from itk_gateway.server import Gateway
from tests.gateway.conftest import PORTRAIT, speech_wav
from tests.helpers.file_server import FileServer, file_server
from tests.helpers.services import GeneratorHandle
from tests.helpers.video import write_video

HEADERS = {"Modal-Key": "wk-test-id", "Modal-Secret": "ws-test-secret"}


class ModalAppClient:
    """What a client of the Modal deployment does: three endpoint URLs and proxy-auth headers."""

    def __init__(self, submit_url: str, result_url: str, result_head_url: str) -> None:
        self.submit_url, self.result_url, self.result_head_url = submit_url, result_url, result_head_url
        self.http = httpx.Client(headers=HEADERS, timeout=60)

    def submit(self, image: str, audio1: str, prompt: str | None = None) -> str:
        reply = self.http.post(self.submit_url, json={"image": image, "audio1": audio1, "prompt": prompt})
        reply.raise_for_status()
        return reply.json()["call_id"]

    def poll(self, call_id: str, timeout: float = 120) -> list[int]:
        """HEAD until 200; the statuses seen."""
        seen: list[int] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.http.head(self.result_head_url, params={"call_id": call_id}).status_code
            seen.append(status)
            if status != 202:
                return seen
            time.sleep(0.1)
        raise TimeoutError(call_id)

    def download(self, call_id: str, output: Path) -> httpx.Response:
        reply = self.http.get(self.result_url, params={"call_id": call_id})
        if reply.status_code == 200:
            output.write_bytes(reply.content)
        return reply


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FileServer]:
    folder = tmp_path_factory.mktemp("modal-files")
    with file_server() as started:
        started.files["portrait.png"] = PORTRAIT.read_bytes()
        started.files["speech.wav"] = speech_wav(2.0, seed=2)
        started.files["source.mp4"] = write_video(folder / "source.mp4", 3.0, fps=30).read_bytes()
        yield started


def client_for(gateway: Gateway) -> ModalAppClient:
    base = f"{gateway.rest_url}/modal"
    return ModalAppClient(f"{base}/submit", f"{base}/result", f"{base}/result-head")


def test_modal_client_flow(make_gateway: Callable[..., Gateway], slow_generator: GeneratorHandle,
                           server: FileServer, tmp_path: Path) -> None:
    # A slow generator keeps the job running long enough to be polled while it runs.
    gateway = make_gateway(url_allow_hosts=["127.0.0.1"], generator_targets=[slow_generator.target])
    client = client_for(gateway)
    call_id = client.submit(server.url("portrait.png"), server.url("speech.wav"), "A person talking")
    assert client.download(call_id, tmp_path / "early.mp4").status_code == 202
    seen = client.poll(call_id)
    assert seen[0] == 202 and seen[-1] == 200, seen
    reply = client.download(call_id, tmp_path / "video.mp4")
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "video/mp4"
    assert reply.headers["content-disposition"].startswith("attachment")
    info = probe_video(tmp_path / "video.mp4")
    assert info.frame_count == 50 and info.has_audio
    # No size in the request: the portrait's aspect ratio (square) at about 640x640.
    assert (info.width, info.height) == (640, 640)


def test_modal_client_dubs_a_video(make_gateway: Callable[..., Gateway], server: FileServer,
                                   tmp_path: Path) -> None:
    gateway = make_gateway(url_allow_hosts=["127.0.0.1"])
    client = client_for(gateway)
    call_id = client.submit(server.url("source.mp4"), server.url("speech.wav"))
    assert client.poll(call_id)[-1] == 200
    assert client.download(call_id, tmp_path / "dub.mp4").status_code == 200
    info = probe_video(tmp_path / "dub.mp4")
    assert (info.width, info.height) == default_size(96, 64) and info.frame_count == 50


def test_modal_errors(make_gateway: Callable[..., Gateway], server: FileServer) -> None:
    gateway = make_gateway()  # no allow-list: the loopback file server is refused
    client = client_for(gateway)
    reply = client.http.post(client.submit_url, json={"image": server.url("portrait.png"),
                                                      "audio1": server.url("speech.wav")})
    assert reply.status_code == 400
    assert "127.0.0.1" in reply.json()["detail"] and "loopback" in reply.json()["detail"]
    reply = client.http.post(client.submit_url, json={"image": server.url("portrait.png")})
    assert reply.status_code == 400 and reply.json()["detail"].startswith("audio1"), reply.text
    reply = client.http.post(client.submit_url, content=b"{not json", headers={"Content-Type": "application/json"})
    assert reply.status_code == 400 and reply.json()["code"] == "INVALID_JSON"
    unknown = "job-1700000000-0123abcd"
    assert client.http.get(client.result_url, params={"call_id": unknown}).status_code == 404
    assert client.http.head(client.result_head_url, params={"call_id": unknown}).status_code == 404
    reply = client.http.get(client.result_url)
    assert reply.status_code == 400 and "call_id" in reply.json()["detail"]


def test_modal_credentials_pair() -> None:
    assert modal_credentials({"modal-key": "id", "modal-secret": "secret"}) == ("id", "secret")
    assert modal_credentials({"modal-key": "id"}) is None
    assert modal_credentials({}) is None


def test_modal_refusal_tells_a_modal_client_what_to_send(make_gateway: Callable[..., Gateway]) -> None:
    """With keys on, a Modal client without (or with a wrong) proxy-auth pair gets a 401 whose
    `detail` names the Modal-Key / Modal-Secret headers, as the Modal app's errors carry `detail`."""
    key = "modal-client-key-0123456789"
    gateway = make_gateway(api_keys=f"modal={key}")
    submit = f"{gateway.rest_url}/modal/submit"
    body = {"image": "https://example.com/p.png", "audio1": "https://example.com/a.wav"}
    missing = httpx.post(submit, json=body, timeout=30)
    assert missing.status_code == 401 and missing.json()["code"] == "UNAUTHORIZED"
    detail = missing.json()["detail"]
    assert "Modal-Key" in detail and "Modal-Secret: <API key>" in detail, detail
    wrong = httpx.get(f"{gateway.rest_url}/modal/result", params={"call_id": "x"},
                      headers={"Modal-Key": "me", "Modal-Secret": "not-a-key-of-this-gateway"}, timeout=30)
    assert wrong.status_code == 401 and "Modal-Secret" in wrong.json()["detail"]
    assert "not an API key" in wrong.json()["detail"]
    # The pair with the key gets through to the API (here: an unknown call id).
    known = httpx.get(f"{gateway.rest_url}/modal/result", params={"call_id": "job-1700000000-0123abcd"},
                      headers={"Modal-Key": "me", "Modal-Secret": key}, timeout=30)
    assert known.status_code == 404
