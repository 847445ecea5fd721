"""The stitching API on real parts and recordings."""

from __future__ import annotations

from pathlib import Path

import av
import pytest

from itk_common.video import probe_video
from itk_stitcher import StitchInputError, StitchSpec, stitch
from tests.helpers.audio import AUDIO_FORMATS

from .media import (
    HEIGHT,
    WIDTH,
    frame_numbers,
    moov_before_mdat,
    planned_frames,
    remux_with_offset,
    write_h264_part,
    write_mpeg4_part,
    write_parts,
    write_recording,
)

FRAME_SEC = 1 / 25
# Short parts on purpose: x264 gives 1- and 2-frame parts no B-frame delay, longer ones a delay of 2.
FRAME_COUNTS = [30, 1, 17, 2, 26]


def spec_for(frame_counts: list[int]) -> StitchSpec:
    return StitchSpec(fps=25, width=WIDTH, height=HEIGHT, frame_counts=tuple(frame_counts))


def run_stitch(tmp_path: Path, parts: dict[int, Path], audio: Path, frame_counts: list[int]):
    workdir = tmp_path / "work"
    workdir.mkdir(exist_ok=True)
    out = tmp_path / "stitched.mp4"
    return stitch(parts, audio, spec_for(frame_counts), out, workdir=workdir), out


def audio_end_sec(path: Path) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.name == "aac"
        return max(float((p.pts + p.duration) * p.time_base) for p in container.demux(stream) if p.size)


def test_copied_parts_keep_chunk_order_and_exact_length(tmp_path: Path) -> None:
    parts = write_parts(tmp_path, FRAME_COUNTS)
    audio = write_recording(tmp_path / "speech.wav", sum(FRAME_COUNTS))

    report, out = run_stitch(tmp_path, parts, audio, FRAME_COUNTS)

    total = sum(FRAME_COUNTS)
    assert (report.copied_parts, report.reencoded_parts) == (len(FRAME_COUNTS), 0)
    assert frame_numbers(out) == list(range(total))
    info = probe_video(out)
    assert (info.frame_count, info.width, info.height, info.codec) == (total, WIDTH, HEIGHT, "h264")
    assert report.frame_count == total
    assert report.video_size == out.stat().st_size
    assert 0 <= report.video_duration_sec - report.audio_duration_sec < FRAME_SEC
    assert abs(info.duration_sec - audio_end_sec(out)) < FRAME_SEC
    assert moov_before_mdat(out)


def test_part_with_other_codec_and_size_is_reencoded_alone(tmp_path: Path) -> None:
    parts = write_parts(tmp_path, FRAME_COUNTS)
    first = sum(FRAME_COUNTS[:2])
    parts[2] = write_mpeg4_part(tmp_path / "other.mp4", first, FRAME_COUNTS[2], WIDTH * 2, HEIGHT * 2)
    audio = write_recording(tmp_path / "speech.wav", sum(FRAME_COUNTS))

    report, out = run_stitch(tmp_path, parts, audio, FRAME_COUNTS)

    assert report.reencoded_indices == (2,)
    assert (report.copied_parts, report.reencoded_parts) == (len(FRAME_COUNTS) - 1, 1)
    assert frame_numbers(out) == list(range(sum(FRAME_COUNTS)))
    info = probe_video(out)
    assert (info.frame_count, info.width, info.height, info.codec, info.pix_fmt) == (
        sum(FRAME_COUNTS), WIDTH, HEIGHT, "h264", "yuv420p")


def test_parts_from_a_differently_tuned_encoder_are_all_reencoded(tmp_path: Path) -> None:
    # crf 30 changes the H.264 picture parameter set, so a part re-encoded by the stitcher could not
    # share the track with these parts; the stitcher must notice and re-encode them all.
    counts = [12, 9, 10]
    parts = {0: write_h264_part(tmp_path / "a.mp4", 0, 12, crf=30),
             1: write_h264_part(tmp_path / "b.mp4", 12, 9, crf=30),
             2: write_mpeg4_part(tmp_path / "c.mp4", 21, 10, WIDTH, HEIGHT)}
    audio = write_recording(tmp_path / "speech.wav", sum(counts))

    report, out = run_stitch(tmp_path, parts, audio, counts)

    assert report.reencoded_indices == (0, 1, 2)
    assert frame_numbers(out) == list(range(sum(counts)))


def test_part_whose_timeline_starts_late_is_still_copied(tmp_path: Path) -> None:
    counts = [12, 15, 11]
    parts = write_parts(tmp_path, counts)
    parts[1] = remux_with_offset(parts[1], tmp_path / "late.mp4", offset_frames=7)
    audio = write_recording(tmp_path / "speech.wav", sum(counts))

    report, out = run_stitch(tmp_path, parts, audio, counts)

    assert report.reencoded_parts == 0
    assert frame_numbers(out) == list(range(sum(counts)))
    assert probe_video(out).duration_sec == pytest.approx(sum(counts) / 25)


@pytest.mark.parametrize("fmt", [fmt for fmt in AUDIO_FORMATS if fmt != "wav"])
def test_any_decodable_recording_is_muxed_once_as_aac(tmp_path: Path, fmt: str) -> None:
    audio = write_recording(tmp_path / f"speech.{fmt}", 38, fmt, sample_rate=44_100)
    counts = [20, planned_frames(audio) - 20]
    parts = write_parts(tmp_path, counts)

    report, out = run_stitch(tmp_path, parts, audio, counts)

    assert report.frame_count == sum(counts)
    assert abs(report.video_duration_sec - report.audio_duration_sec) < FRAME_SEC
    assert abs(probe_video(out).duration_sec - audio_end_sec(out)) < FRAME_SEC


def test_wrong_frame_count_names_the_chunk(tmp_path: Path) -> None:
    parts = write_parts(tmp_path, [10, 11, 12])
    audio = write_recording(tmp_path / "speech.wav", 10 + 12 + 12)

    with pytest.raises(StitchInputError, match="chunk 1: part has 11 frames, the header plans 12"):
        run_stitch(tmp_path, parts, audio, [10, 12, 12])


def test_missing_part_names_the_chunk(tmp_path: Path) -> None:
    parts = write_parts(tmp_path, [10, 11, 12])
    del parts[1]
    audio = write_recording(tmp_path / "speech.wav", 33)

    with pytest.raises(StitchInputError, match="missing parts for chunks 1"):
        run_stitch(tmp_path, parts, audio, [10, 11, 12])


def test_audio_that_does_not_fit_the_video_is_rejected(tmp_path: Path) -> None:
    parts = write_parts(tmp_path, [10, 11])
    audio = write_recording(tmp_path / "speech.wav", 23)

    with pytest.raises(StitchInputError, match="must agree within one frame"):
        run_stitch(tmp_path, parts, audio, [10, 11])


def test_undecodable_part_is_an_input_error(tmp_path: Path) -> None:
    parts = write_parts(tmp_path, [10, 11])
    parts[1].write_bytes(b"not a video at all" * 100)
    audio = write_recording(tmp_path / "speech.wav", 21)

    with pytest.raises(StitchInputError, match="chunk 1: not a readable MP4 video"):
        run_stitch(tmp_path, parts, audio, [10, 11])
