"""Stitcher.Stitch over a real gRPC server on 127.0.0.1."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from infinitetalk.v1 import common_pb2, stitcher_pb2
from itk_common.constants import MAX_PIECE_BYTES
from itk_common.grpc_server import insecure_channel
from itk_common.streaming import iter_file_pieces
from itk_common.video import probe_video

from .media import (
    HEIGHT,
    WIDTH,
    frame_numbers,
    moov_before_mdat,
    planned_frames,
    write_mpeg4_part,
    write_parts,
    write_recording,
)

SMALL_PIECE = 2048


def header(frame_counts: list[int], chunk_count: int | None = None) -> stitcher_pb2.StitchRequest:
    return stitcher_pb2.StitchRequest(header=stitcher_pb2.StitchHeader(
        job_id="job-1", chunk_count=len(frame_counts) if chunk_count is None else chunk_count, fps=25,
        width=WIDTH, height=HEIGHT, frame_counts=frame_counts))


def audio_requests(path: Path) -> list[stitcher_pb2.StitchRequest]:
    return [stitcher_pb2.StitchRequest(audio=common_pb2.DataPiece(data=data, last=last))
            for data, last in iter_file_pieces(path, SMALL_PIECE)]


def part_requests(index: int, path: Path) -> list[stitcher_pb2.StitchRequest]:
    return [stitcher_pb2.StitchRequest(part=stitcher_pb2.PartData(index=index, data=data, last=last))
            for data, last in iter_file_pieces(path, SMALL_PIECE)]


def interleave(*streams: list[stitcher_pb2.StitchRequest]) -> Iterator[stitcher_pb2.StitchRequest]:
    """Round-robin over several piece sequences, each kept in its own order."""
    iterators = [iter(stream) for stream in streams]
    while iterators:
        for iterator in list(iterators):
            item = next(iterator, None)
            if item is None:
                iterators.remove(iterator)
            else:
                yield item


def collect(responses: Iterator[stitcher_pb2.StitchResponse], out: Path) -> stitcher_pb2.StitchSummary:
    pieces = []
    summary = None
    with out.open("wb") as handle:
        for response in responses:
            assert summary is None, "nothing may follow the summary"
            if response.HasField("video"):
                assert len(response.video.data) <= MAX_PIECE_BYTES
                pieces.append(response.video.last)
                handle.write(response.video.data)
            else:
                summary = response.summary
    assert pieces and pieces[-1] and not any(pieces[:-1]), "exactly the final piece is marked last"
    assert summary is not None
    return summary


def assert_spool_empty(spool_dir: Path) -> None:
    # The handler cleans up before the error reaches the client, except after a client cancel,
    # where the server notices on its own schedule.
    deadline = time.monotonic() + 20
    while any(spool_dir.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(spool_dir.iterdir()) == []


def test_health_is_serving(stitcher_target: str) -> None:
    with insecure_channel(stitcher_target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="infinitetalk.v1.Stitcher"))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_out_of_order_interleaved_upload_comes_back_in_chunk_order(tmp_path, stub, spool_dir) -> None:
    counts = [14, 1, 21, 9]
    parts = write_parts(tmp_path, counts)
    audio = write_recording(tmp_path / "speech.wav", sum(counts))
    uploads = interleave(part_requests(3, parts[3]), audio_requests(audio), part_requests(0, parts[0]),
                         part_requests(2, parts[2]), part_requests(1, parts[1]))

    out = tmp_path / "stitched.mp4"
    summary = collect(stub.Stitch(iter([header(counts), *uploads])), out)

    assert frame_numbers(out) == list(range(sum(counts)))
    assert probe_video(out).frame_count == summary.frame_count == sum(counts)
    assert (summary.copied_parts, summary.reencoded_parts) == (4, 0)
    assert summary.video_size == out.stat().st_size
    assert 0 <= summary.video_duration_sec - summary.audio_duration_sec < 1 / 25
    assert moov_before_mdat(out)
    assert_spool_empty(spool_dir)


def test_summary_counts_a_reencoded_part(tmp_path, stub, spool_dir) -> None:
    audio = write_recording(tmp_path / "speech.m4a", 25, "m4a")
    counts = [12, planned_frames(audio) - 12]
    parts = write_parts(tmp_path, counts)
    parts[1] = write_mpeg4_part(tmp_path / "other.mp4", 12, counts[1], WIDTH + 32, HEIGHT)
    uploads = [*part_requests(1, parts[1]), *audio_requests(audio), *part_requests(0, parts[0])]

    out = tmp_path / "stitched.mp4"
    summary = collect(stub.Stitch(iter([header(counts), *uploads])), out)

    assert (summary.copied_parts, summary.reencoded_parts) == (1, 1)
    assert frame_numbers(out) == list(range(sum(counts)))
    assert_spool_empty(spool_dir)


def rejection(stub, requests: list[stitcher_pb2.StitchRequest]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.Stitch(iter(requests)))
    return caught.value


@pytest.fixture
def two_parts(tmp_path: Path) -> tuple[dict[int, Path], Path]:
    parts = write_parts(tmp_path, [10, 11])
    return parts, write_recording(tmp_path / "speech.wav", 21)


def test_wrong_frame_count_is_invalid_argument(stub, spool_dir, two_parts) -> None:
    parts, audio = two_parts
    error = rejection(stub, [header([10, 12]), *audio_requests(audio),
                             *part_requests(0, parts[0]), *part_requests(1, parts[1])])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "chunk 1" in error.details()
    assert_spool_empty(spool_dir)


def test_missing_part_is_invalid_argument(stub, spool_dir, two_parts) -> None:
    parts, audio = two_parts
    error = rejection(stub, [header([10, 11]), *audio_requests(audio), *part_requests(1, parts[1])])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "chunks 0" in error.details()
    assert_spool_empty(spool_dir)


@pytest.mark.parametrize(("index", "message"), [(2, "out of range"), (-1, "out of range"),
                                                (0, "chunk 0: part sent twice")])
def test_bad_part_index_is_invalid_argument(stub, spool_dir, two_parts, index, message) -> None:
    parts, audio = two_parts
    error = rejection(stub, [header([10, 11]), *part_requests(0, parts[0]), *part_requests(index, parts[1]),
                             *audio_requests(audio)])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in error.details()
    assert_spool_empty(spool_dir)


@pytest.mark.parametrize("first", [
    stitcher_pb2.StitchRequest(audio=common_pb2.DataPiece(data=b"x", last=True)),
    stitcher_pb2.StitchRequest(header=stitcher_pb2.StitchHeader(chunk_count=2, fps=25, width=96, height=64,
                                                                 frame_counts=[10])),
])
def test_bad_or_absent_header_is_invalid_argument(stub, spool_dir, first) -> None:
    error = rejection(stub, [first])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert_spool_empty(spool_dir)


def test_client_disconnecting_mid_upload_leaves_nothing_behind(stub, spool_dir, two_parts) -> None:
    parts, _audio = two_parts
    sent_some = threading.Event()
    release = threading.Event()

    def uploads() -> Iterator[stitcher_pb2.StitchRequest]:
        yield header([10, 11])
        yield from part_requests(0, parts[0])
        sent_some.set()
        release.wait(30)

    call = stub.Stitch(uploads())
    assert sent_some.wait(30)
    deadline = time.monotonic() + 20
    while not any(spool_dir.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert any(spool_dir.iterdir()), "the server should be spooling the upload"
    call.cancel()
    release.set()
    assert_spool_empty(spool_dir)
