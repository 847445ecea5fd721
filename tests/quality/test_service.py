"""The stitcher's Assess RPC: a real server on 127.0.0.1, the report computed in a worker process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from infinitetalk.v1 import stitcher_pb2
from itk_common.quality.faces import SAME_PERSON_DISTANCE, FaceModels
from itk_gateway.dispatch.clients import CallSet, StitcherClient
from itk_stitcher.quality import QualityWorkers
from itk_stitcher.server import start_server
from tests.helpers.faces import mux_sound, portrait_png, speech, write_talking_video


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StitcherClient]:
    workers = QualityWorkers(workers=1)
    service, port = start_server("127.0.0.1", 0, temp_dir=tmp_path_factory.mktemp("spool"), quality=workers)
    stitcher = StitcherClient(f"127.0.0.1:{port}")
    try:
        yield stitcher
    finally:
        stitcher.close()
        service.stop(grace=None)
        workers.close()


def test_assess_reports_on_the_stitched_video(client: StitcherClient, tmp_path: Path) -> None:
    samples = speech(6.0)
    silent = tmp_path / "silent.mp4"
    write_talking_video(silent, samples, FaceModels())
    video = tmp_path / "video.mp4"
    mux_sound(silent, samples, video)
    header = stitcher_pb2.AssessHeader(job_id="job-q", boundary_frames=[60, 120], seam_frames=[90], fade_frames=4)
    report = client.assess(header, video, portrait_png(), CallSet())
    assert report.state == "ready" and report.reference == "portrait"
    assert report.sync_lag_frames == 0 and report.sync_correlation > 0.8
    assert report.identity_distance < SAME_PERSON_DISTANCE
    assert [(step.kind, step.frame) for step in report.steps][:3] == [("seam", report.steps[0].frame),
                                                                     ("boundary", 60), ("boundary", 120)]
    assert 86 <= report.steps[0].frame <= 94
    assert report.compute_sec > 0
    # Without a picture the first frame is the reference.
    assert client.assess(header, video, None, CallSet()).reference == "first frame"


def test_assess_refuses_what_is_not_a_video(client: StitcherClient, tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.mp4"
    bogus.write_bytes(b"not a video at all")
    with pytest.raises(grpc.RpcError) as caught:
        client.assess(stitcher_pb2.AssessHeader(job_id="job-q"), bogus, None, CallSet())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "bogus.mp4" not in caught.value.details() and "video" in caught.value.details()
