"""Receiving a Stitch request stream onto disk, checking what arrives as it arrives."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from infinitetalk.v1 import stitcher_pb2

from .audio import EncodedAudio, encode_audio
from .errors import StitchInputError
from .parts import PartAnalysis, analyse_part
from .spec import StitchSpec


def spec_from_header(header: stitcher_pb2.StitchHeader) -> StitchSpec:
    if header.chunk_count != len(header.frame_counts):
        raise StitchInputError(
            f"chunk_count is {header.chunk_count} but {len(header.frame_counts)} frame counts were given"
        )
    spec = StitchSpec(fps=header.fps, width=header.width, height=header.height,
                      frame_counts=tuple(header.frame_counts),
                      seams={seam.chunk_index: seam.fade_frames for seam in header.seams})
    spec.validate()
    return spec


class RequestSpool:
    """Writes the audio and each part to its own file under `directory` as pieces come in.

    Pieces are appended file by file, so memory holds one piece at a time whatever the job's size.
    As soon as the audio is complete it is encoded in the background, and each part is analysed
    as soon as it is complete, so little is left to do when the last part arrives.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.job_id = ""
        self.spec: StitchSpec | None = None
        self.audio_path = directory / "audio"
        self.audio_complete = False
        self.part_paths: dict[int, Path] = {}
        self.complete_parts: set[int] = set()
        self._workers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="spool")
        self._encoded: Future[EncodedAudio] | None = None
        self._analyses: dict[int, Future[PartAnalysis]] = {}

    def encoded_audio(self) -> EncodedAudio:
        """The recording as AAC; waits for the background encode (and raises what it raised)."""
        assert self._encoded is not None, "the audio is not complete"
        return self._encoded.result()

    def analyses(self) -> dict[int, PartAnalysis]:
        """Every complete part's analysis; waits for those still running (and raises what they raised)."""
        return {index: future.result() for index, future in self._analyses.items()}

    def close(self) -> None:
        """Wait for background work to stop touching the directory, so it can be removed."""
        self._workers.shutdown(wait=True, cancel_futures=True)

    def receive(self, requests: Iterable[stitcher_pb2.StitchRequest]) -> StitchSpec:
        """Consume the whole stream, check that everything announced has arrived; return the plan."""
        for request in requests:
            self.accept(request)
        return self.check_complete()

    def accept(self, request: stitcher_pb2.StitchRequest) -> None:
        kind = request.WhichOneof("payload")
        if self.spec is None:
            if kind != "header":
                raise StitchInputError("the first message must be a StitchHeader")
            self.spec = spec_from_header(request.header)
            self.job_id = request.header.job_id
        elif kind == "header":
            raise StitchInputError("the StitchHeader was sent twice")
        elif kind == "audio":
            self._accept_audio(request.audio.data, request.audio.last)
        elif kind == "part":
            self._accept_part(self.spec.chunk_count, request.part)
        else:
            raise StitchInputError("a request message carries no payload")

    def _accept_audio(self, data: bytes, last: bool) -> None:
        if self.audio_complete:
            raise StitchInputError("audio pieces arrived after the audio's last piece")
        append(self.audio_path, data)
        self.audio_complete = last
        if last:
            self._encoded = self._workers.submit(encode_audio, self.audio_path, self.directory / "audio.m4a")

    def _accept_part(self, chunk_count: int, part: stitcher_pb2.PartData) -> None:
        index = part.index
        if not 0 <= index < chunk_count:
            raise StitchInputError(f"part index {index} is out of range (chunk_count {chunk_count})")
        if index in self.complete_parts:
            raise StitchInputError(f"chunk {index}: part sent twice (pieces after its last piece)")
        path = self.part_paths.setdefault(index, self.directory / f"part-{index}.mp4")
        append(path, part.data)
        if part.last:
            self.complete_parts.add(index)
            assert self.spec is not None
            self._analyses[index] = self._workers.submit(
                analyse_part, index, path, self.spec.fps, self.spec.frame_counts[index])

    def check_complete(self) -> StitchSpec:
        if self.spec is None:
            raise StitchInputError("the stream ended before the StitchHeader")
        if not self.audio_complete:
            raise StitchInputError("the audio is missing or ended without its last piece")
        missing = [index for index in range(self.spec.chunk_count) if index not in self.part_paths]
        if missing:
            raise StitchInputError(f"missing parts for chunks {', '.join(map(str, missing))}")
        unfinished = sorted(set(self.part_paths) - self.complete_parts)
        if unfinished:
            raise StitchInputError(
                f"parts for chunks {', '.join(map(str, unfinished))} ended without their last piece"
            )
        return self.spec


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as handle:
        handle.write(data)
