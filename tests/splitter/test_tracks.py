"""Multi-person recordings: two speakers' tracks split together."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from infinitetalk.v1 import splitter_pb2, splitter_pb2_grpc
from itk_common.constants import SAMPLE_RATE
from itk_common.grpc_server import insecure_channel
from itk_common.streaming import data_pieces
from itk_common.wav import decode_wav, decode_wav_channels, encode_wav, mix_tracks
from itk_splitter import split_audio
from itk_splitter.errors import AudioInputError
from itk_splitter.loudness import measure_lufs
from itk_splitter.options import SplitOptions
from itk_splitter.server import start_server
from itk_splitter.tracks import TrackMismatchError
from tests.helpers.two_persons import common_silences, conversation

TWO = SplitOptions(track_count=2, chunk_target_sec=4.0, lane_count=3, min_lane_sec=6.0, audio_context_sec=0.5)


@pytest.fixture(scope="module")
def tracks() -> np.ndarray:
    tracks = conversation(seconds=36.0, seed=4)
    tracks[1] *= 0.1  # a quiet second speaker: normalised on their own, they end up as loud
    return tracks


def test_tracks_are_normalised_apart_and_chunks_have_a_channel_each(tracks: np.ndarray) -> None:
    result = split_audio([encode_wav(track) for track in tracks], TWO)
    assert result.tracks is not None and result.tracks.shape == (2, tracks.shape[1])
    for track in result.tracks:
        assert abs(measure_lufs(track) - TWO.target_lufs) < 0.5
    np.testing.assert_allclose(result.samples, mix_tracks(result.tracks))
    assert len(result.lanes) == 3
    for chunk in result.iter_encoded():
        wav = decode_wav_channels(chunk.wav)
        span = chunk.span
        assert wav.shape == (2, span.wav_end - span.wav_start)
        np.testing.assert_allclose(wav, result.tracks[:, span.wav_start : span.wav_end], atol=1 / 16000)
    assert decode_wav(result.mix_wav()).shape == (tracks.shape[1],)


def test_seams_fall_only_where_every_track_is_silent(tracks: np.ndarray) -> None:
    pauses = common_silences(tracks, min_sec=0.5)
    for options in (TWO, SplitOptions(track_count=2, chunk_target_sec=4.0)):
        result = split_audio([encode_wav(track) for track in tracks], options)
        cuts = [seam.sample for seam in result.seams] or [
            chunk.end_sample for chunk in result.chunks[:-1] if chunk.cut_in_silence]
        assert len(cuts) >= 2
        for cut in cuts:
            assert any(start < cut / SAMPLE_RATE < end for start, end in pauses), (cut / SAMPLE_RATE, pauses)


def test_one_speaker_talking_is_no_pause() -> None:
    # Person 1 pauses where person 2 talks: mixed into one track that would be speech throughout.
    tracks = conversation(seconds=12.0, turns=((0.0, 6.0, 1), (6.0, 12.0, 2)))
    result = split_audio([encode_wav(track) for track in tracks], SplitOptions(track_count=2, chunk_target_sec=2.0))
    assert result.silences == [] and not any(chunk.cut_in_silence for chunk in result.chunks)


def test_add_plays_person_1_then_person_2() -> None:
    first, second = conversation(seconds=3.0)[0], conversation(seconds=2.0, seed=1)[1]
    first[:] = np.where(first == 0, 0.01, first)  # no silence to normalise away the comparison
    options = SplitOptions(track_count=2, audio_type="add", skip_normalization=True)
    result = split_audio([encode_wav(first), encode_wav(second)], options)
    assert result.tracks is not None and result.tracks.shape == (2, 5 * SAMPLE_RATE)
    assert not result.tracks[1, : 3 * SAMPLE_RATE].any() and not result.tracks[0, 3 * SAMPLE_RATE :].any()
    np.testing.assert_allclose(result.tracks[0, : 3 * SAMPLE_RATE], first, atol=1 / 16000)


def test_para_tracks_of_different_lengths_are_refused() -> None:
    with pytest.raises(TrackMismatchError, match=r"person 1: 5.00 s, person 2: 7.00 s.*audio_type add"):
        split_audio([encode_wav(conversation(5.0)[0]), encode_wav(conversation(7.0)[1])],
                    SplitOptions(track_count=2))


def test_a_stereo_recording_is_one_speaker_per_channel() -> None:
    tracks = conversation(seconds=6.0)
    options = SplitOptions(track_count=2, channels_as_tracks=True, skip_normalization=True)
    result = split_audio(encode_wav(tracks), options)
    assert result.tracks is not None
    np.testing.assert_allclose(result.tracks, tracks, atol=1 / 16000)
    with pytest.raises(AudioInputError, match="must have 2 channels, this one has 1"):
        split_audio(encode_wav(tracks[0]), options)


def test_the_service_takes_one_file_per_speaker_and_sends_the_mix_first() -> None:
    tracks = conversation(seconds=6.0)
    service, port = start_server("127.0.0.1", 0)
    try:
        with insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = splitter_pb2_grpc.SplitterStub(channel)

            def requests(files: list[bytes]):
                yield splitter_pb2.SplitRequest(options=splitter_pb2.SplitOptions(track_count=2, chunk_target_sec=2))
                for wav in files:
                    for piece in data_pieces(wav):
                        yield splitter_pb2.SplitRequest(audio=piece)

            events = list(stub.Split(requests([encode_wav(track) for track in tracks]), timeout=60))
            kinds = [event.WhichOneof("event") for event in events]
            assert kinds[0] == "mix" and kinds.index("chunk") > kinds.index("mix") and kinds[-1] == "plan"
            mix = decode_wav(b"".join(event.mix.data for event in events if event.WhichOneof("event") == "mix"))
            assert len(mix) == tracks.shape[1]
            assert len(events[-1].plan.track_lufs) == 2
            with pytest.raises(grpc.RpcError) as caught:
                list(stub.Split(requests([encode_wav(tracks[0][:SAMPLE_RATE]), encode_wav(tracks[1])]), timeout=60))
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "equally long" in caught.value.details()
    finally:
        service.stop(grace=None)
