"""The web page in headless Chromium (Debian's package, driven by Playwright) against a gateway
built in-process over real backends. Screenshots go to out/screenshots/ (ignored by git)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.conftest import make_gateway, portrait, services, slow_generator  # noqa: F401 - fixtures

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "out" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required",
         # A synthetic microphone (a beeping tone) that needs no permission prompt.
         "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright import sync_api as playwright_api
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: run `make browser`")
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
