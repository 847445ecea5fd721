"""The page shows a completed job's quality report: the headline line and the per-segment chart."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from itk_common.wav import encode_wav
from itk_gateway.server import Gateway
from tests.helpers.faces import portrait_png, speech
from tests.helpers.rest import submit_multipart


def test_quality_report_and_chart(browser, make_gateway: Callable[..., Gateway], screenshots: Path) -> None:
    gateway = make_gateway(quality_report=True, chunk_target_sec=12.0)
    job_id = submit_multipart(gateway.rest_url, portrait_png(), encode_wav(speech(12.0)), width=256, height=256)
    page = browser.new_page(viewport={"width": 900, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{gateway.rest_url}/#{job_id}")
    page.wait_for_selector("#quality svg.quality-chart", timeout=120_000)
    summary = page.text_content("#quality .quality-summary")
    assert summary.startswith("Quality: lip sync lag 0 frames"), summary
    assert "identity distance" in summary and "face colour ΔE" in summary and "audio 12.00 s" in summary
    # One bar per segment (12 s: one segment) in each of the three rows, labelled for screen readers.
    assert page.locator("#quality svg rect.bar").count() == 3
    label = page.get_attribute("#quality svg", "aria-label")
    assert label.startswith("Quality per segment (1): lip sync (correlation): ")
    page.screenshot(path=str(screenshots / "page-quality.png"), full_page=True)
    assert not errors, errors
