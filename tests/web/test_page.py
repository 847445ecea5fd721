"""The page at `/`: upload, live progress per lane and piece, playback of the HLS stream before the job ends,
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
from tests.helpers.audio import encode_audio, speech_like
from tests.helpers.rest import call
from tests.helpers.services import GeneratorHandle, start_generator
from tests.helpers.two_persons import conversation, two_person_portrait
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
    # One pause, near the middle, where the seam between two lanes goes.
    path.write_bytes(encode_audio(speech_like(SECONDS, pause_every_sec=6.0, seed=2), 16_000, "wav"))
    return path


def fill_form(page, audio: Path | None, width: int = 96, height: int = 128) -> None:
    page.set_input_files("#image", str(PORTRAIT))
    if audio is not None:
        page.set_input_files("#audio", str(audio))
    page.select_option("#size", "custom")
    page.fill("#width", str(width))
    page.fill("#height", str(height))


def page_state(page) -> dict:
    return page.evaluate("""() => ({
        status: document.getElementById('job-status').dataset.status || '',
        time: document.getElementById('player').currentTime,
        paused: document.getElementById('player').paused,
        pieces: document.querySelectorAll('#lanes li.piece').length,
        lanes: document.querySelectorAll('#lanes li.lane').length,
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
    gateway = make_gateway(generator_targets=[paced.target], min_lane_sec=2.0)
    page = browser.new_page(viewport={"width": 1200, "height": 1100})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(gateway.rest_url + "/")
    assert page.title() == "InfiniteTalk"
    # The pools as the deployment serves them: the default pool once, with its generators' backend;
    # the preview renders the same with any preset, so no preset is offered.
    page.wait_for_function("document.getElementById('provider').options.length > 0")
    assert [o.text_content() for o in page.locator("#provider option").all()] == ["infinitetalk (preview)"]
    assert "also called runpod" in page.text_content("#provider-help")
    assert page.is_disabled("#preset") and "preview renders the same" in page.text_content("#preset-help")
    fill_form(page, audio_file)
    page.select_option("#lane-count", "2")
    page.screenshot(path=str(screenshots / "page-form.png"), full_page=True)
    page.click("#submit")

    # Progress per lane appears, each lane with its span, a labelled bar and its pieces under it,
    # the seam between them noted and marked on the timeline; then the video plays while the job
    # is still rendering.
    wait_for(page, lambda s: s["status"] == "RUNNING" and s["lanes"] == 2 and s["pieces"] >= 4, 30, "lanes shown")
    lanes = page.evaluate("""() => [...document.querySelectorAll('#lanes > li')].map((li) => ({
        kind: li.className, head: li.querySelector('.lane-head')?.textContent || li.textContent,
        bar: li.querySelector(':scope > progress')?.getAttribute('aria-label') || '',
        pieces: [...li.querySelectorAll('li.piece')].map((piece) => piece.textContent)}))""")
    assert [lane["kind"] for lane in lanes] == ["lane", "seam", "lane"], lanes
    first, seam, second = lanes
    assert first["head"].startswith("Lane 1") and "0:00.0 –" in first["head"] and "pieces" in first["head"]
    assert second["head"].startswith("Lane 2") and second["head"].endswith(" pieces")
    assert first["bar"].startswith("Lane 1, 0:00.0 – ") and " pieces done" in first["bar"]
    assert seam["head"].startswith("Seam at 0:0") and "frames" in seam["head"]
    seam_at = seam["head"].split()[2].rstrip(",")
    assert f"– {seam_at}" in first["head"] and f"{seam_at} –" in second["head"]  # where one lane ends, the next starts
    assert first["pieces"] and second["pieces"] and first["pieces"][0].startswith("Piece 1:")
    assert second["pieces"][0].startswith(f"Piece {len(first['pieces']) + 1}:")  # numbered across the job
    assert page.locator("#timeline .segment").count() == 2
    assert page.get_attribute("#timeline", "aria-label") == f"The clip in 2 lane(s), seams at {seam_at}"
    # The player appears only with a picture: never an empty black box mid-render.
    shown = page.wait_for_selector("#player:not([hidden])", timeout=30_000)
    assert page.evaluate("document.getElementById('player').readyState") >= 2
    frame = page.evaluate("""() => {
        const video = document.getElementById('player');
        const canvas = document.createElement('canvas');
        canvas.width = video.videoWidth; canvas.height = video.videoHeight;
        const context = canvas.getContext('2d');
        context.drawImage(video, 0, 0);
        const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
        let sum = 0;
        for (let i = 0; i < pixels.length; i += 4) sum += pixels[i] + pixels[i + 1] + pixels[i + 2];
        return {mean: sum / (pixels.length / 4) / 3,
                status: document.getElementById('job-status').dataset.status};
    }""")
    assert shown is not None and frame["status"] == "RUNNING" and frame["mean"] > 30, frame
    playing = wait_for(page, lambda s: s["time"] > 0.3 or s["status"] == "COMPLETED", 30, "playback")
    assert playing["status"] == "RUNNING", "the video should play before the job ends"
    assert not playing["paused"]
    page.screenshot(path=str(screenshots / "page-rendering.png"), full_page=True)
    detail = page.text_content("#job-detail")
    assert "frames" in detail and "2 lanes" in detail and "pieces" in detail

    wait_for(page, lambda s: s["status"] == "COMPLETED", 60, "completion")
    assert page.text_content("#job-status").startswith("Done")
    page.screenshot(path=str(screenshots / "page-done.png"), full_page=True)
    # Every lane finished: all its pieces done, its bar full.
    bars = page.evaluate("""() => [...document.querySelectorAll('#lanes li.lane')].map((li) => ({
        state: li.dataset.state, count: li.querySelector('.lane-count').textContent}))""")
    assert len(bars) == 2 and all(bar["state"] == "done" for bar in bars), bars
    assert all(bar["count"].split(" / ")[0] == bar["count"].split(" / ")[1].split()[0] for bar in bars), bars
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
    gateway = make_gateway(generator_targets=[slow_generator.target], min_lane_sec=1.0)  # 2.5 s recorded: 2 lanes
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
    page.select_option("#lane-count", "2")
    page.click("#submit")
    wait_for(page, lambda s: s["status"] == "RUNNING" and s["lanes"] == 2, 30, "running in two lanes")
    page.click("#cancel")
    wait_for(page, lambda s: s["status"] == "CANCELLED", 30, "cancelled")
    assert page.is_hidden("#cancel") and page.is_hidden("#download")
    assert page.locator("#lanes li.piece.running").count() == 0
    assert page.locator("#lanes li.piece.stopped").count() >= 1
    assert page.locator("#lanes li.lane[data-state=stopped]").count() >= 1
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


def test_two_people_with_boxes_drawn_on_the_portrait(browser, make_gateway: Callable[..., Gateway],
                                                     tmp_path: Path) -> None:
    gateway = make_gateway()
    first, second = conversation(seconds=2.0, seed=3)
    paths = {"image": tmp_path / "two.png", "audio": tmp_path / "one.wav", "audio_2": tmp_path / "two.wav"}
    paths["image"].write_bytes(two_person_portrait())
    paths["audio"].write_bytes(encode_audio(first, 16_000, "wav"))
    paths["audio_2"].write_bytes(encode_audio(second, 16_000, "wav"))
    page = browser.new_page(viewport={"width": 1200, "height": 1400})
    page.goto(gateway.rest_url + "/")
    for field, path in paths.items():
        page.set_input_files(f"#{field}", str(path))
    page.select_option("#size", "custom")
    page.fill("#width", "128")
    page.fill("#height", "64")
    page.select_option("#audio-type", "add")
    canvas = page.locator("#speaker-boxes")
    canvas.wait_for(state="visible")
    for x0, y0, x1, y1 in ((150, 40, 300, 200), (724, 40, 874, 200)):
        area = canvas.bounding_box()  # measured again: the status line above it may have rewrapped
        assert area is not None
        scale = area["width"] / 1024  # the portrait is 1024 pixels wide
        page.mouse.move(area["x"] + x0 * scale, area["y"] + y0 * scale)
        page.mouse.down()
        page.mouse.move(area["x"] + x1 * scale, area["y"] + y1 * scale, steps=4)
        page.mouse.up()
    assert page.text_content("#boxes-status") == "2 of 2 boxes drawn"
    page.click("#submit")
    final = wait_for(page, lambda state: state["status"] in ("COMPLETED", "FAILED"), 90, "the job's end")
    assert final["status"] == "COMPLETED", page.text_content("#job-detail")
    detail = page.text_content("#job-detail")
    assert "two people (add), boxes as drawn: person 1 [" in detail
    job_id = page.text_content("#job-id")
    _, job = call("GET", f"{gateway.rest_url}/jobs/{job_id}?include_video=false")
    for drawn, used in zip(((150, 40, 300, 200), (724, 40, 874, 200)), (s["box"] for s in job["speakers"]),
                           strict=True):
        assert all(abs(a - b) <= 3 for a, b in zip(drawn, used, strict=True)), (drawn, used)
    page.close()
