"""The splitter as a plain Python API: bytes in, normalised samples, a plan and WAV chunks out."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from itk_common.constants import SAMPLE_RATE, frames_for_samples
from itk_common.wav import encode_wav, mix_tracks

from .chunk_wav import encode_chunk
from .decode import AudioSource, decode_audio
from .lanes import LaneSpan, SeamSpan, independent_lanes, plan_lanes
from .loudness import LoudnessReport, measure_only, normalize_loudness
from .options import SplitOptions
from .plan import ChunkSpan, plan_chunks
from .silence import frame_levels_db, min_silence_frames, silent_runs
from .tracks import decode_tracks, line_up, normalize_tracks


@dataclass(frozen=True)
class EncodedChunk:
    span: ChunkSpan
    wav: bytes


@dataclass
class SplitResult:
    # The whole recording at 16 kHz mono after loudness normalisation; chunks are slices of it.
    # For several speakers, the mix of their tracks.
    samples: np.ndarray
    chunks: list[ChunkSpan]
    loudness: LoudnessReport
    # Pauses found, as frame ranges [start, end) of 640 samples.
    silences: list[tuple[int, int]]
    # Seconds spent per stage ("decode", "normalize", "plan"; "encode" grows as chunks are encoded).
    timings: dict[str, float] = field(default_factory=dict)
    # Lanes and the seams between them (empty when the options asked for independent chunks).
    lanes: list[LaneSpan] = field(default_factory=list)
    seams: list[SeamSpan] = field(default_factory=list)
    # Several speakers: float32 [persons, samples], each normalised track on the common timeline
    # (chunks are then slices of these, one WAV channel per person), and each track's loudness.
    tracks: np.ndarray | None = None
    track_loudness: list[LoudnessReport] = field(default_factory=list)

    def mix_wav(self) -> bytes | None:
        """The mix as a 16 kHz mono WAV for the final video; None for one speaker."""
        return None if self.tracks is None else encode_wav(self.samples, SAMPLE_RATE)

    @property
    def total_samples(self) -> int:
        return len(self.samples)

    @property
    def total_frames(self) -> int:
        return frames_for_samples(self.total_samples)

    @property
    def duration_sec(self) -> float:
        return self.total_samples / SAMPLE_RATE

    def iter_encoded(self) -> Iterator[EncodedChunk]:
        """Each chunk as a validated WAV, encoded only when asked for, so it can be sent at once."""
        for span in self.chunks:
            started = time.perf_counter()
            wav = encode_chunk(self.samples if self.tracks is None else self.tracks, span)
            self.timings["encode"] = self.timings.get("encode", 0.0) + time.perf_counter() - started
            yield EncodedChunk(span, wav)


def split_audio(source: AudioSource | list[AudioSource], options: SplitOptions | None = None, *,
                threads: int = 1) -> SplitResult:
    """Decode `source` (bytes, binary file or path), normalise it as a whole and plan its chunks.

    With options.track_count >= 2, `source` is a list: one file per speaker (person 1 first), or
    one recording with a speaker per channel (channels_as_tracks). Raises AudioDecodeError /
    EmptyAudioError / TrackMismatchError for unusable uploads and OptionsError for bad options.
    """
    options = (options or SplitOptions()).validated()
    sources = source if isinstance(source, list) else [source]
    timings: dict[str, float] = {}
    tracks: np.ndarray | None = None
    track_loudness: list[LoudnessReport] = []

    started = time.perf_counter()
    if options.tracks >= 2:
        decoded = decode_tracks(sources, options, threads)
        timings["decode"] = time.perf_counter() - started
        started = time.perf_counter()
        normalised, track_loudness = normalize_tracks(decoded, options)
        tracks = line_up(normalised, options.audio_type)
        samples, loudness = mix_tracks(tracks), track_loudness[0]
        # A pause is where every speaker is silent: the loudest track's level decides.
        levels = np.max([frame_levels_db(track) for track in tracks], axis=0)
    else:
        samples = decode_audio(sources[0], threads=threads)
        timings["decode"] = time.perf_counter() - started
        started = time.perf_counter()
        if options.skip_normalization:
            loudness = measure_only(samples)
        else:
            samples, loudness = normalize_loudness(samples, options.target_lufs)
        levels = frame_levels_db(samples)
    timings["normalize"] = time.perf_counter() - started

    started = time.perf_counter()
    # Every silent run a seam could lie in (gaps between words too); the pauses are the long ones.
    runs = silent_runs(levels, options.silence_threshold_db, min_silence_frames(0.0))
    min_pause = min_silence_frames(options.min_silence_sec)
    silences = [run for run in runs if run[1] - run[0] >= min_pause]
    lanes: list[LaneSpan] = []
    seams: list[SeamSpan] = []
    if options.lane_count >= 1:
        lane_plan = plan_lanes(runs, len(samples), options)
        chunks, lanes, seams = lane_plan.chunks, lane_plan.lanes, lane_plan.seams
    else:
        chunks, lanes, seams = independent_lanes(plan_chunks(silences, len(samples), options), runs, options)
    timings["plan"] = time.perf_counter() - started
    return SplitResult(samples, chunks, loudness, silences, timings, lanes, seams, tracks, track_loudness)
