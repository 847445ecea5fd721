"""A video as the reference (dubbing), end to end on the preview backend: REST and gRPC, any
frame rate, rotation, a video shorter than the audio, the video's own sound, bad videos.

The source video shows a bar crossing the picture, so each output frame's bar position tells
which source time it shows; the preview draws the mouth on top, so lip sync is checked as for
portraits.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest

from infinitetalk.v1 import gateway_pb2, gateway_pb2_grpc
from itk_common.constants import FPS
from itk_common.grpc_server import insecure_channel
from itk_common.source_video import ExtendMode, source_index
from itk_common.streaming import data_pieces, join_pieces
from itk_common.video import probe_video
from itk_gateway.server import Gateway
from itk_generator.preview import mouth_box
from tests.e2e.checks import frame_loudness
from tests.gateway.conftest import leftovers, post_json, speech_wav
from tests.helpers.audio import encode_audio, speech_like
from tests.helpers.rest import _multipart, call, download, wait_for_job
from tests.helpers.sync import best_lag, mouth_openness_series
from tests.helpers.video import bar_position, bar_positions, bar_x, source_frame, write_video

WIDTH, HEIGHT = 96, 64


def expected_positions(frames: int, fps: float, seconds: float, width: int = WIDTH,
                       extend: ExtendMode = ExtendMode.HOLD) -> np.ndarray:
    """The bar's position in each 25 fps output frame: output frame n shows the normalised
    source's frame n (extended past its end by `extend`), which shows the source frame on screen
    at that frame's time."""
    normalized = round(seconds * FPS)
    source_frames = round(seconds * fps)
    shown = []
    for n in range(frames):
        time = source_index(n, normalized, extend) / FPS
        source = min(int(time * fps + 1e-6), source_frames - 1)
        shown.append(round(bar_x(source / fps, width, seconds)))
    return np.array(shown, dtype=float)


def check_dub(video: Path, samples: np.ndarray, width: int, height: int) -> None:
    """Length follows the audio; the mouth follows the sound at lag 0."""
    info = probe_video(video)
    loudness = frame_loudness(samples)
    assert info.frame_count == len(loudness)
    assert (info.width, info.height) == (width, height)
    assert info.has_audio
    box = mouth_box(source_frame(0.0, width, height, 1.0), width, height)
    openness = mouth_openness_series(video, box)
    assert best_lag(openness, loudness, max_lag=12) == 0


def submit_json(gateway: Gateway, video: bytes, audio: bytes | None, **fields: object) -> dict:
    body: dict = {"image_base64": base64.b64encode(video).decode(), "width": WIDTH, "height": HEIGHT, **fields}
    if audio is not None:
        body["audio_base64"] = base64.b64encode(audio).decode()
    status, created = post_json(gateway, body)
    assert status == 202, created
    return wait_for_job(gateway.rest_url, created["id"], timeout=180)


def test_video_reference_through_rest(gateway: Gateway, tmp_path: Path) -> None:
    """A 30 fps video longer than the audio: the output has the audio's length, shows the
    source's motion retimed to 25 fps across every chunk, and its lips follow the sound."""
    samples = speech_like(7.0, seed=3)
    video = write_video(tmp_path / "source.mp4", 9.0, fps=30)
    final = submit_json(gateway, video.read_bytes(), encode_audio(samples, 16_000, "wav"))
    assert final["status"] == "COMPLETED", final
    assert final["chunk_count"] >= 2, "the motion must hold across chunk seams"
    result = tmp_path / "result.mp4"
    result.write_bytes(base64.b64decode(final["video_base64"]))
    check_dub(result, samples, WIDTH, HEIGHT)
    positions = bar_positions(result)
    expected = expected_positions(len(positions), 30, 9.0)
    assert np.max(np.abs(positions - expected)) <= 1.0, (positions, expected)


def test_video_shorter_than_the_audio(gateway: Gateway, tmp_path: Path) -> None:
    """Past the video's end: the last frame holds (the reference's way) or, with
    video_extend=pingpong, the video plays backward and forward again, without a jump."""
    samples = speech_like(5.0, seed=5)
    audio = encode_audio(samples, 16_000, "wav")
    video = write_video(tmp_path / "short.mp4", 2.0, fps=25).read_bytes()
    for mode in ("hold", "pingpong"):
        body, content_type = _multipart({"width": str(WIDTH), "height": str(HEIGHT), "video_extend": mode},
                                        {"image": ("short.mp4", video), "audio": ("speech.wav", audio)})
        status, created = call("POST", f"{gateway.rest_url}/jobs", body, content_type)
        assert status == 202, created
        final = wait_for_job(gateway.rest_url, created["id"], timeout=180)
        assert final["status"] == "COMPLETED", final
        result = tmp_path / f"{mode}.mp4"
        result.write_bytes(download(gateway.rest_url, created["id"]))
        check_dub(result, samples, WIDTH, HEIGHT)
        positions = bar_positions(result)
        expected = expected_positions(len(positions), 25, 2.0, extend=ExtendMode(mode))
        assert np.max(np.abs(positions - expected)) <= 1.0, (mode, positions, expected)
        steps = np.abs(np.diff(positions))
        assert steps.max() <= 3.0, f"{mode}: the motion jumps"
    status, reply = post_json(gateway, {"image_base64": base64.b64encode(video).decode(),
                                        "audio_base64": base64.b64encode(audio).decode(),
                                        "width": WIDTH, "height": HEIGHT, "video_extend": "loop"})
    assert status == 400 and "video_extend" in reply["error"], reply


def test_rotated_phone_video_through_grpc(gateway: Gateway, tmp_path: Path) -> None:
    """A portrait phone recording stored landscape with rotation metadata comes out upright, at
    a variable source rate (29.97 fps) retimed to 25 fps."""
    samples = speech_like(4.0, seed=9)
    video = write_video(tmp_path / "phone.mp4", 5.0, fps=30000 / 1001, width=HEIGHT, height=WIDTH, rotation=-90)
    options = gateway_pb2.JobOptions(width=WIDTH, height=HEIGHT)

    def requests():
        yield gateway_pb2.CreateJobRequest(options=options)
        for piece in data_pieces(video.read_bytes()):
            yield gateway_pb2.CreateJobRequest(image=piece)
        for piece in data_pieces(encode_audio(samples, 16_000, "wav")):
            yield gateway_pb2.CreateJobRequest(audio=piece)

    with insecure_channel(gateway.grpc_target) as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        job = stub.CreateJob(requests())
        final = list(stub.WatchJob(gateway_pb2.WatchJobRequest(id=job.id)))[-1]
        assert final.status == gateway_pb2.COMPLETED, final
        result = tmp_path / "result.mp4"
        result.write_bytes(join_pieces(stub.DownloadVideo(gateway_pb2.DownloadVideoRequest(id=job.id))))
    # Stored HEIGHT x WIDTH, shown a quarter turn clockwise: the displayed shape is the request's.
    info = probe_video(result)
    assert (info.width, info.height, info.frame_count) == (WIDTH, HEIGHT, 100)
    # The bar moved along the stored width; turning output frames back counterclockwise
    # restores the stored orientation, where it must be where the source had it at n / 25 s.
    with av.open(str(result)) as container:
        positions = np.array([bar_position(np.rot90(frame.to_ndarray(format="rgb24"), 1))
                              for frame in container.decode(video=0)])
    expected = expected_positions(len(positions), 30000 / 1001, 5.0, width=HEIGHT)
    assert np.max(np.abs(positions - expected)) <= 1.0, (positions, expected)


def test_the_video_own_sound_when_no_audio_is_sent(gateway: Gateway, tmp_path: Path) -> None:
    samples = speech_like(3.0, seed=11)
    video = write_video(tmp_path / "talk.webm", 3.0, fps=24, codec="libvpx-vp9", container="webm", audio=samples)
    final = submit_json(gateway, video.read_bytes(), None)
    assert final["status"] == "COMPLETED", final
    assert abs(final["duration_sec"] - 3.0) <= 0.1, final
    assert final["frames_total"] == round(final["duration_sec"] * FPS)


def truncated(data: bytes) -> bytes:
    """The first half of a file, as an interrupted upload leaves it."""
    return data[: len(data) // 2]


def test_bad_videos_are_refused_clearly(make_gateway: Callable[..., Gateway], tmp_path: Path) -> None:
    gateway = make_gateway(max_video_sec=4.0, max_video_pixels=200 * 200)
    audio = speech_wav(2.0)
    good = write_video(tmp_path / "good.mp4", 2.0).read_bytes()
    faststart = _faststart(tmp_path)
    streamed = write_video(tmp_path / "streamed.mkv", 6.0, container="matroska").read_bytes()
    cases = [
        (truncated(good), "corrupt or truncated"),  # index at the end: it is cut off with the rest
        (faststart[: len(faststart) * 9 // 10], "truncated: it declares 3.0 s"),  # index first, frames cut off
        (good[:8] + b"\0" * 2000, "not a readable video"),
        (write_video(tmp_path / "long.mp4", 5.0).read_bytes(), "more than the 4 s"),
        (streamed, "more than the 4 s"),
        (write_video(tmp_path / "huge.mp4", 0.2, width=320, height=240).read_bytes(), "320x240"),
    ]
    for data, words in cases:
        body = {"image_base64": base64.b64encode(data).decode(), "audio_base64": base64.b64encode(audio).decode(),
                "width": WIDTH, "height": HEIGHT}
        status, reply = post_json(gateway, body)
        assert status == 400, reply
        assert reply["code"] == "VALIDATION_ERROR" and reply["error"].startswith("image_base64: "), reply
        assert words in reply["error"], reply
    silent = {"image_base64": base64.b64encode(good).decode(), "width": WIDTH, "height": HEIGHT}
    status, reply = post_json(gateway, silent)
    assert status == 400 and "audio" in reply["error"] and "no sound track" in reply["error"], reply
    assert leftovers(gateway) == []


def _faststart(tmp_path: Path) -> bytes:
    path = tmp_path / "faststart.mp4"
    write_video(path, 3.0)  # PyAV's mp4 muxer writes the index last; remux it to the front
    fast = tmp_path / "fast.mp4"
    with av.open(str(path)) as source, av.open(str(fast), "w", format="mp4",
                                               options={"movflags": "+faststart"}) as output:
        stream = output.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                output.mux(packet)
    return fast.read_bytes()


@pytest.mark.parametrize(("name", "container", "codec"), [("clip.mov", "mov", "libx264"),
                                                           ("clip.mkv", "matroska", "mpeg4")])
def test_mov_and_mkv_are_recognised(gateway: Gateway, tmp_path: Path, name: str, container: str,
                                    codec: str) -> None:
    video = write_video(tmp_path / name, 1.0, container=container, codec=codec).read_bytes()
    final = submit_json(gateway, video, speech_wav(1.0), dry_run=True)
    assert final["status"] == "COMPLETED", final
    assert json.dumps(final)  # a plain job state, nothing video-specific to leak
