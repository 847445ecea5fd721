"""The time-left estimate: none until frames have been coming for a while, then the rate since
generation began, so waiting for the split or a generator does not inflate it."""

from __future__ import annotations

from dataclasses import dataclass

from itk_gateway.jobs.eta import MIN_WINDOW_SEC, TimeLeft


@dataclass
class Record:
    id: str = "job-1"
    finished: bool = False
    split_done: bool = False
    frames_done: int = 0
    frames_total: int = 1700


def test_estimate_follows_generation_not_the_time_since_creation() -> None:
    now = [100.0]
    eta = TimeLeft(clock=lambda: now[0])
    job = Record()
    assert eta(job) is None  # still splitting
    now[0] += 30.0  # a long upload and split: not generation
    job.split_done = True
    assert eta(job) is None  # generation begins here
    now[0] += 1.0
    job.frames_done = 25
    assert eta(job) is None  # too early to tell
    now[0] += MIN_WINDOW_SEC
    job.frames_done = 100  # 100 frames in 4 s: 25 a second
    assert eta(job) == round(1600 / 25, 1)
    job.finished, job.frames_done = True, 1700
    assert eta(job) is None
