"""The web page at `/` (static files shipped in the package) and `GET /config`, what it asks first."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from itk_gateway.jobs.service import JobService
from itk_gateway.jobs.validation import MAX_DIMENSION, PRESETS
from itk_gateway.live.publisher import timeline_start_sec

STATIC = Path(__file__).resolve().parent.parent / "web" / "static"


def add_page_routes(app: FastAPI, service: JobService) -> None:
    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html",
                            headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/config", tags=["Health"])
    def config() -> JSONResponse:
        """What this deployment offers: providers (and their aliases), presets, limits, features."""
        rules = service.rules
        return JSONResponse({
            "providers": rules.pools,
            "default_provider": rules.default_pool,
            "provider_aliases": rules.aliases,
            "presets": sorted(p for p in PRESETS if p),
            "max_dimension": MAX_DIMENSION,
            "max_upload_mb": service.settings.max_upload_mb,
            "s3": rules.s3_enabled,
            "webhooks": rules.webhooks_enabled,
            # A video is accepted wherever an image is (dubbing, jobs/reference.py).
            "video_input": True,
            "hls_timeline_start_sec": timeline_start_sec(),
        })
