"""Watching while it renders: the HLS playlist grows part by part, ends with the job, stays in
sync across segments; the gRPC segment stream carries the same bytes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import grpc
import numpy as np
import pytest

from infinitetalk.v1 import gateway_pb2, gateway_pb2_grpc
from itk_common.constants import FPS
from itk_common.grpc_server import insecure_channel
from itk_gateway.live.segments import TIMELINE_START
from itk_gateway.server import Gateway
from itk_generator.preview.backend import mouth_box
from tests.e2e.checks import frame_loudness
from tests.gateway.conftest import SIZE, json_job, post_json, speech_wav
from tests.helpers.audio import speech_like
from tests.helpers.rest import call, wait_for_job
from tests.helpers.services import GeneratorHandle, start_generator
from tests.helpers.sync import best_lag, mouth_openness_series

SECONDS = 9.0


@pytest.fixture
def paced_generator(tmp_path: Path) -> Iterator[GeneratorHandle]:
    """One generator taking 0.5 s per second of audio: parts finish one after another."""
    handle = start_generator(tmp_path / "paced", cost_per_audio_sec=0.5)
    yield handle
    handle.stop()


def get(url: str) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=30) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def segments_of(playlist: str) -> list[str]:
    return [line for line in playlist.splitlines() if line and not line.startswith("#")]


def watch_playlist(url: str, job_url: str, stop: threading.Event, seen: list[tuple[str, int, bool]]) -> None:
    """Record (job status, segments listed, ended) every 50 ms."""
    while not stop.is_set():
        status, body = get(url)
        _, job = call("GET", job_url + "?include_video=false")
        if status == 200:
            text = body.decode()
            seen.append((job.get("status", ""), len(segments_of(text)), "#EXT-X-ENDLIST" in text))
        time.sleep(0.05)


def decode_stream(path: Path) -> tuple[list[float], np.ndarray, float, int]:
    """(video frame times, audio as 16 kHz mono, audio start time, audio sample rate) of an fMP4 file."""
    with av.open(str(path)) as container:
        times = sorted(float(p.pts * p.time_base) for p in container.demux(video=0) if p.pts is not None)
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        resampler = av.AudioResampler(format="flt", layout="mono", rate=16_000)
        chunks, start = [], None
        for frame in container.decode(stream):
            if start is None:
                start = float(frame.pts * frame.time_base)
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    return times, np.concatenate(chunks), float(start or 0.0), rate


def test_playlist_grows_plays_in_sync_and_ends(make_gateway: Callable[..., Gateway],
                                               paced_generator: GeneratorHandle, portrait: bytes,
                                               tmp_path: Path) -> None:
    gateway = make_gateway(generator_targets=[paced_generator.target])
    samples = speech_like(SECONDS, seed=3)
    status, created = post_json(gateway, json_job(portrait, speech_wav(SECONDS, seed=3)))
    assert status == 202, created
    job_id = created["id"]
    base = f"{gateway.rest_url}/jobs/{job_id}"
    seen: list[tuple[str, int, bool]] = []
    stop = threading.Event()
    watcher = threading.Thread(target=watch_playlist, args=(f"{base}/hls/index.m3u8", base, stop, seen))
    watcher.start()
    try:
        final = wait_for_job(gateway.rest_url, job_id, timeout=120)
    finally:
        time.sleep(0.2)
        stop.set()
        watcher.join()
    assert final["status"] == "COMPLETED", final
    chunks = final["chunk_count"]
    assert chunks >= 3

    # It grew while the job ran: segments were listed before the job completed, one more at a time,
    # and #EXT-X-ENDLIST came only with completion.
    running = [count for state, count, ended in seen if state == "RUNNING" and not ended]
    assert running and max(running) >= 1 and min(running) < chunks
    counts = [count for _, count, _ in seen]
    assert counts == sorted(counts)
    assert not any(ended for state, _, ended in seen if state == "RUNNING")

    status, body = get(f"{base}/hls/index.m3u8")
    playlist = body.decode()
    assert status == 200 and playlist.startswith("#EXTM3U")
    assert "#EXT-X-PLAYLIST-TYPE:EVENT" in playlist and playlist.rstrip().endswith("#EXT-X-ENDLIST")
    names = segments_of(playlist)
    assert len(names) == chunks
    assert '#EXT-X-MAP:URI="init-0.mp4"' in playlist
    durations = [float(line.split(":")[1].rstrip(",")) for line in playlist.splitlines()
                 if line.startswith("#EXTINF")]
    assert round(sum(durations) * FPS) == final["frames_total"]
    target = int(next(line for line in playlist.splitlines() if line.startswith("#EXT-X-TARGETDURATION:"))
                 .split(":")[1])
    assert all(round(d) <= target for d in durations)  # RFC 8216: no segment longer than the target

    # init + segments concatenated are one fMP4 stream: every frame once, at its exact time.
    stream = tmp_path / "stream.mp4"
    with stream.open("wb") as out:
        out.write(get(f"{base}/hls/init-0.mp4")[1])
        for name in names:
            status, data = get(f"{base}/hls/{name}")
            assert status == 200
            out.write(data)
    times, audio, audio_start, _rate = decode_stream(stream)
    start = float(TIMELINE_START)
    assert len(times) == final["frames_total"]
    assert times == pytest.approx([start + i / FPS for i in range(len(times))], abs=1e-6)
    # Audio starts with the first frame (the dropped priming packet aside) and lasts as long, give or
    # take the encoder's padding of its last AAC frame (segments carry no edit lists to trim it).
    aac_frame = 1024 / 16_000
    assert abs(audio_start - start) <= aac_frame + 1e-6
    assert abs(len(audio) / 16_000 - len(samples) / 16_000) <= 2 * aac_frame

    # Lip sync across segment boundaries: mouth motion follows the stream's own audio at lag 0.
    lead = round((audio_start - start) * 16_000)
    aligned = np.concatenate([np.zeros(max(0, lead), dtype=np.float32), audio])[: len(samples)]
    openness = mouth_openness_series(stream, mouth_box(portrait, SIZE, SIZE))
    loudness = frame_loudness(aligned)
    size = min(len(openness), len(loudness))
    assert best_lag(openness[:size], loudness[:size], max_lag=12) == 0

    # The playlist is what players read: FFmpeg's HLS demuxer plays it through the REST bridge.
    with av.open(f"{base}/hls/index.m3u8") as player:
        frames = sum(1 for p in player.demux(video=0) if p.pts is not None and p.size)
    assert frames == final["frames_total"]

    # The gRPC stream carries the same initialization section and segments, in order.
    with insecure_channel(gateway.grpc_target) as channel:
        pieces = list(gateway_pb2_grpc.GatewayStub(channel).StreamSegments(
            gateway_pb2.StreamSegmentsRequest(id=job_id), timeout=30))
    assert pieces[0].kind == gateway_pb2.SegmentPiece.INIT
    media_indexes = [p.index for p in pieces if p.kind == gateway_pb2.SegmentPiece.MEDIA and p.data.last]
    assert media_indexes == list(range(chunks))
    assert b"".join(p.data.data for p in pieces) == stream.read_bytes()
    starts = [p.start_sec for p in pieces if p.kind == gateway_pb2.SegmentPiece.MEDIA and p.data.last]
    assert starts[0] == pytest.approx(start) and starts == sorted(starts)

    # Deleting the video removes the stream too.
    assert call("POST", f"{base}/video/delete")[0] == 204
    status, body = get(f"{base}/hls/index.m3u8")
    assert status == 409 and b"deleted" in body
    assert not (gateway.settings.data_dir / "live" / job_id).exists()


def test_no_stream_for_dry_runs_unknown_or_cancelled_jobs(make_gateway: Callable[..., Gateway],
                                                          slow_generator: GeneratorHandle,
                                                          portrait: bytes) -> None:
    gateway = make_gateway(generator_targets=[slow_generator.target])
    status, created = post_json(gateway, json_job(portrait, speech_wav(3.0), dry_run=True))
    assert status == 202
    wait_for_job(gateway.rest_url, created["id"], timeout=60)
    status, body = get(f"{gateway.rest_url}/jobs/{created['id']}/hls/index.m3u8")
    assert status == 409 and b"dry run" in body
    assert get(f"{gateway.rest_url}/jobs/job-1-00000000/hls/index.m3u8")[0] == 404
    # Audio the splitter refuses: the job never exists, and no stream folder is left behind.
    status, body = post_json(gateway, json_job(portrait, b"not audio at all" * 64))
    assert status == 400 and body["code"] == "VALIDATION_ERROR"
    time.sleep(0.5)
    assert list((gateway.settings.data_dir / "live").iterdir()) == []

    status, created = post_json(gateway, json_job(portrait, speech_wav(6.0)))
    job_id = created["id"]
    base = f"{gateway.rest_url}/jobs/{job_id}"
    for _ in range(100):
        if get(f"{base}/hls/index.m3u8")[0] == 200:
            break
        time.sleep(0.05)
    assert get(f"{base}/hls/../../config")[0] == 404
    assert get(f"{base}/hls/audio.m4a")[0] == 404  # only listed segment files are served

    with insecure_channel(gateway.grpc_target) as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        stream = stub.StreamSegments(gateway_pb2.StreamSegmentsRequest(id=job_id), timeout=30)
        assert call("POST", f"{base}/cancel")[0] == 200
        with pytest.raises(grpc.RpcError) as failure:
            list(stream)
        assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    status, body = get(f"{base}/hls/index.m3u8")
    assert status == 409 and b"CANCELLED" in body
    assert not (gateway.settings.data_dir / "live" / job_id).exists()
