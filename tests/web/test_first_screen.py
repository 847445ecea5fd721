"""What a newcomer meets first on the page: on a deployment with API keys, the request for a key in
the first screen pointing at its field; then a job made with the key, while another tab's Recent
jobs follows it live (events, no refresh); and a Provider menu that lists each pool once."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from itk_gateway.server import Gateway
from tests.gateway.conftest import PORTRAIT, speech_wav
from tests.helpers.services import GeneratorHandle, start_generator

KEY = "page-test-key-0123456789abcdef"


@pytest.fixture
def paced(tmp_path: Path) -> Iterator[GeneratorHandle]:
    handle = start_generator(tmp_path / "paced", cost_per_audio_sec=0.8)
    yield handle
    handle.stop()


def test_without_a_key_the_first_screen_asks_for_it_then_a_job_runs_with_it(
        browser, make_gateway: Callable[..., Gateway], paced: GeneratorHandle, tmp_path: Path) -> None:
    gateway = make_gateway(generator_targets=[paced.target], api_keys=f"me={KEY}", min_lane_sec=2.0)
    audio = tmp_path / "speech.wav"
    audio.write_bytes(speech_wav(8.0, seed=6))
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(gateway.rest_url + "/")

    # Asked at once, in the first screen, in the page's terms, with the field open and focused.
    note = page.wait_for_selector("#key-needed:not([hidden])")
    text = note.text_content()
    assert "API key field" in text and "Authorization" not in text, text
    for selector in ("#key-needed", "#api-key"):
        box = page.locator(selector).bounding_box()
        assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= 800, (selector, box)
    assert page.is_visible("#api-key") and page.evaluate("document.activeElement.id") == "api-key"
    assert page.get_attribute("#api-key", "aria-describedby") == "key-needed"

    # A job sent anyway says the same at the top, not under the button.
    page.set_input_files("#image", str(PORTRAIT))
    page.set_input_files("#audio", str(audio))
    page.click("#submit")
    page.wait_for_selector("#form-error >> text=API key field at the top")

    # With the key: the note goes, the job runs.
    page.fill("#api-key", KEY)
    page.press("#api-key", "Tab")
    page.wait_for_selector("#key-needed", state="hidden")
    page.select_option("#size", "custom")
    page.fill("#width", "96")
    page.fill("#height", "128")
    page.select_option("#lane-count", "1")
    page.click("#submit")
    page.wait_for_selector("#job-status[data-status=RUNNING]", timeout=30_000)
    job_id = page.text_content("#job-id")

    # A second tab's Recent jobs follows the running job without a refresh.
    other = context.new_page()
    other.goto(gateway.rest_url + "/")
    row = f'#recent button[data-job="{job_id}"]'
    other.wait_for_selector(row)
    seen: list[str] = []
    other.expose_function("recordStatus", lambda text: seen.append(text))
    other.evaluate("""(row) => new MutationObserver(() => window.recordStatus(
        document.querySelector(row + ' .st').textContent)).observe(
        document.querySelector(row + ' .st'), {childList: true, characterData: true, subtree: true})""", row)
    other.wait_for_selector(f"{row}[data-status=COMPLETED]", timeout=60_000)
    running = [int(m.group(1)) for text in seen if (m := re.match(r"RUNNING (\d+)%", text))]
    assert running and max(running) > 0, seen  # it moved while rendering, before it ended
    assert seen[-1] == "COMPLETED", seen
    page.wait_for_selector("#job-status[data-status=COMPLETED]", timeout=30_000)
    assert errors == []
    context.close()


def test_provider_menu_lists_each_pool_once(browser, make_gateway: Callable[..., Gateway],
                                            paced: GeneratorHandle) -> None:
    # A pool named like the default alias: the pool wins, and the menu lists it once.
    gateway = make_gateway(generator_pools={"runpod": [paced.target]})
    page = browser.new_page()
    page.goto(gateway.rest_url + "/")
    page.wait_for_function("document.getElementById('provider').options.length > 0")
    names = page.evaluate("[...document.getElementById('provider').options].map((o) => o.value)")
    assert sorted(names) == ["infinitetalk", "runpod"], names
    assert page.request.get(gateway.rest_url + "/favicon.ico").status == 200
    page.close()
