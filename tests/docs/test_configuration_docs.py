"""docs/configuration.md's tables are generated from the services' settings; these fail when they drift."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from itk_gateway.config import SETTINGS_HELP, Settings
from scripts import gen_config_docs

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_tables_are_what_the_code_generates() -> None:
    block, problems = gen_config_docs.render()
    assert problems == []
    assert gen_config_docs.DOC.read_text() == gen_config_docs.updated_document(block), (
        "docs/configuration.md differs from the settings in code: run `make config-docs`")


def test_the_check_fails_on_an_undocumented_or_unread_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = tmp_path / "service"
    code.mkdir()
    (code / "settings.py").write_text(
        'from itk_common.config import env_int\n'
        'SETTINGS_HELP = {"GONE_SEC": "no code reads it"}\n'
        'PORT = env_int("NEW_PORT", 7000, minimum=0)\n')
    monkeypatch.setattr(gen_config_docs, "ROOT", tmp_path)
    monkeypatch.setattr(gen_config_docs, "SECTIONS", (gen_config_docs.Section("Test", ("service",),
                                                                              "service/settings.py"),))
    block, problems = gen_config_docs.render()
    assert any("NEW_PORT is read by the code but has no SETTINGS_HELP entry" in p for p in problems)
    assert any("SETTINGS_HELP names GONE_SEC" in p for p in problems)
    (code / "settings.py").write_text(
        'from itk_common.config import env_int\n'
        'SETTINGS_HELP = {"NEW_PORT": "the port"}\n'
        'PORT = env_int("NEW_PORT", 7000, minimum=0)\n')
    block, problems = gen_config_docs.render()
    assert problems == [] and "| `NEW_PORT` | `7000` | the port |" in block


def test_the_script_checks_from_the_command_line() -> None:
    result = subprocess.run([sys.executable, "scripts/gen_config_docs.py", "--check"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_the_gateways_field_defaults_are_its_environment_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings() (what tests and embedders build) and Settings.from_env() with nothing set agree."""
    for name in SETTINGS_HELP:
        monkeypatch.delenv(name, raising=False)
    for name in list(os.environ):
        if name.startswith("GENERATOR_POOL_"):
            monkeypatch.delenv(name)
    assert Settings.from_env() == Settings()
