"""What a person meets first with `itk`: the key message in its own terms (ITK_API_KEY), swapped
arguments called swapped, and `itk list` ids whole at 80 columns, against a real gateway."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from itk_client import Client
from itk_gateway.server import Gateway
from tests.gateway.conftest import PORTRAIT, speech_wav

KEY = "cli-test-key-0123456789abcdef"


def itk(url: str, *args: str, api_key: str = "", columns: int = 80) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ITK_URL": url, "ITK_API_KEY": api_key, "COLUMNS": str(columns), "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "itk_client.cli", *args], env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def test_help_names_the_key_variable_and_video_input(tmp_path: Path) -> None:
    top = itk("http://127.0.0.1:9", "--help")
    assert "ITK_API_KEY" in top.stdout and "ITK_URL" in top.stdout
    submit = itk("http://127.0.0.1:9", "submit", "--help", columns=200)
    assert "video to dub" in submit.stdout and "--lanes" in submit.stdout


def test_the_key_message_names_itk_api_key(make_gateway: Callable[..., Gateway], tmp_path: Path) -> None:
    gateway = make_gateway(api_keys=f"cli={KEY}")
    missing = itk(gateway.rest_url, "list")
    assert missing.returncode == 2
    assert "export ITK_API_KEY=<your key>" in missing.stderr, missing.stderr
    assert "Authorization" not in missing.stderr  # the CLI sends the header itself
    wrong = itk(gateway.rest_url, "list", api_key="not-the-right-key-at-all")
    assert wrong.returncode == 2 and "does not accept the API key in ITK_API_KEY" in wrong.stderr
    # Errors are one line each, whatever the width: the terminal wraps them, not the CLI mid-phrase.
    assert len(missing.stderr.strip().splitlines()) == 1
    assert itk(gateway.rest_url, "list", api_key=KEY).returncode == 0


def test_swapped_arguments_are_called_swapped(make_gateway: Callable[..., Gateway], tmp_path: Path) -> None:
    gateway = make_gateway()
    speech = tmp_path / "speech.wav"
    speech.write_bytes(speech_wav(2.0, seed=3))
    swapped = itk(gateway.rest_url, "submit", str(speech), str(PORTRAIT), "--no-wait")
    assert swapped.returncode == 2
    message = swapped.stderr.strip()
    assert "audio file (WAV)" in message and "swapped" in message, message
    assert len(message.splitlines()) == 1, message


def test_list_shows_whole_ids_that_fit_80_columns(make_gateway: Callable[..., Gateway], tmp_path: Path) -> None:
    gateway = make_gateway()
    speech = tmp_path / "speech.wav"
    speech.write_bytes(speech_wav(2.0, seed=4))
    with Client(gateway.rest_url) as client:
        ids = [client.submit(PORTRAIT, speech, 64, 64, dry_run=True).id for _ in range(2)]
    listed = itk(gateway.rest_url, "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["ID", "STATUS", "PROGRESS", "AGE"]
    assert all(len(line) <= 80 for line in lines), lines
    shown = [line.split()[0] for line in lines[1:]]
    assert set(ids) <= set(shown) and all(re.fullmatch(r"job-\d+-[0-9a-f]{32}", i) for i in shown)
    # A listed id works as it is in the other commands.
    status = itk(gateway.rest_url, "status", shown[0])
    assert status.returncode == 0 and shown[0] in status.stdout
    quiet = itk(gateway.rest_url, "list", "-q")
    assert quiet.stdout.split() == shown
    wide = itk(gateway.rest_url, "list", "--wide", columns=200)
    assert wide.stdout.splitlines()[0].split()[:6] == ["ID", "STATUS", "PROGRESS", "AGE", "PROVIDER", "SIZE"]
    assert "64x64" in wide.stdout
