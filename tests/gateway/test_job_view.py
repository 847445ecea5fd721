"""The job's shape is defined once (itk_gateway/jobs/views.py); REST, gRPC and the Python client follow it.
Each test fails when one of them gains or loses a field, or gives one another type."""

from __future__ import annotations

import dataclasses
import typing

import pytest
from google.protobuf.descriptor import FieldDescriptor

from infinitetalk.v1 import gateway_pb2
from itk_client import models as client_models
from itk_gateway.api.grpc_api import job_message
from itk_gateway.api.rest_models import JobResponse, LaneResponse, SeamResponse, job_json
from itk_gateway.jobs.views import JobView, LaneView, SeamView, SpeakerView, public_fields

PAIRS = [(JobView, gateway_pb2.Job, JobResponse, client_models.Job),
         (LaneView, gateway_pb2.JobLane, LaneResponse, client_models.Lane),
         (SeamView, gateway_pb2.JobSeam, SeamResponse, client_models.Seam)]
PROTO_KINDS = {
    FieldDescriptor.TYPE_STRING: "str", FieldDescriptor.TYPE_BOOL: "bool", FieldDescriptor.TYPE_DOUBLE: "float",
    FieldDescriptor.TYPE_INT32: "int", FieldDescriptor.TYPE_INT64: "int", FieldDescriptor.TYPE_ENUM: "str",
}
ELEMENTS = {"tuple[LaneView, ...]": "JobLane", "tuple[SeamView, ...]": "JobSeam",
            "tuple[SpeakerView, ...]": "JobSpeaker"}


def view_types(view_class: type) -> dict[str, str]:
    hints = typing.get_type_hints(view_class)
    return {f.name: hints[f.name].__name__ if isinstance(hints[f.name], type) else str(f.type)
            for f in public_fields(view_class)}


@pytest.mark.parametrize(("view", "message", "_rest", "_client"), PAIRS)
def test_grpc_messages_carry_the_views_fields(view: type, message: type, _rest: type, _client: type) -> None:
    proto = {f.name: f for f in message.DESCRIPTOR.fields}
    expected = view_types(view)
    assert set(proto) == set(expected)
    messages = {f.name: f.metadata["message"] for f in public_fields(view) if "message" in f.metadata}
    for name, kind in expected.items():
        field = proto[name]
        if name in messages:
            assert field.message_type.name == messages[name], name
        elif kind in ELEMENTS:
            assert field.is_repeated and field.message_type.name == ELEMENTS[kind], name
        else:
            assert PROTO_KINDS[field.type] == kind, name


@pytest.mark.parametrize(("view", "_message", "rest", "_client"), PAIRS)
def test_rest_models_carry_the_views_fields(view: type, _message: type, rest: type, _client: type) -> None:
    rest_only = {"video_base64"} if view is JobView else set()
    assert set(rest.model_fields) == set(view_types(view)) | rest_only
    documented = {name for name, info in rest.model_fields.items() if info.description}
    assert documented == set(rest.model_fields)


@pytest.mark.parametrize(("view", "_message", "_rest", "client"), PAIRS)
def test_the_clients_models_carry_the_views_fields(view: type, _message: type, _rest: type, client: type) -> None:
    client_fields = {f.name: str(f.type) for f in dataclasses.fields(client) if not f.metadata.get("events_only")}
    expected = {name: kind.replace("View", "") for name, kind in view_types(view).items()}
    assert client_fields == expected


def test_one_view_reads_the_same_through_every_api() -> None:
    view = JobView(
        id="job-1-abc", provider="infinitetalk", status="COMPLETED", progress=100, error="", video_url="",
        chunk_count=3, chunks_done=3, frames_total=150, frames_done=150, duration_sec=6.0, seed=7, width=64,
        height=48, created_at="2026-01-01T00:00:00.000Z", updated_at="2026-01-01T00:00:09.000Z",
        video_available=True, push_to_s3=False, dry_run=False, lane_count=2,
        lanes=(LaneView(0, 0.0, 3.1, 2, 2), LaneView(1, 3.1, 6.0, 1, 1)), seams=(SeamView(3.1, 2, 3.0, 3.3, 0, False),))
    body = job_json(view)
    assert "error" not in body and "video_url" not in body and "push_to_s3" not in body  # as the seed API
    JobResponse.model_validate(body)
    client = client_models.Job.from_json(body)
    message = job_message(view)
    for f in public_fields(JobView):
        if f.name in ("lanes", "seams", "quality", "speakers"):
            continue
        value = getattr(view, f.name)
        assert getattr(client, f.name) == value, f.name
        grpc_value = getattr(message, f.name)
        assert (gateway_pb2.JobStatus.Name(grpc_value) if f.name == "status" else grpc_value) == value, f.name
    assert [dataclasses.astuple(lane) for lane in client.lanes] == [dataclasses.astuple(lane) for lane in view.lanes]
    assert [(lane.index, lane.end_sec) for lane in message.lanes] == [(0, 3.1), (1, 6.0)]
    assert [dataclasses.astuple(seam) for seam in client.seams] == [dataclasses.astuple(seam) for seam in view.seams]
    assert [(s.chunk_index, s.fade_frames) for s in message.seams] == [(2, 0)]
    two = dataclasses.replace(view, speakers=(SpeakerView(1, (10, 20, 110, 140)), SpeakerView(2, (300, 20, 400, 140))),
                              boxes_from="faces", audio_type="para")
    body = job_json(two)
    JobResponse.model_validate(body)
    assert body["speakers"][1] == {"person": 2, "box": [300, 20, 400, 140]}
    assert client_models.Job.from_json(body).speakers == (client_models.Speaker(1, (10, 20, 110, 140)),
                                                          client_models.Speaker(2, (300, 20, 400, 140)))
    assert [(s.person, s.box.x0, s.box.y1) for s in job_message(two).speakers] == [(1, 10, 140), (2, 300, 140)]


def test_the_quality_report_reads_the_same_through_every_api() -> None:
    from infinitetalk.v1 import quality_pb2
    from itk_common.quality.report import report_json

    report = quality_pb2.QualityReport(state="ready", frame_count=250, fps=25.0, sync_lag_frames=-1,
                                       sync_correlation=0.9, step_p99=2.0)
    report.segments.add(start_sec=0.0, end_sec=10.0, sync_lag_frames=-1, sync_correlation=0.9, sync_signal="lips")
    report.steps.add(frame=81, kind="boundary", step=3.0, ratio_to_p99=1.5)
    view = JobView(
        id="job-1-abc", provider="infinitetalk", status="COMPLETED", progress=100, error="", video_url="",
        chunk_count=1, chunks_done=1, frames_total=250, frames_done=250, duration_sec=10.0, seed=7, width=64,
        height=48, created_at="2026-01-01T00:00:00.000Z", updated_at="2026-01-01T00:00:09.000Z",
        video_available=True, push_to_s3=False, dry_run=False, lane_count=1, quality=report_json(report))
    body = job_json(view)
    JobResponse.model_validate(body)
    assert body["quality"]["segments"][0]["sync_lag_frames"] == -1
    assert client_models.Job.from_json(body).quality == body["quality"]
    assert job_message(view).quality == report
    assert job_message(dataclasses.replace(view, quality=None)).HasField("quality") is False
