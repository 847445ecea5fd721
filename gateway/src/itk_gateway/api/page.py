"""The web page at `/` (static files shipped in the package) and `GET /config`, what it asks first."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from itk_common.catalogue import PRESET_NAMES, PRESETS
from itk_gateway.jobs.service import JobService
from itk_gateway.jobs.validation import MAX_DIMENSION
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
        served: dict[str, list[str]] = {name: [] for name in PRESET_NAMES}
        for pool in rules.providers:
            for name in rules.served_presets(pool) or PRESET_NAMES:
                served[name].append(pool)
        return JSONResponse({
            "providers": rules.providers,
            "default_provider": rules.default_provider,
            "provider_aliases": rules.aliases,
            # The catalogue's presets that some pool serves, in the catalogue's order, with the
            # label the page shows and the pools that serve each.
            "presets": [name for name in PRESET_NAMES if served.get(name)],
            "preset_labels": {name: PRESETS[name].label for name in PRESET_NAMES},
            "preset_providers": served,
            "max_dimension": MAX_DIMENSION,
            "max_upload_mb": service.settings.max_upload_mb,
            "s3": rules.s3_enabled,
            "webhooks": rules.webhooks_enabled,
            # A video is accepted wherever an image is (dubbing, jobs/reference.py).
            "video_input": True,
            "hls_timeline_start_sec": timeline_start_sec(),
        })
