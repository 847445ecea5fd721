"""The page at `/`: upload, live progress, playback of the HLS stream before the job ends,
cancel, download, recent jobs, the API key field, errors, a phone-sized screen."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from itk_common.constants import FPS
from itk_common.video import probe_video
from itk_gateway.server import Gateway
from tests.gateway.conftest import PORTRAIT, speech_wav
from tests.helpers.services import GeneratorHandle, start_generator
from tests.helpers.video import write_video

SECONDS = 12.0


@pytest.fixture
def paced(tmp_path: Path) -> Iterator[GeneratorHandle]:
    """0.6 s per second of audio: a 12 s recording renders in about 7 s, part after part."""
    handle = start_generator(tmp_path / "paced", cost_per_audio_sec=0.6)
    yield handle
    handle.stop()


@pytest.fixture
def audio_file(tmp_path: Path) -> Path:
    path = tmp_path / "speech.wav"
    path.write_bytes(speech_wav(SECONDS, seed=5))
    return path


def fill_form(page, audio: Path | None, width: int = 96, height: int = 128) -> None:
    page.set_input_files("#image", str(PORTRAIT))
    if audio is not None:
        page.set_input_files("#audio", str(audio))
    page.select_option("#size", "custom")
    page.fill("#width", str(width))
    page.fill("#height", str(height))
    page.select_option("#preset", "fast")


def page_state(page) -> dict:
    return page.evaluate("""() => ({
        status: document.getElementById('job-status').dataset.status || '',
        time: document.getElementById('player').currentTime,
        paused: document.getElementById('player').paused,
        pieces: document.querySelectorAll('#pieces li').length,
    })""")


def wait_for(page, predicate: Callable[[dict], bool], timeout: float, what: str) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        state = page_state(page)
        if predicate(state):
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout:.0f}s; last state {state}")
        time.sleep(0.05)


def test_make_a_video_watch_it_render_and_download(browser, make_gateway: Callable[..., Gateway],
                                                   paced: GeneratorHandle, audio_file: Path,
                                                   screenshots: Path, tmp_path: Path) -> None:
    gateway = make_gateway(generator_targets=[paced.target])
    page = browser.new_page(viewport={"width": 1200, "height": 1100})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(gateway.rest_url + "/")
    assert page.title() == "InfiniteTalk"
    assert page.locator("#provider option").first.text_content() == "infinitetalk"
    fill_form(page, audio_file)
    page.screenshot(path=str(screenshots / "page-form.png"), full_page=True)
    page.click("#submit")

    # Progress per piece appears, then the video plays while the job is still rendering.
    wait_for(page, lambda s: s["status"] == "RUNNING" and s["pieces"] >= 2, 30, "pieces shown")
    playing = wait_for(page, lambda s: s["time"] > 0.3 or s["status"] == "COMPLETED", 30, "playback")
    assert playing["status"] == "RUNNING", "the video should play before the job ends"
    assert not playing["paused"]
    page.screenshot(path=str(screenshots / "page-rendering.png"), full_page=True)
    detail = page.text_content("#job-detail")
    assert "frames" in detail and "pieces" in detail

    wait_for(page, lambda s: s["status"] == "COMPLETED", 60, "completion")
    assert page.text_content("#job-status").startswith("Done")
    page.screenshot(path=str(screenshots / "page-done.png"), full_page=True)
    with page.expect_download() as download:
        page.click("#download")
    saved = tmp_path / "download.mp4"
    download.value.save_as(saved)
    info = probe_video(saved)
    assert info.frame_count == round(SECONDS * FPS) and (info.width, info.height) == (96, 128)
    job_id = page.text_content("#job-id")
    page.click("#refresh")
    page.wait_for_selector(f"#recent >> text={job_id}")
    # The browser's own HLS player plays the playlist too (no API key on this deployment).
    native = page.evaluate("""async (url) => {
        const video = document.createElement('video');
        video.muted = true;
        video.src = url;
        document.body.append(video);
        await new Promise((ok, fail) => { video.onloadedmetadata = ok; video.onerror = () => fail(video.error); });
        await video.play();
        await new Promise((ok) => setTimeout(ok, 800));
        const result = {duration: video.duration, time: video.currentTime};
        video.remove();
        return result;
    }""", f"/jobs/{job_id}/hls/index.m3u8")
    assert abs(native["duration"] - SECONDS) < 0.2 and native["time"] > 0.3, native
    # The address names the job: opening it in a new page shows the job.
    assert page.url.endswith(f"/#{job_id}")
    linked = browser.new_page()
    linked.goto(page.url)
    linked.wait_for_selector("#job-status[data-status=COMPLETED]")
    assert linked.text_content("#job-id") == job_id
    linked.close()
    # Opening it again from the list replays the whole stream.
    page.evaluate("document.getElementById('player').pause()")
    page.click(f"#recent >> text={job_id}")
    wait_for(page, lambda s: s["status"] == "COMPLETED" and 0 < s["time"] < 5 and not s["paused"], 30,
             "replay from the recent jobs")
    assert errors == []
    page.close()


def test_cancel_errors_api_key_and_phone(browser, make_gateway: Callable[..., Gateway],
                                         slow_generator: GeneratorHandle, audio_file: Path,
                                         screenshots: Path) -> None:
    gateway = make_gateway(generator_targets=[slow_generator.target])
    page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    sent_keys: list[str] = []

    def on_request(request) -> None:
        # API calls (page files and blob: previews are not API calls).
        if request.url.startswith(gateway.rest_url + "/jobs") or request.url.endswith("/config"):
            sent_keys.append(request.headers.get("authorization", ""))

    page.on("request", on_request)
    page.goto(gateway.rest_url + "/")

    # Every control has a label; the form is reachable and usable from the keyboard.
    unlabelled = page.evaluate("""() => [...document.querySelectorAll('input, select, textarea')]
        .filter((el) => !el.labels.length && !el.getAttribute('aria-label')).map((el) => el.id)""")
    assert unlabelled == []
    page.focus("#prompt")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "submit"
    page.keyboard.press("Enter")
    assert "portrait" in page.text_content("#form-error")

    # A portrait dropped on its box is taken like a picked one.
    page.evaluate("""(b64) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const data = new DataTransfer();
        data.items.add(new File([bytes], 'dropped.png', {type: 'image/png'}));
        document.getElementById('image-drop').dispatchEvent(new DragEvent('drop', {dataTransfer: data, bubbles: true}));
    }""", base64.b64encode(PORTRAIT.read_bytes()).decode())
    assert "dropped.png" in page.text_content("#image-text")
    assert page.evaluate("document.getElementById('image').files[0].name") == "dropped.png"
    page.evaluate("document.getElementById('image').value = ''")

    # Server refusals show their message and code.
    fill_form(page, audio_file, width=5000)
    page.click("#submit")
    page.wait_for_selector("#form-error >> text=width")
    assert "VALIDATION_ERROR" in page.text_content("#form-error")

    # The key is kept in the browser and sent with every request.
    page.click(".key summary")
    page.fill("#api-key", "itk_test_key")
    page.press("#api-key", "Tab")
    page.reload()
    assert page.input_value("#api-key") == "itk_test_key"
    sent_keys.clear()

    # Speech recorded from the (synthetic) microphone instead of a file.
    page.click("#record")
    page.wait_for_selector("#record-status >> text=Recording")
    time.sleep(2.5)
    page.click("#record")
    page.wait_for_selector("#record-status >> text=Recorded")
    assert page.get_attribute("#record", "aria-pressed") == "false"
    assert "recording.webm" in page.text_content("#audio-text")
    fill_form(page, None)
    page.click("#submit")
    wait_for(page, lambda s: s["status"] == "RUNNING", 30, "running")
    page.click("#cancel")
    wait_for(page, lambda s: s["status"] == "CANCELLED", 30, "cancelled")
    assert page.is_hidden("#cancel") and page.is_hidden("#download")
    assert page.locator("#pieces li.running").count() == 0 and page.locator("#pieces li.stopped").count() >= 1
    assert sent_keys and all(key == "Bearer itk_test_key" for key in sent_keys)
    # Usable on a phone: nothing wider than the screen.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(screenshots / "page-phone.png"), full_page=True)
    page.close()


def test_a_video_to_dub_from_the_page(browser, make_gateway: Callable[..., Gateway], tmp_path: Path) -> None:
    """The page offers videos as the reference and the job dubs the one picked."""
    gateway = make_gateway()
    video = write_video(tmp_path / "interview.mp4", 4.0, fps=30, width=96, height=128)
    audio = tmp_path / "dub.wav"
    audio.write_bytes(speech_wav(3.0, seed=8))
    page = browser.new_page(viewport={"width": 1200, "height": 1100})
    page.goto(gateway.rest_url + "/")
    page.wait_for_function("document.getElementById('image').accept.includes('video/')")
    assert "video" in page.text_content("#image-text")
    page.set_input_files("#image", str(video))
    page.set_input_files("#audio", str(audio))
    page.select_option("#size", "custom")
    page.fill("#width", "96")
    page.fill("#height", "128")
    page.click("#submit")
    final = wait_for(page, lambda state: state["status"] in ("COMPLETED", "FAILED"), 90, "the job's end")
    assert final["status"] == "COMPLETED", page.text_content("#job-status")
    page.close()
