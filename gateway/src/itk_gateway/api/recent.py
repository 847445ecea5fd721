"""`GET /jobs`: the caller's recent jobs, newest first (what the page's job list shows)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from itk_gateway.api.caller import principal_of
from itk_gateway.api.rest_models import ERROR_RESPONSE, RecentJobsResponse, job_json
from itk_gateway.jobs.service import JobService


def add_recent_routes(app: FastAPI, service: JobService) -> None:
    @app.get("/jobs", tags=["Jobs"], response_model=RecentJobsResponse, responses={400: ERROR_RESPONSE})
    def recent_jobs(request: Request, limit: int = 20) -> JSONResponse:
        """`{"jobs": [...]}`: the caller's jobs (as `GET /jobs/{id}` without the video), newest first."""
        views = service.recent_jobs(principal_of(request), limit)
        return JSONResponse({"jobs": [job_json(view) for view in views]})
