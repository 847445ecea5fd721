"""`itk quality VIDEO AUDIO [--portrait IMG]`: the report of any file, computed without a gateway."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from itk_client import cli
from itk_common.quality.faces import FaceModels
from itk_common.wav import encode_wav
from tests.helpers.faces import portrait_png, speech, write_talking_video


def itk(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_quality_of_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    samples = speech(4.0)
    video, audio, portrait = tmp_path / "talk.mp4", tmp_path / "talk.wav", tmp_path / "portrait.png"
    write_talking_video(video, samples, FaceModels())
    audio.write_bytes(encode_wav(samples))
    portrait.write_bytes(portrait_png())

    code, stdout, stderr = itk(capsys, "quality", str(video), str(audio), "--portrait", str(portrait), "--json")
    assert code == 0, stderr
    report = json.loads(stdout)
    assert report["state"] == "ready" and report["reference"] == "portrait"
    assert report["sync_lag_frames"] == 0 and len(report["segments"]) == 1

    code, stdout, stderr = itk(capsys, "quality", str(video), str(audio))
    assert code == 0, stderr
    assert "lip sync" in stdout and "lag 0 frames" in stdout and "first frame" in stdout


def test_quality_refuses_missing_and_unreadable_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    audio = tmp_path / "talk.wav"
    audio.write_bytes(encode_wav(speech(1.0)))
    code, _, stderr = itk(capsys, "quality", str(tmp_path / "nope.mp4"), str(audio))
    assert code == 2 and "video: no such file" in stderr
    bogus = tmp_path / "bogus.mp4"
    bogus.write_text("not a video")
    code, _, stderr = itk(capsys, "quality", str(bogus), str(audio))
    assert code == 2 and "bogus.mp4" in stderr
