"""Multi-person recordings: each speaker's track decoded, normalised on its own and lined up.

The tracks come as one file per speaker or as one recording with a speaker per channel. Each is
loudness-normalised over its whole length (a quiet speaker is lifted as much as a lone speaker
would be), then lined up the reference's way: `para` keeps them as given (both may talk at once;
they must be equally long), `add` plays person 1's track, then person 2's, each silent while the
other speaks. The video's sound is their mix.
"""

from __future__ import annotations

import numpy as np

from itk_common.constants import SAMPLE_RATE, SAMPLES_PER_FRAME

from .decode import AudioSource, decode_audio
from .errors import AudioInputError
from .loudness import LoudnessReport, measure_only, normalize_loudness
from .options import SplitOptions

# Separately exported tracks of one conversation may differ by a few samples; up to one video frame
# the shorter is padded with silence, beyond that the tracks do not belong together.
LENGTH_SLACK_SAMPLES = SAMPLES_PER_FRAME


class TrackMismatchError(AudioInputError):
    """The tracks cannot be played together as the request says."""


def decode_tracks(sources: list[AudioSource], options: SplitOptions, threads: int = 1) -> list[np.ndarray]:
    """Each speaker's samples at 16 kHz, person 1 first."""
    count = options.tracks
    if options.channels_as_tracks:
        if len(sources) != 1:
            raise TrackMismatchError(f"audio: one recording with a speaker per channel expected, got {len(sources)}")
        return list(decode_audio(sources[0], threads=threads, channels=count))
    if len(sources) != count:
        raise TrackMismatchError(f"audio: {count} speakers' tracks expected, got {len(sources)}")
    tracks = []
    for person, source in enumerate(sources, start=1):
        try:
            tracks.append(decode_audio(source, threads=threads))
        except AudioInputError as exc:
            raise type(exc)(str(exc).replace("audio:", f"audio of person {person}:", 1)) from exc
    return tracks


def normalize_tracks(tracks: list[np.ndarray], options: SplitOptions) -> tuple[list[np.ndarray], list[LoudnessReport]]:
    out, reports = [], []
    for track in tracks:
        if options.skip_normalization:
            normalised, report = track, measure_only(track)
        else:
            normalised, report = normalize_loudness(track, options.target_lufs)
        out.append(normalised)
        reports.append(report)
    return out, reports


def line_up(tracks: list[np.ndarray], audio_type: str) -> np.ndarray:
    """float32 [persons, samples]: the tracks on one timeline (see the module's docstring)."""
    if audio_type == "add":
        total = sum(len(track) for track in tracks)
        lined = np.zeros((len(tracks), total), dtype=np.float32)
        offset = 0
        for person, track in enumerate(tracks):
            lined[person, offset : offset + len(track)] = track
            offset += len(track)
        return lined
    lengths = [len(track) for track in tracks]
    longest = max(lengths)
    for person, length in enumerate(lengths, start=1):
        if longest - length > LENGTH_SLACK_SAMPLES:
            described = ", ".join(f"person {p}: {n / SAMPLE_RATE:.2f} s" for p, n in enumerate(lengths, start=1))
            raise TrackMismatchError(
                f"audio: with audio_type para the speakers' tracks must be equally long, they last {described} "
                f"(person {person}'s is {(longest - length) / SAMPLE_RATE:.2f} s short); pad them to one length, "
                "or use audio_type add to play person 1's track and then person 2's")
    lined = np.zeros((len(tracks), longest), dtype=np.float32)
    for person, track in enumerate(tracks):
        lined[person, : len(track)] = track
    return lined
