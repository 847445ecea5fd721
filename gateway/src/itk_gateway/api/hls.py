"""`/jobs/{id}/hls/`: the video as a growing HLS stream while the job renders.

`index.m3u8` is an EVENT playlist of fMP4 segments in order, with the original audio: one per
clip as the generator decodes it (InfiniteTalk), else one per finished part (live/publisher.py);
it ends with `#EXT-X-ENDLIST`
when the job completes. Players (hls.js, Safari, ffplay, VLC) reload it until then. Until the
recording is cut (its plan fixes the segments' target duration) the playlist answers 503 with
Retry-After, which players retry.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, Response

from itk_gateway.api.caller import principal_of
from itk_gateway.api.rest_models import ERROR_RESPONSE, error_response
from itk_gateway.errors import StreamNotReadyError
from itk_gateway.jobs.service import JobService

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
RETRY_AFTER_SEC = "1"


def add_hls_routes(app: FastAPI, service: JobService) -> None:
    @app.get("/jobs/{job_id}/hls/index.m3u8", tags=["Live"], response_model=None,
             responses={200: {"content": {PLAYLIST_TYPE: {}}}, 404: ERROR_RESPONSE, 409: ERROR_RESPONSE,
                        503: ERROR_RESPONSE})
    def playlist(job_id: str, request: Request) -> Response:
        """The growing HLS playlist (EVENT; #EXT-X-ENDLIST once the job completed)."""
        try:
            text = service.playlist(job_id, principal_of(request))
        except StreamNotReadyError as exc:
            return error_response(exc.http_status, exc.message, exc.code, headers={"Retry-After": RETRY_AFTER_SEC})
        # A playlist that still grows must not be cached; the final one may be.
        ended = text.rstrip().endswith("#EXT-X-ENDLIST")
        return Response(text, media_type=PLAYLIST_TYPE,
                        headers={"Cache-Control": "max-age=3600" if ended else "no-cache"})

    @app.get("/jobs/{job_id}/hls/{name}", tags=["Live"], response_model=None,
             responses={200: {"content": {"video/mp4": {}, "video/iso.segment": {}}}, 404: ERROR_RESPONSE})
    def segment(job_id: str, name: str, request: Request) -> Response:
        """An initialization section (`init-<n>.mp4`) or media segment (`seg-<index>.m4s`)."""
        path = service.live_file(job_id, name, principal_of(request))
        media_type = "video/mp4" if name.endswith(".mp4") else "video/iso.segment"
        # Segments never change once listed.
        return FileResponse(path, media_type=media_type, headers={"Cache-Control": "max-age=86400, immutable"})
