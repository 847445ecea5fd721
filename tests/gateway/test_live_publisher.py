"""The live stream's segment maker on its own: segments follow finished parts in order, a part
encoded differently gets its own initialization section, a stream missing a part is not ended."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from itk_common.constants import SAMPLES_PER_FRAME
from itk_common.video import write_mp4
from itk_gateway.jobs.validation import JobOptions
from itk_gateway.live.publisher import LivePublisher, Manifest, SegmentEntry, render_playlist
from itk_gateway.storage.database import SqliteDatabase
from itk_gateway.storage.files import JobFiles
from itk_gateway.storage.store import CHUNK_DONE, ChunkRecord, JobStore
from tests.helpers.audio import encode_audio, speech_like

JOB = "job-1700000000-0123abcd"
FRAMES = (25, 30, 20)


@pytest.fixture
def publisher(tmp_path: Path) -> LivePublisher:
    store = JobStore(SqliteDatabase(tmp_path / "jobs.sqlite3"))
    files = JobFiles(tmp_path)
    store.create_job(JOB, JobOptions(width=64, height=64, pool="infinitetalk"))
    files.create_work_dir(JOB)
    files.audio(JOB).write_bytes(encode_audio(speech_like(sum(FRAMES) * SAMPLES_PER_FRAME / 16_000), 16_000, "wav"))
    start = 0
    for index, frames in enumerate(FRAMES):
        store.record_chunk(ChunkRecord(JOB, index, start, start + frames * SAMPLES_PER_FRAME, frames))
        start += frames * SAMPLES_PER_FRAME
    store.update_job(JOB, chunk_count=len(FRAMES), frames_total=sum(FRAMES), split_done=1)
    return LivePublisher(tmp_path, store, files)


def finish_part(publisher: LivePublisher, index: int, size: int = 64, garbage: bool = False) -> None:
    path = publisher.files.part(JOB, index)
    if garbage:
        path.write_bytes(b"not an mp4" * 100)
    else:
        frames = (np.full((size, size, 3), 40 * index + i, np.uint8) for i in range(FRAMES[index]))
        write_mp4(path, frames, size, size)
    publisher.store.update_chunk(JOB, index, status=CHUNK_DONE, frames_done=FRAMES[index])
    publisher.part_ready(JOB)


def test_segments_follow_finished_parts_in_order(publisher: LivePublisher) -> None:
    publisher.start(JOB)
    finish_part(publisher, 1)
    assert publisher.manifest(JOB).segments == []  # part 0 is not done: nothing can play yet
    finish_part(publisher, 0)
    assert [s.index for s in publisher.manifest(JOB).segments] == [0, 1]
    # A part from an encoder with other settings (here another size) starts a new init section.
    finish_part(publisher, 2, size=48)
    publisher.complete(JOB)
    manifest = publisher.manifest(JOB)
    assert [(s.index, s.init, s.start_frame) for s in manifest.segments] == [(0, 0, 0), (1, 0, 25), (2, 1, 55)]
    assert manifest.ended
    playlist = render_playlist(manifest, 1.2)
    assert playlist.count("#EXT-X-MAP") == 2 and playlist.count("#EXT-X-DISCONTINUITY") == 1
    assert "#EXT-X-TARGETDURATION:2" in playlist and playlist.rstrip().endswith("#EXT-X-ENDLIST")
    assert publisher.segment_path(JOB, "init-1.mp4") is not None
    assert publisher.segment_path(JOB, "audio.m4a") is None and publisher.segment_path(JOB, "../jobs") is None


def test_a_stream_missing_a_part_is_removed_not_ended(publisher: LivePublisher) -> None:
    publisher.start(JOB)
    finish_part(publisher, 0)
    finish_part(publisher, 1, garbage=True)
    finish_part(publisher, 2)
    assert [s.index for s in publisher.manifest(JOB).segments] == [0]
    publisher.complete(JOB)
    assert not publisher.folder(JOB).exists()


def test_playlist_without_segments_yet() -> None:
    text = render_playlist(Manifest(), 45.3)
    assert "#EXT-X-TARGETDURATION:46" in text and "#EXTINF" not in text and "#EXT-X-ENDLIST" not in text
    entry = SegmentEntry(index=0, init=0, start_frame=0, frame_count=50)
    assert render_playlist(Manifest([entry], 1, True), 2.0).splitlines()[-3:] == [
        "#EXTINF:2.000,", "seg-00000.m4s", "#EXT-X-ENDLIST"]


def test_a_clip_that_comes_before_the_audio_is_ready_plays_once_it_is(publisher: LivePublisher,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A long recording can still be encoding when the first clip arrives; the clip then becomes a
    segment as soon as the audio is ready, not when the next clip (a whole clip later) comes."""
    import threading

    from itk_gateway.live import publisher as module

    release = threading.Event()
    encode = module.encode_recording

    def slow_encode(source: Path, destination: Path) -> None:
        assert release.wait(30)
        encode(source, destination)

    monkeypatch.setattr(module, "encode_recording", slow_encode)
    publisher.start(JOB)
    clip = publisher.folder(JOB).parent / "clip.mp4"
    frames = (np.full((64, 64, 3), 10 + i, np.uint8) for i in range(10))
    write_mp4(clip, frames, 64, 64)
    publisher.clip_ready(JOB, 0, 0, 10, clip)
    assert publisher.manifest(JOB).segments == []  # no audio yet
    release.set()
    deadline = time.monotonic() + 30
    while not publisher.manifest(JOB).segments and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [(s.index, s.part, s.part_offset, s.frame_count) for s in publisher.manifest(JOB).segments] == [
        (0, 0, 0, 10)]
