"""The OpenAPI document says what the server really answers, and a fuzzer (schemathesis) agrees.

The schemathesis run is bounded (a fixed number of examples per operation, a fixed seed), so it
takes about a minute on two cores; it fails on any 5xx and on any answer whose status, content
type, headers or body the document does not describe.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from itk_gateway.server import Gateway

KEY = "fuzz-key-0123456789abcdef"
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_headers_conformance,response_schema_conformance")
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


def test_document_has_real_schemas_and_no_phantom_422(gateway: Gateway) -> None:
    document = httpx.get(f"{gateway.rest_url}/openapi.json").json()
    assert '"422"' not in json.dumps(document)
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    create = document["paths"]["/jobs"]["post"]
    created = create["responses"]["202"]["content"]["application/json"]["schema"]
    assert created == {"$ref": "#/components/schemas/CreateJobResponse"}
    assert set(schemas["CreateJobResponse"]["properties"]) == {"id", "status"}
    job = document["paths"]["/jobs/{job_id}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert job == {"$ref": "#/components/schemas/JobResponse"}
    assert {"id", "status", "progress", "video_base64"} <= set(schemas["JobResponse"]["properties"])
    body = create["requestBody"]["content"]
    for schema in (body["application/json"]["schema"], body["multipart/form-data"]["schema"]):
        for side in ("width", "height"):
            assert (schema["properties"][side]["minimum"], schema["properties"][side]["maximum"]) == (1, 4096)
    for status in ("400", "401", "429"):
        assert status in create["responses"]
    assert "401" not in document["paths"]["/health"]["get"]["responses"]
    assert document["paths"]["/jobs/{job_id}/video/delete"]["post"]["responses"]["204"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                assert response["description"], (method, path, status)
                for media_type, content in response.get("content", {}).items():
                    assert content.get("schema"), f"{method} {path} {status} {media_type}: empty schema"


def test_schemathesis_finds_no_server_error_and_no_schema_violation(make_gateway: Callable[..., Gateway],
                                                                    tmp_path: Path) -> None:
    gateway = make_gateway(api_keys=f"fuzz={KEY}", rate_limit_per_sec=0)
    started = time.monotonic()
    run = subprocess.run(
        [str(SCHEMATHESIS), "run", f"{gateway.rest_url}/openapi.json", "--checks", CHECKS,
         "--max-examples", "40", "--seed", "7", "--workers", "2", "--no-color", "--generation-database", "none",
         "--request-timeout", "30", "--header", f"Authorization: Bearer {KEY}",
         "--report", "junit", "--report-junit-path", str(tmp_path / "junit.xml")],
        capture_output=True, text=True, timeout=240, cwd=tmp_path,
    )
    seconds = time.monotonic() - started
    output = run.stdout + run.stderr
    cases = re.search(r"Test cases:\s*(.+)", output)
    operations = re.search(r"Operations:\s*(\d+) selected", output)
    print(f"schemathesis: {operations.group(1) if operations else '?'} operations, "
          f"{cases.group(1) if cases else '?'} in {seconds:.0f} s")
    assert run.returncode == 0, output[-6000:]
    assert cases is not None and "failed" not in cases.group(1), output[-6000:]


@pytest.fixture(autouse=True)
def _quiet_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("ERROR")
