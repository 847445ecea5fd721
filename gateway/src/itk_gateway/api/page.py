"""The web page at `/` (static files shipped in the package), its icon, and `GET /config`: what the
page asks first, built from what the deployment serves now (its pools, their generators' backends
and the presets those honour), so the page offers only choices that do something here."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from itk_gateway.dispatch.pool import EndpointPool
from itk_gateway.jobs.service import JobService
from itk_gateway.jobs.validation import MAX_DIMENSION, PRESETS
from itk_gateway.live.publisher import timeline_start_sec
from itk_gateway.security.rest_middleware import mark_public

STATIC = Path(__file__).resolve().parent.parent / "web" / "static"
# Backends whose rendering a job's sampling preset changes; the CPU preview and the remote
# providers (whose workers run their own settings) render the same whatever the preset.
PRESET_BACKENDS = frozenset({"infinitetalk"})


def describe_pools(service: JobService, pools: dict[str, EndpointPool]) -> list[dict]:
    """Each pool once, with the aliases that lead to it (a pool of an alias's name wins)."""
    rules = service.rules
    described = []
    for name in rules.pools:
        pool = pools.get(name)
        backends = pool.backends() if pool is not None else []
        counts = pool.counts() if pool is not None else {"ready": 0}
        described.append({
            "name": name,
            "aliases": sorted(a for a, target in rules.aliases.items() if target == name and a not in rules.pools),
            "backends": backends,
            "generators_ready": counts["ready"],
            "presets": sorted(p for p in PRESETS if p) if PRESET_BACKENDS & set(backends) else [],
        })
    return described


def add_page_routes(app: FastAPI, service: JobService, pools: dict[str, EndpointPool] | None = None) -> None:
    pools = pools if pools is not None else service.orchestrator.backends.pools
    mark_public(app, "/favicon.ico")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html",
                            headers={"Cache-Control": "no-cache"})

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        # Browsers ask for /favicon.ico whatever the page links; the icon is an SVG.
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml",
                            headers={"Cache-Control": "max-age=86400"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/config", tags=["Health"])
    def config() -> JSONResponse:
        """What this deployment offers: pools (with their aliases, backends and presets), limits,
        features, and whether requests need an API key."""
        rules = service.rules
        return JSONResponse({
            "providers": rules.pools,
            "default_provider": rules.default_pool,
            "provider_aliases": rules.aliases,
            "pools": describe_pools(service, pools),
            "presets": sorted(p for p in PRESETS if p),
            "api_key_required": service.settings.auth_required,
            "max_dimension": MAX_DIMENSION,
            "max_upload_mb": service.settings.max_upload_mb,
            "s3": rules.s3_enabled,
            "webhooks": rules.webhooks_enabled,
            # A video is accepted wherever an image is (dubbing, jobs/reference.py).
            "video_input": True,
            "hls_timeline_start_sec": timeline_start_sec(),
        })
