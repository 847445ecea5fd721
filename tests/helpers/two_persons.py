"""Two speakers for multi-person tests: a portrait with two faces, a scripted conversation as two
tracks, and the check that each drawn mouth follows its own speaker.

The conversation alternates turns with pauses where both are silent, stretches where one speaks
while the other is silent, and a stretch where both speak at once, so a test can tell whether a
mouth follows its own track (and stays still during the other's turn) and whether seams fall only
where every track is silent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from itk_common.constants import SAMPLE_RATE, SAMPLES_PER_FRAME, frames_for_samples
from tests.helpers.audio import speech_like
from tests.helpers.sync import best_lag, mouth_openness_series

PORTRAIT = Path(__file__).resolve().parents[2] / "assets" / "sample" / "portrait.png"
# (start, end, who) in seconds of a 12 s conversation; who: 1, 2 or 3 (both at once).
TURNS = ((0.3, 2.6, 1), (3.4, 5.8, 2), (6.6, 8.1, 1), (8.1, 9.0, 3), (9.0, 10.2, 2), (10.9, 11.8, 1))
SECONDS = 12.0


def two_person_portrait() -> bytes:
    """The sample portrait beside its mirror image: two faces, person 1 left, person 2 right."""
    import cv2

    image = cv2.imread(str(PORTRAIT), cv2.IMREAD_COLOR)
    ok, encoded = cv2.imencode(".png", np.concatenate([image, image[:, ::-1]], axis=1))
    assert ok
    return encoded.tobytes()


def conversation(seconds: float = SECONDS, turns: tuple[tuple[float, float, int], ...] = TURNS,
                 seed: int = 0) -> np.ndarray:
    """float32 [2, samples]: person 1's and person 2's tracks (two different voices), silent
    outside their turns; `turns` repeat every 12 s over a longer conversation."""
    total = round(seconds * SAMPLE_RATE)
    tracks = np.zeros((2, total), dtype=np.float32)
    for person in (0, 1):
        voice = speech_like(seconds, pause_every_sec=1e9, seed=seed * 2 + person)
        for offset in np.arange(0.0, seconds, SECONDS):
            for start, end, who in turns:
                if who & (person + 1):
                    a = round((offset + start) * SAMPLE_RATE)
                    b = min(total, round((offset + end) * SAMPLE_RATE))
                    tracks[person, a:b] = voice[a:b]
    return tracks


def common_silences(tracks: np.ndarray, min_sec: float = 0.3) -> list[tuple[float, float]]:
    """(start, end) seconds where every track is exactly silent for at least `min_sec`."""
    silent = np.all(tracks == 0, axis=0)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], silent.astype(np.int8), [0]])))
    spans = [(a / SAMPLE_RATE, b / SAMPLE_RATE) for a, b in zip(edges[::2], edges[1::2], strict=True)]
    return [(a, b) for a, b in spans if b - a >= min_sec]


def frame_levels(samples: np.ndarray) -> np.ndarray:
    """RMS of each 640-sample (one video frame) window."""
    frames = frames_for_samples(len(samples))
    padded = np.zeros(frames * SAMPLES_PER_FRAME, dtype=np.float64)
    padded[: len(samples)] = samples
    return np.sqrt(np.mean(padded.reshape(frames, SAMPLES_PER_FRAME) ** 2, axis=1))


def check_mouths_follow_their_speakers(video: Path, tracks: np.ndarray,
                                       mouths: list[tuple[int, int, int, int]]) -> None:
    """Each mouth moves with its own track at lag 0 and stays still while only the other speaks."""
    levels = [frame_levels(track) for track in tracks]
    openness = [mouth_openness_series(video, mouth) for mouth in mouths]
    for person, (opened, level) in enumerate(zip(openness, levels, strict=True)):
        assert len(opened) == len(level), (person, len(opened), len(level))
        assert best_lag(opened, level, max_lag=12) == 0, f"person {person + 1}'s mouth is out of sync"
        other = levels[1 - person]
        # Frames where this person is silent and the other speaks (away from turn edges).
        quiet = (level == 0) & (np.convolve(other > 0.01, np.ones(5), mode="same") == 5)
        assert quiet.sum() > 25, "the conversation should give the other speaker turns of their own"
        assert opened[quiet].max() - opened[quiet].min() < 0.05, f"person {person + 1}'s mouth moved while silent"
        speaking = level > 0.05
        assert opened[speaking].mean() > opened[quiet].mean() + 0.1, f"person {person + 1}'s mouth did not open"
