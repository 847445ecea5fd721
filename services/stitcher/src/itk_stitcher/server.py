"""gRPC face of the stitcher: spool the request to a temp dir, stitch, stream the MP4 back."""

from __future__ import annotations

import logging
import tempfile
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import CancelledError
from pathlib import Path

import grpc

from infinitetalk.v1 import quality_pb2, stitcher_pb2, stitcher_pb2_grpc
from itk_common.config import env_int, env_str
from itk_common.grpc_server import GrpcService, exit_if_port_unavailable
from itk_common.logs import setup_logging
from itk_common.scratch import ScratchRoot
from itk_common.streaming import file_data_pieces

from .errors import StitchCancelledError, StitchInputError
from .quality import DEFAULT_NICE, DEFAULT_WORKERS, QualityWorkers, receive_assess
from .spool import RequestSpool
from .stitch import StitchReport, stitch

# What each variable does; names and defaults come from the reads below (scripts/gen_config_docs.py).
SETTINGS_HELP: dict[str, str | tuple[str, ...]] = {
    "BIND_HOST": "Listen address.",
    "GRPC_PORT": "gRPC port.",
    "TEMP_DIR": ("system temp", "Where each request's parts and audio are spooled (removed when it ends)."),
    "QUALITY_WORKERS": ("1", "Processes computing quality reports (each one report at a time)."),
    "QUALITY_NICE": ("10", "How much lower than stitching the report processes run (Unix nice increment)."),
}

log = logging.getLogger(__name__)

SERVICE_NAME = stitcher_pb2.DESCRIPTOR.services_by_name["Stitcher"].full_name
DEFAULT_PORT = 50053


def summary_message(report: StitchReport) -> stitcher_pb2.StitchSummary:
    return stitcher_pb2.StitchSummary(
        frame_count=report.frame_count,
        video_duration_sec=report.video_duration_sec,
        audio_duration_sec=report.audio_duration_sec,
        copied_parts=report.copied_parts,
        reencoded_parts=report.reencoded_parts,
        video_size=report.video_size,
        softened_seams=report.softened_seams,
    )


SCRATCH_PREFIX = "itk-stitcher-"


class StitcherServicer(stitcher_pb2_grpc.StitcherServicer):
    def __init__(self, temp_dir: Path | None = None, quality: QualityWorkers | None = None) -> None:
        # None means the system's temp location. Requests spool under this process's own scratch
        # folder; those of stitchers that were killed are removed here, at start.
        self.scratch = ScratchRoot(temp_dir or Path(tempfile.gettempdir()), SCRATCH_PREFIX)
        self.temp_dir = self.scratch.path
        self.quality = quality or QualityWorkers()

    def Assess(self, request_iterator: Iterable[stitcher_pb2.AssessRequest],  # noqa: N802 (gRPC name)
               context: grpc.ServicerContext) -> quality_pb2.QualityReport:
        gone = threading.Event()
        context.add_callback(gone.set)
        try:
            with tempfile.TemporaryDirectory(prefix="assess-", dir=self.temp_dir) as scratch:
                header, video, reference = receive_assess(request_iterator, Path(scratch))
                report = self.quality.assess(video, reference, header, gone)
        except StitchInputError as exc:
            log.info("rejected assess request: %s", exc)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except (CancelledError, grpc.RpcError):
            log.info("client went away; quality report abandoned")
            context.abort(grpc.StatusCode.CANCELLED, "the client went away")
        except Exception:
            log.exception("quality report failed")
            context.abort(grpc.StatusCode.INTERNAL, "the quality report failed on the server")
        log.info("job %s: quality report in %.1f s (lag %s, identity %s)", header.job_id, report.compute_sec,
                 report.sync_lag_frames if report.HasField("sync_lag_frames") else "-",
                 f"{report.identity_distance:.2f}" if report.HasField("identity_distance") else "-")
        return report

    def Stitch(self, request_iterator: Iterable[stitcher_pb2.StitchRequest],  # noqa: N802 (gRPC name)
               context: grpc.ServicerContext) -> Iterator[stitcher_pb2.StitchResponse]:
        gone = threading.Event()
        context.add_callback(gone.set)
        try:
            # Everything of this request lives in this directory, which goes away however we leave,
            # including when grpc closes this generator because the client disconnected.
            with tempfile.TemporaryDirectory(prefix="stitch-", dir=self.temp_dir) as scratch:
                yield from self._stitch(Path(scratch), request_iterator, gone)
        except StitchInputError as exc:
            log.info("rejected stitch request: %s", exc)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except (StitchCancelledError, grpc.RpcError):
            log.info("client went away; stitch abandoned")
        except Exception:
            log.exception("stitch failed")
            context.abort(grpc.StatusCode.INTERNAL, "stitching failed on the server")

    def _stitch(self, scratch: Path, requests: Iterable[stitcher_pb2.StitchRequest],
                gone: threading.Event) -> Iterator[stitcher_pb2.StitchResponse]:
        inbox = scratch / "in"
        workdir = scratch / "work"
        inbox.mkdir()
        workdir.mkdir()
        spool = RequestSpool(inbox)
        try:
            spec = spool.receive(requests)
            out = scratch / "stitched.mp4"
            report = stitch(spool.part_paths, spool.encoded_audio(), spec, out, workdir=workdir,
                            cancelled=gone.is_set, analyses=spool.analyses())
        finally:
            spool.close()
        log.info("job %s stitched: %d frames, %d copied, %d re-encoded parts, %d bytes", spool.job_id,
                 report.frame_count, report.copied_parts, report.reencoded_parts, report.video_size)
        for piece in file_data_pieces(out):
            yield stitcher_pb2.StitchResponse(video=piece)
        yield stitcher_pb2.StitchResponse(summary=summary_message(report))


def start_server(host: str = "127.0.0.1", port: int = 0, *, temp_dir: Path | None = None,
                 quality: QualityWorkers | None = None) -> tuple[GrpcService, int]:
    """Build, bind and start the server; it reports SERVING once it accepts calls."""
    if temp_dir is not None:
        temp_dir.mkdir(parents=True, exist_ok=True)
    service = GrpcService([SERVICE_NAME])
    stitcher_pb2_grpc.add_StitcherServicer_to_server(StitcherServicer(temp_dir, quality), service.server)
    return service, service.serve(host, port)


def main() -> None:
    setup_logging("stitcher")
    temp_dir = env_str("TEMP_DIR", "")
    quality = QualityWorkers(env_int("QUALITY_WORKERS", DEFAULT_WORKERS, minimum=1),
                             env_int("QUALITY_NICE", DEFAULT_NICE, minimum=0))
    with exit_if_port_unavailable(log):
        service, port = start_server(
            env_str("BIND_HOST", "127.0.0.1"),
            env_int("GRPC_PORT", DEFAULT_PORT, minimum=0),
            temp_dir=Path(temp_dir) if temp_dir else None,
            quality=quality,
        )
    log.info("stitcher listening on port %d", port)
    try:
        service.run_until_signal()
    finally:
        quality.close()


if __name__ == "__main__":
    main()
