"""Decoding real files of every common format, made at test time with PyAV."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest

from itk_splitter.decode import decode_audio
from itk_splitter.errors import AudioDecodeError, EmptyAudioError
from tests.helpers.audio import AUDIO_FORMATS, encode_audio, speech_like

DURATION_SEC = 6.0


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return speech_like(DURATION_SEC, pause_every_sec=2.5, seed=3)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    length = min(len(a), len(b))
    return float(np.corrcoef(a[:length], b[:length])[0, 1])


@pytest.mark.parametrize("fmt", AUDIO_FORMATS)
def test_every_format_decodes_to_16k_mono_float32(speech: np.ndarray, fmt: str) -> None:
    samples = decode_audio(encode_audio(speech, 16_000, fmt))
    assert samples.dtype == np.float32 and samples.ndim == 1
    # Lossy codecs add priming or padding of up to a few codec frames, never whole seconds.
    assert abs(len(samples) - len(speech)) <= 2048
    if fmt in ("wav", "flac"):
        np.testing.assert_allclose(samples, speech, atol=1.5 / 32768)
    else:
        # Encoder delay shifts lossy decodes by a few samples; find it, then compare the waveforms.
        shift = int(np.argmax(np.correlate(samples[:8000], speech[:4000], mode="valid")))
        assert correlation(samples[shift:], speech) > 0.9


def test_other_rates_and_stereo_are_resampled_and_downmixed(speech: np.ndarray) -> None:
    resampler = av.AudioResampler(format="flt", layout="mono", rate=44_100)
    frame = av.AudioFrame.from_ndarray(speech.reshape(1, -1), format="flt", layout="mono")
    frame.sample_rate = 16_000
    upsampled = np.concatenate([f.to_ndarray()[0] for f in [*resampler.resample(frame), *resampler.resample(None)]])
    samples = decode_audio(stereo_flac(upsampled, 44_100))
    assert abs(len(samples) - len(speech)) <= 32
    shift = int(np.argmax(np.correlate(samples[:8000], speech[:4000], mode="valid")))
    assert correlation(samples[shift:], speech) > 0.98


def stereo_flac(samples: np.ndarray, rate: int) -> bytes:
    """A FLAC with `samples` on both channels at `rate`."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="flac") as container:
        stream = container.add_stream("flac", rate=rate, layout="stereo")
        # Packed stereo interleaves the channels: L0 R0 L1 R1 ...
        interleaved = np.stack([samples, samples], axis=1).astype(np.float32).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(interleaved, format="flt", layout="stereo")
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "data",
    [b"", b"this is a text file, not a recording\n" * 20, bytes(4096), b"\x89PNG\r\n\x1a\n" + bytes(200)],
    ids=["nothing", "text", "zeros", "png-header"],
)
def test_bytes_that_are_not_audio_are_refused(data: bytes) -> None:
    with pytest.raises(AudioDecodeError, match="audio: could not decode"):
        decode_audio(data)


@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_a_file_without_samples_is_empty_audio(fmt: str) -> None:
    with pytest.raises(EmptyAudioError, match="audio: recording is empty"):
        decode_audio(encode_audio(np.zeros(0, dtype=np.float32), 16_000, fmt))


def test_all_silence_is_valid_audio() -> None:
    samples = decode_audio(encode_audio(np.zeros(32_000, dtype=np.float32), 16_000, "wav"))
    assert len(samples) == 32_000 and not samples.any()


def test_files_on_disk_decode_too(tmp_path, speech: np.ndarray) -> None:
    path = tmp_path / "speech.mp3"
    path.write_bytes(encode_audio(speech, 16_000, "mp3"))
    with path.open("rb") as handle:
        from_file = decode_audio(handle)
    np.testing.assert_array_equal(decode_audio(path), from_file)
