"""A real stitcher server on 127.0.0.1 with its own spool directory, shared by a module's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from infinitetalk.v1 import stitcher_pb2_grpc
from itk_common.grpc_server import insecure_channel
from itk_stitcher.server import SCRATCH_PREFIX, start_server


@pytest.fixture(scope="module")
def temp_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("spool")


@pytest.fixture(scope="module")
def stitcher_target(temp_dir: Path) -> Iterator[str]:
    service, port = start_server("127.0.0.1", 0, temp_dir=temp_dir)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        service.stop(grace=None)


@pytest.fixture(scope="module")
def spool_dir(stitcher_target: str, temp_dir: Path) -> Path:
    """The running stitcher's own scratch folder (under TEMP_DIR), where each request spools."""
    (scratch,) = [path for path in temp_dir.glob(f"{SCRATCH_PREFIX}*") if path.is_dir()]
    return scratch


@pytest.fixture
def stub(stitcher_target: str) -> Iterator[stitcher_pb2_grpc.StitcherStub]:
    with insecure_channel(stitcher_target) as channel:
        yield stitcher_pb2_grpc.StitcherStub(channel)
