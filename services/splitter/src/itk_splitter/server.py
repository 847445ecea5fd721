"""gRPC Splitter service: options, then the upload in pieces; answers chunk by chunk, then the plan."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from typing import BinaryIO

import grpc

from infinitetalk.v1 import splitter_pb2, splitter_pb2_grpc
from itk_common.constants import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from itk_common.grpc_server import GrpcService, exit_if_port_unavailable
from itk_common.logs import setup_logging
from itk_common.streaming import data_pieces

from .errors import AudioInputError
from .lanes import LaneSpan, SeamSpan
from .options import OptionsError, SplitOptions
from .plan import ChunkSpan
from .settings import SplitterSettings, bind_address_from_env, settings_from_env
from .split import SplitResult, split_audio

log = logging.getLogger(__name__)

SERVICE_NAME = splitter_pb2.DESCRIPTOR.services_by_name["Splitter"].full_name


class UploadError(ValueError):
    """The request stream is not options followed by audio pieces, or the upload is too large."""


class SplitterServicer(splitter_pb2_grpc.SplitterServicer):
    def __init__(self, settings: SplitterSettings) -> None:
        self.settings = settings

    def Split(  # noqa: N802 - the name gRPC generates
        self, request_iterator: Iterator[splitter_pb2.SplitRequest], context: grpc.ServicerContext
    ) -> Iterator[splitter_pb2.SplitResponse]:
        try:
            result = self._split(request_iterator)
        except (UploadError, OptionsError, AudioInputError) as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except Exception:
            log.exception("split failed")
            context.abort(grpc.StatusCode.INTERNAL, "splitter: internal error while splitting the audio")
        log.info(
            "split %.1f s into %d chunks (input %.1f LUFS, gain %.1f dB)",
            result.duration_sec,
            len(result.chunks),
            result.loudness.input_lufs,
            result.loudness.gain_db,
        )
        try:
            yield from _responses(result)
        except Exception:
            log.exception("sending chunks failed")
            context.abort(grpc.StatusCode.INTERNAL, "splitter: internal error while encoding the chunks")

    def _split(self, requests: Iterator[splitter_pb2.SplitRequest]) -> SplitResult:
        options = self._read_options(requests)
        files = 1 if options.channels_as_tracks else options.tracks
        with ExitStack() as stack:
            uploads = [stack.enter_context(self._receive_upload(requests, number, files))
                       for number in range(1, files + 1)]
            return split_audio(uploads if options.tracks >= 2 else uploads[0], options,
                               threads=self.settings.decode_threads)

    def _read_options(self, requests: Iterator[splitter_pb2.SplitRequest]) -> SplitOptions:
        first = next(requests, None)
        if first is None or first.WhichOneof("payload") != "options":
            raise UploadError("the first message must carry SplitOptions (options), before any audio")
        return self.settings.defaults.overridden_by(first.options)

    def _receive_upload(self, requests: Iterable[splitter_pb2.SplitRequest], number: int = 1,
                        files: int = 1) -> BinaryIO:
        """Collect one file's audio pieces (up to the piece marked last) into a spooled file (memory
        first, disk past the spool size); `number` of `files` names it in messages."""
        name = "audio" if files == 1 else f"audio of person {number}"
        limit = self.settings.max_upload_bytes
        upload = tempfile.SpooledTemporaryFile(max_size=self.settings.spool_memory_bytes)  # noqa: SIM115
        try:
            received = 0
            for request in requests:
                if request.WhichOneof("payload") != "audio":
                    raise UploadError(f"{name}: expected only audio pieces after the options message")
                received += len(request.audio.data)
                if received > limit:
                    raise UploadError(f"{name}: upload exceeds the {limit // (1024 * 1024)} MiB limit")
                upload.write(request.audio.data)
                if request.audio.last:
                    break
            if received == 0:
                raise UploadError(f"{name}: no audio data received")
            upload.seek(0)
            return upload
        except BaseException:
            upload.close()
            raise


def _responses(result: SplitResult) -> Iterator[splitter_pb2.SplitResponse]:
    mix = result.mix_wav()
    if mix is not None:
        for piece in data_pieces(mix):
            yield splitter_pb2.SplitResponse(mix=piece)
    spans = []
    for chunk in result.iter_encoded():
        span = _span_message(chunk.span)
        spans.append(span)
        yield splitter_pb2.SplitResponse(chunk=splitter_pb2.ChunkHeader(span=span, wav_size=len(chunk.wav)))
        for piece in data_pieces(chunk.wav):
            yield splitter_pb2.SplitResponse(chunk_wav=piece)
    yield splitter_pb2.SplitResponse(
        plan=splitter_pb2.SplitPlan(
            sample_rate=SAMPLE_RATE,
            total_samples=result.total_samples,
            total_frames=result.total_frames,
            duration_sec=result.duration_sec,
            input_lufs=result.loudness.input_lufs,
            chunks=spans,
            lanes=[_lane_message(lane, result.total_samples) for lane in result.lanes],
            seams=[_seam_message(seam) for seam in result.seams],
            track_lufs=[report.input_lufs for report in result.track_loudness],
        )
    )


def _span_message(span: ChunkSpan) -> splitter_pb2.ChunkSpan:
    return splitter_pb2.ChunkSpan(
        index=span.index,
        start_sample=span.start_sample,
        end_sample=span.end_sample,
        frame_count=span.frame_count,
        cut_in_silence=span.cut_in_silence,
        lane=span.lane,
        lane_first_frame=span.lane_first_frame,
        wav_start_sample=span.wav_start,
        wav_end_sample=span.wav_end,
    )


def _lane_message(lane: LaneSpan, total_samples: int) -> splitter_pb2.Lane:
    return splitter_pb2.Lane(
        index=lane.index,
        start_sample=lane.start_frame * SAMPLES_PER_FRAME,
        end_sample=min(lane.end_frame * SAMPLES_PER_FRAME, total_samples),
        first_chunk=lane.first_chunk,
        chunk_count=lane.chunk_count,
        frame_count=lane.end_frame - lane.start_frame,
    )


def _seam_message(seam: SeamSpan) -> splitter_pb2.Seam:
    pause = seam.pause or (seam.frame, seam.frame)
    return splitter_pb2.Seam(
        chunk_index=seam.chunk_index,
        sample=seam.sample,
        time_sec=seam.sample / SAMPLE_RATE,
        pause_start_sec=pause[0] / FPS,
        pause_end_sec=pause[1] / FPS,
        fade_frames=seam.fade_frames,
        in_voiced_speech=seam.in_voiced_speech,
    )


def start_server(
    host: str = "127.0.0.1", port: int = 0, settings: SplitterSettings | None = None
) -> tuple[GrpcService, int]:
    """Build, bind and start the splitter; it reports SERVING once it accepts calls."""
    service = GrpcService([SERVICE_NAME])
    splitter_pb2_grpc.add_SplitterServicer_to_server(SplitterServicer(settings or SplitterSettings()), service.server)
    return service, service.serve(host, port)


def main() -> None:
    setup_logging("splitter")
    settings = settings_from_env()
    host, port = bind_address_from_env()
    with exit_if_port_unavailable(log):
        service, bound = start_server(host, port, settings)
    log.info("splitter listening on %s:%d", host, bound)
    service.run_until_signal()


if __name__ == "__main__":
    main()
