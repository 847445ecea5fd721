"""The stitcher's Assess RPC: a finished video's quality report, computed in worker processes.

The report is CPU work (decoding every frame, dlib on each) that must never slow a stitch: it
runs in QUALITY_WORKERS separate processes (spawned, so they share no gRPC state with this
one) at a lower scheduling priority (QUALITY_NICE), each loading dlib's models once. A stitch in
this process, and generators on the same node, come first whenever both want the CPU.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from collections.abc import Iterable
from concurrent.futures import CancelledError, ProcessPoolExecutor
from pathlib import Path

from infinitetalk.v1 import quality_pb2, stitcher_pb2

from .errors import StitchInputError

log = logging.getLogger(__name__)

DEFAULT_WORKERS = 1
DEFAULT_NICE = 10
MAX_REFERENCE_BYTES = 64 * 1024 * 1024

_models = None  # FaceModels of this worker process


def _start_worker(nice: int) -> None:
    global _models
    if nice:
        os.nice(nice)
    from itk_common.quality.faces import FaceModels

    _models = FaceModels()


def _assess_in_worker(video: str, reference: str | None, boundary_frames: list[int], seam_frames: list[int],
                      fade_frames: int) -> bytes:
    """In a worker process: the report, serialized (a protobuf message does not pickle)."""
    from itk_common.quality.assess import AssessOptions, assess
    from itk_common.quality.media import MediaError

    options = AssessOptions(boundary_frames=boundary_frames, seam_frames=seam_frames, fade_frames=fade_frames)
    reference_data = Path(reference).read_bytes() if reference else None
    try:
        report = assess(Path(video), reference=reference_data, options=options, models=_models)
    except MediaError as exc:
        raise StitchInputError(str(exc)) from None
    return report.SerializeToString()


class QualityWorkers:
    """A pool of report processes, started on first use."""

    def __init__(self, workers: int = DEFAULT_WORKERS, nice: int = DEFAULT_NICE) -> None:
        self.workers = max(1, workers)
        self.nice = nice
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_start_worker, initargs=(self.nice,))
            return self._pool

    def assess(self, video: Path, reference: Path | None, header: stitcher_pb2.AssessHeader,
               gone: threading.Event) -> quality_pb2.QualityReport:
        future = self._executor().submit(_assess_in_worker, str(video), str(reference) if reference else None,
                                         list(header.boundary_frames), list(header.seam_frames),
                                         header.fade_frames)
        while True:
            if gone.is_set():
                future.cancel()  # a queued report is dropped; a running one finishes unseen
                raise CancelledError()
            try:
                return quality_pb2.QualityReport.FromString(future.result(timeout=0.5))
            except TimeoutError:
                continue

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None


def receive_assess(requests: Iterable[stitcher_pb2.AssessRequest], directory: Path
                   ) -> tuple[stitcher_pb2.AssessHeader, Path, Path | None]:
    """Spool the request: (header, video file, reference picture file or None)."""
    header: stitcher_pb2.AssessHeader | None = None
    video, reference = directory / "video.mp4", directory / "reference"
    complete = {"video": False, "reference": False}
    sizes = {"video": 0, "reference": 0}
    with video.open("wb") as video_out, reference.open("wb") as reference_out:
        for request in requests:
            kind = request.WhichOneof("payload")
            if kind == "header":
                if header is not None:
                    raise StitchInputError("the AssessHeader was sent twice")
                header = request.header
                continue
            if header is None:
                raise StitchInputError("the first message must be the AssessHeader")
            if kind not in ("video", "reference"):
                raise StitchInputError("an Assess request carries a header, video or reference piece")
            piece = getattr(request, kind)
            if complete[kind]:
                raise StitchInputError(f"{kind} piece after its last one")
            sizes[kind] += len(piece.data)
            if kind == "reference" and sizes[kind] > MAX_REFERENCE_BYTES:
                raise StitchInputError(f"the reference picture is larger than {MAX_REFERENCE_BYTES} bytes")
            (video_out if kind == "video" else reference_out).write(piece.data)
            complete[kind] = piece.last
    if header is None:
        raise StitchInputError("the stream ended without an AssessHeader")
    if not complete["video"]:
        raise StitchInputError("the video did not arrive whole (no last piece)")
    return header, video, reference if complete["reference"] else None
