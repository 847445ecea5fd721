"""`make up` warns when its demonstration piece length would bill a GPU provider per 8 s piece."""

from __future__ import annotations

from scripts.stack import paid_pool_warnings


def test_demo_pieces_on_a_provider_pool_are_warned_about() -> None:
    warned = paid_pool_warnings({"GENERATOR_POOL_RUNPOD": "127.0.0.1:50060"}, 8.0)
    assert len(warned) == 1 and "runpod" in warned[0] and "8 provider jobs with 7 seams" in warned[0]
    assert "CHUNK_TARGET_SEC=45 make up" in warned[0]
    assert paid_pool_warnings({"GENERATOR_POOLS": "beam=10.0.0.1:50052"}, 8.0)
    assert paid_pool_warnings({"GENERATOR_POOL_RUNPOD": "127.0.0.1:50060"}, 45.0) == []
    assert paid_pool_warnings({}, 8.0) == []
