"""Gateway.StreamSegments: the live HLS segments of a job over gRPC, for services.

The same files the playlist lists: an initialization section, then each media segment in order
as it is made (a clip, or a part whose clips did not come), cut into DataPieces of at most
1 MiB (`last` ends one section or segment).
The stream ends after the last segment of a completed job; a job that fails or is cancelled
meanwhile ends it with FAILED_PRECONDITION.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from infinitetalk.v1 import gateway_pb2
from itk_common.constants import FPS, MAX_PIECE_BYTES
from itk_common.streaming import file_data_pieces
from itk_gateway.jobs.service import JobService
from itk_gateway.live.segments import TIMELINE_START
from itk_gateway.security.keys import Principal

WAIT_SEC = 5.0


def stream_segments(service: JobService, job_id: str, from_index: int, active: Callable[[], bool],
                    principal: Principal) -> Iterator[gateway_pb2.SegmentPiece]:
    store = service.store
    sent_init = -1
    position = 0  # index into the manifest's segments
    while active():
        version = store.version(job_id)
        _, manifest = service.live_manifest(job_id, principal)
        for entry in manifest.segments[position:]:
            position += 1
            if entry.index < from_index:
                continue
            if entry.init != sent_init:
                init = service.live_file(job_id, f"init-{entry.init}.mp4", principal)
                for piece in file_data_pieces(init, MAX_PIECE_BYTES):
                    yield gateway_pb2.SegmentPiece(kind=gateway_pb2.SegmentPiece.INIT, index=entry.index,
                                                   data=piece)
                sent_init = entry.init
            start = float(TIMELINE_START) + entry.start_frame / FPS
            for piece in file_data_pieces(service.live_file(job_id, entry.name, principal), MAX_PIECE_BYTES):
                yield gateway_pb2.SegmentPiece(kind=gateway_pb2.SegmentPiece.MEDIA, index=entry.index,
                                               start_sec=start, duration_sec=entry.duration_sec, data=piece)
        if manifest.ended:
            return
        store.wait_for_change(job_id, version, WAIT_SEC)
