"""The report as JSON (what the REST API and the job events show) and back."""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import json_format

from infinitetalk.v1 import quality_pb2


def report_json(report: quality_pb2.QualityReport) -> dict[str, Any]:
    """Field names as in the proto; zeros shown, figures that were not measured left out."""
    return json_format.MessageToDict(report, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


def report_from_json(data: dict[str, Any]) -> quality_pb2.QualityReport:
    return json_format.ParseDict(data, quality_pb2.QualityReport(), ignore_unknown_fields=True)


def quality_text(report: quality_pb2.QualityReport) -> str:
    """The report as the JSON text a job row keeps."""
    return json.dumps(report_json(report), separators=(",", ":"))


def report_state(state: str, error: str = "") -> quality_pb2.QualityReport:
    return quality_pb2.QualityReport(state=state, error=error)
