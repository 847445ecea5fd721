"""The page's screenshots in docs/: a job rendering the bundled sample in two lanes, at 1280x800
(docs/web-page.png) and on a 390x844 phone screen (docs/web-page-phone.png).

    .venv/bin/python scripts/screenshots.py

Starts the stack of `make up` (two paced `preview` generators, 8 s pieces, lanes of at least 6 s so
the 23.6 s sample renders in two) on free loopback ports,
makes the video through the page in headless Chromium (Debian's `chromium`, as the page's tests
use it), and takes each screenshot once the video plays while the job still renders.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.stack import Stack  # noqa: E402

SAMPLE = ROOT / "assets" / "sample"
SHOTS = {"web-page.png": {"width": 1280, "height": 800}, "web-page-phone.png": {"width": 390, "height": 844}}


def capture(browser, url: str, viewport: dict[str, int], path: Path) -> None:
    phone = viewport["width"] < 600
    page = browser.new_page(viewport=viewport, is_mobile=phone, has_touch=phone)
    page.goto(url)
    page.wait_for_function("document.getElementById('provider').options.length > 0")
    page.set_input_files("#image", str(SAMPLE / "portrait.png"))
    page.set_input_files("#audio", str(SAMPLE / "speech.wav"))
    page.select_option("#size", "480x832")
    page.select_option("#lane-count", "2")
    page.click("#submit")
    page.wait_for_selector("#player:not([hidden])", timeout=120_000)
    deadline = time.monotonic() + 60
    while page.evaluate("document.getElementById('player').currentTime") < 1.0 and time.monotonic() < deadline:
        time.sleep(0.1)
    # The job view with the video, as a person sees it after pressing the button.
    page.evaluate("document.getElementById('job').scrollIntoView({block: 'start'})")
    page.screenshot(path=str(path))
    page.close()


def main() -> int:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with tempfile.TemporaryDirectory(prefix="itk-shots-") as workdir, \
            Stack(Path(workdir), generators=2, generator_env={"PREVIEW_COST_PER_AUDIO_SEC": "0.5"},
                  gateway_env={"CHUNK_TARGET_SEC": "8", "MIN_LANE_SEC": "6"}) as stack, \
            sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium,
                                             args=["--headless", "--no-sandbox", "--disable-gpu",
                                                   "--autoplay-policy=no-user-gesture-required"])
        for name, viewport in SHOTS.items():
            capture(browser, stack.rest_url + "/", viewport, ROOT / "docs" / name)
            print(f"wrote docs/{name} ({viewport['width']}x{viewport['height']})")
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
