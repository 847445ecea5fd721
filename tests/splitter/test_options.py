"""Split options from a request: an unset option takes the server's setting, a sent 0 is 0 where 0 means
something (a hard cut, no minimum lane length, no audio context)."""

from __future__ import annotations

import pytest

from infinitetalk.v1 import splitter_pb2
from itk_splitter import split_audio
from itk_splitter.options import ZERO_MEANINGFUL_OPTIONS, SplitOptions
from tests.helpers.audio import encode_audio, speech_like

SERVER = SplitOptions(chunk_target_sec=20.0, tolerance_sec=4.0, min_silence_sec=0.3, min_chunk_sec=1.5,
                      min_lane_sec=12.0, audio_context_sec=1.0, seam_fade_sec=0.6)


def test_unset_options_take_the_servers_settings() -> None:
    assert SERVER.overridden_by(splitter_pb2.SplitOptions()) == SERVER


@pytest.mark.parametrize("name", ZERO_MEANINGFUL_OPTIONS)
def test_a_sent_zero_is_zero(name: str) -> None:
    options = SERVER.overridden_by(splitter_pb2.SplitOptions(**{name: 0.0}))
    assert getattr(options, name) == 0.0
    assert all(getattr(options, other) == getattr(SERVER, other) for other in ZERO_MEANINGFUL_OPTIONS if other != name)


def test_zero_seam_fade_and_lane_length_plan_short_lanes_with_hard_cuts() -> None:
    """With the server's settings (12 s lanes at least) 10 s are one lane; sent zeros give the four lanes
    asked for, each seam a hard cut (no frame cross-faded), though the seams lie in pauses."""
    wav = encode_audio(speech_like(10.0, seed=4), 16_000, "wav")
    server_settings = split_audio(wav, SERVER.overridden_by(splitter_pb2.SplitOptions(lane_count=4)))
    assert len(server_settings.lanes) == 1 and not server_settings.seams
    zeros = SERVER.overridden_by(splitter_pb2.SplitOptions(lane_count=4, seam_fade_sec=0.0, min_lane_sec=0.0))
    planned = split_audio(wav, zeros)
    assert len(planned.lanes) == 4 and len(planned.seams) == 3
    assert [seam.fade_frames for seam in planned.seams] == [0, 0, 0]
    faded = split_audio(wav, SERVER.overridden_by(splitter_pb2.SplitOptions(lane_count=4, min_lane_sec=0.0)))
    assert any(seam.fade_frames > 0 for seam in faded.seams)


def test_scalars_without_a_meaningful_zero_keep_zero_as_default() -> None:
    options = SERVER.overridden_by(splitter_pb2.SplitOptions(chunk_target_sec=0.0, silence_threshold_db=0.0,
                                                            target_lufs=0.0))
    assert options == SERVER
