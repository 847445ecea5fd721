"""Clients of the splitter, generators and stitcher, written on the generated stubs only.

Each call streams files from disk and to disk in <= 1 MiB pieces, so no media blob sits whole
in memory. Every call is registered in a CallSet, so cancelling a job cancels its RPCs at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import grpc

from infinitetalk.v1 import (
    generator_pb2,
    quality_pb2,
    splitter_pb2,
    splitter_pb2_grpc,
    stitcher_pb2,
    stitcher_pb2_grpc,
)
from itk_common.grpc_server import insecure_channel
from itk_common.streaming import data_pieces, file_data_pieces, iter_file_pieces
from itk_gateway.storage.files import tmp_path


class ProtocolError(Exception):
    """A backend's stream did not follow the contract (ended early, wrong order)."""


class CallSet:
    """The live RPCs of one job; cancel_all() stops every one of them and any started later."""

    def __init__(self) -> None:
        self._calls: set[grpc.Future] = set()
        self._lock = threading.Lock()
        self.cancelled = threading.Event()

    def add(self, call: grpc.Future) -> None:
        with self._lock:
            self._calls.add(call)
        if self.cancelled.is_set():
            call.cancel()

    def discard(self, call: grpc.Future) -> None:
        with self._lock:
            self._calls.discard(call)

    def cancel_all(self) -> None:
        self.cancelled.set()
        with self._lock:
            calls = list(self._calls)
        for call in calls:
            call.cancel()


# -- splitter ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SplitChunk:
    span: splitter_pb2.ChunkSpan
    wav_path: Path


class SplitterClient:
    def __init__(self, target: str) -> None:
        self.target = target
        self.channel = insecure_channel(target)
        self.stub = splitter_pb2_grpc.SplitterStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def split(self, audio: Path | list[Path], options: splitter_pb2.SplitOptions, wav_path: Callable[[int], Path],
              calls: CallSet, mix_path: Path | None = None) -> Iterator[SplitChunk | splitter_pb2.SplitPlan]:
        """Yield each chunk once its WAV is on disk, then the plan. `audio` is the recording, or
        each speaker's recording in turn (person 1 first); a multi-person split's mix is written
        to `mix_path` before the first chunk is yielded."""
        recordings = audio if isinstance(audio, list) else [audio]

        def requests() -> Iterator[splitter_pb2.SplitRequest]:
            yield splitter_pb2.SplitRequest(options=options)
            for recording in recordings:
                for piece in file_data_pieces(recording):
                    yield splitter_pb2.SplitRequest(audio=piece)

        call = self.stub.Split(requests())
        calls.add(call)
        try:
            header: splitter_pb2.ChunkHeader | None = None
            handle = None
            mix = None
            received = 0
            for event in call:
                kind = event.WhichOneof("event")
                if kind == "mix":
                    if mix_path is None:
                        raise ProtocolError("splitter sent a mix for a one-speaker recording")
                    mix = mix or tmp_path(mix_path).open("wb")
                    mix.write(event.mix.data)
                    if event.mix.last:
                        mix.close()
                        tmp_path(mix_path).replace(mix_path)
                elif kind == "chunk":
                    if header is not None:
                        raise ProtocolError("splitter sent a chunk header before the previous chunk's bytes")
                    header = event.chunk
                    target = wav_path(header.span.index)
                    handle = tmp_path(target).open("wb")
                    received = 0
                elif kind == "chunk_wav":
                    if header is None or handle is None:
                        raise ProtocolError("splitter sent chunk bytes without a header")
                    handle.write(event.chunk_wav.data)
                    received += len(event.chunk_wav.data)
                    if event.chunk_wav.last:
                        handle.close()
                        handle = None
                        if received != header.wav_size:
                            raise ProtocolError(
                                f"chunk {header.span.index}: {received} bytes, header said {header.wav_size}"
                            )
                        target = wav_path(header.span.index)
                        tmp_path(target).replace(target)
                        yield SplitChunk(header.span, target)
                        header = None
                elif kind == "plan":
                    if header is not None:
                        raise ProtocolError("splitter ended a chunk early")
                    yield event.plan
                    return
            raise ProtocolError("splitter stream ended without a plan")
        finally:
            if mix is not None:
                mix.close()
            calls.discard(call)
            call.cancel()


# -- generator -----------------------------------------------------------------------------


ProgressHandler = Callable[[generator_pb2.Progress], None]


def generate_chunk(stub, spec: generator_pb2.ChunkSpec, image: Path, wav: Path, output: Path,
                   on_progress: ProgressHandler, calls: CallSet, source_video: Path | None = None,
                   motion_in: Path | None = None, motion_out: Path | None = None) -> generator_pb2.GenerateSummary:
    """Run one Generate call; the chunk's MP4 lands at `output` only when the summary arrived.

    `source_video`: the chunk's span of a dubbing job's source video, sent first. `motion_in` (the
    previous piece's motion frames) is sent when given, and sets spec.has_motion; the motion frames
    the generator returns land at `motion_out`, also only with the summary.
    """
    if motion_in is not None:
        spec.has_motion = True

    def requests() -> Iterator[generator_pb2.GenerateRequest]:
        yield generator_pb2.GenerateRequest(spec=spec)
        if source_video is not None:
            for piece in file_data_pieces(source_video):
                yield generator_pb2.GenerateRequest(source_video=piece)
        for piece in file_data_pieces(image):
            yield generator_pb2.GenerateRequest(image=piece)
        for piece in file_data_pieces(wav):
            yield generator_pb2.GenerateRequest(audio=piece)
        if motion_in is not None:
            for piece in file_data_pieces(motion_in):
                yield generator_pb2.GenerateRequest(motion=piece)

    call = stub.Generate(requests())
    calls.add(call)
    partial = tmp_path(output)
    motion_partial = tmp_path(motion_out) if motion_out is not None else None
    summary: generator_pb2.GenerateSummary | None = None
    motion_size = 0
    try:
        with partial.open("wb") as handle, ExitStack() as stack:
            motion_handle = stack.enter_context(motion_partial.open("wb")) if motion_partial else None
            # Read to the end of the call, not just the summary: the server frees its slot as
            # the call ends, and the next chunk sent there would otherwise find it still busy.
            for event in call:
                kind = event.WhichOneof("event")
                if kind == "progress":
                    on_progress(event.progress)
                elif kind == "video" and summary is None:
                    handle.write(event.video.data)
                elif kind == "motion" and summary is None:
                    if motion_handle is not None:
                        motion_handle.write(event.motion.data)
                    motion_size += len(event.motion.data)
                elif kind == "summary":
                    summary = event.summary
        if summary is None:
            raise ProtocolError("generator stream ended without a summary")
        if motion_size != summary.motion_size:
            raise ProtocolError(
                f"generator sent {motion_size} bytes of motion frames, its summary said {summary.motion_size}")
        partial.replace(output)
        if motion_partial is not None and motion_out is not None:
            if motion_size:
                motion_partial.replace(motion_out)
            else:
                motion_out.unlink(missing_ok=True)
        return summary
    finally:
        calls.discard(call)
        call.cancel()
        partial.unlink(missing_ok=True)
        if motion_partial is not None:
            motion_partial.unlink(missing_ok=True)


# -- stitcher ------------------------------------------------------------------------------


class StitcherClient:
    def __init__(self, target: str) -> None:
        self.target = target
        self.channel = insecure_channel(target)
        self.stub = stitcher_pb2_grpc.StitcherStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def stitch(self, header: stitcher_pb2.StitchHeader, audio: Path, parts: Iterable[tuple[int, Path]],
               output: Path, calls: CallSet) -> stitcher_pb2.StitchSummary:
        """Send the header, the original audio, then each part as `parts` yields it (it may block
        until the next part is generated); store the stitched MP4 at `output`."""

        def requests() -> Iterator[stitcher_pb2.StitchRequest]:
            yield stitcher_pb2.StitchRequest(header=header)
            for piece in file_data_pieces(audio):
                yield stitcher_pb2.StitchRequest(audio=piece)
            for index, path in parts:
                for data, last in iter_file_pieces(path):
                    yield stitcher_pb2.StitchRequest(part=stitcher_pb2.PartData(index=index, data=data, last=last))

        call = self.stub.Stitch(requests())
        calls.add(call)
        partial = tmp_path(output)
        try:
            with partial.open("wb") as handle:
                for event in call:
                    kind = event.WhichOneof("event")
                    if kind == "video":
                        handle.write(event.video.data)
                    elif kind == "summary":
                        handle.close()
                        partial.replace(output)
                        return event.summary
            raise ProtocolError("stitcher stream ended without a summary")
        finally:
            calls.discard(call)
            call.cancel()
            partial.unlink(missing_ok=True)

    def assess(self, header: stitcher_pb2.AssessHeader, video: Path, reference: bytes | None,
               calls: CallSet, timeout: float | None = None) -> quality_pb2.QualityReport:
        """The quality report of the stitched `video` against the `reference` picture."""

        def requests() -> Iterator[stitcher_pb2.AssessRequest]:
            yield stitcher_pb2.AssessRequest(header=header)
            if reference is not None:
                for piece in data_pieces(reference):
                    yield stitcher_pb2.AssessRequest(reference=piece)
            for piece in file_data_pieces(video):
                yield stitcher_pb2.AssessRequest(video=piece)

        future = self.stub.Assess.future(requests(), timeout=timeout)
        calls.add(future)
        try:
            return future.result()
        finally:
            calls.discard(future)
