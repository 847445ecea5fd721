"""The stitching API, free of gRPC: check the parts, join them in order, mux the audio once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .audio import EncodedAudio, encode_audio
from .errors import StitchInputError
from .join import prepare_parts
from .mux import write_output
from .parts import PartAnalysis, analyse_part
from .seams import soften_seams
from .spec import StitchSpec

# The splitter plans ceil(samples / 640) frames per chunk, so the video may run up to one frame past
# the audio; the margin absorbs rounding when the audio is not 16 kHz.
DURATION_MARGIN_SEC = 0.002


@dataclass(frozen=True)
class StitchReport:
    frame_count: int
    video_duration_sec: float
    audio_duration_sec: float
    copied_parts: int
    reencoded_parts: int
    video_size: int
    reencoded_indices: tuple[int, ...]
    softened_seams: int = 0


def stitch(parts: dict[int, Path], audio: Path | EncodedAudio, spec: StitchSpec, out: Path, *, workdir: Path,
           cancelled: Callable[[], bool] = lambda: False,
           analyses: dict[int, PartAnalysis] | None = None) -> StitchReport:
    """Write `out`: the parts' video in index order plus `audio` encoded once as AAC, fast-start.

    `audio` is the original recording, or that recording already encoded by `encode_audio`;
    `analyses` holds parts already analysed by `analyse_part` (the others are analysed here).

    `workdir` receives re-encoded parts; the caller owns and removes it. On failure `out` is not left
    behind. Raises StitchInputError for a request that cannot be stitched as given.
    """
    spec.validate()
    absent = [index for index in range(spec.chunk_count) if index not in parts]
    if absent:
        raise StitchInputError(f"missing parts for chunks {', '.join(map(str, absent))}")
    analyses = dict(analyses or {})
    for index in range(spec.chunk_count):
        if index not in analyses:
            analyses[index] = analyse_part(index, parts[index], spec.fps, spec.frame_counts[index])
    if not isinstance(audio, EncodedAudio):
        audio = encode_audio(audio, workdir / "audio.m4a")
    audio_info = audio.info
    video_duration = spec.total_frames / spec.fps
    excess = video_duration - audio_info.duration_sec
    if not -DURATION_MARGIN_SEC <= excess <= 1 / spec.fps + DURATION_MARGIN_SEC:
        raise StitchInputError(
            f"the parts make {video_duration:.3f} s of video but the audio lasts "
            f"{audio_info.duration_sec:.3f} s; they must agree within one frame"
        )
    softened = soften_seams(parts, spec, workdir, cancelled)
    for index, path in softened.items():
        if path != parts[index]:
            analyses[index] = analyse_part(index, path, spec.fps, spec.frame_counts[index])
    prepared = prepare_parts(softened, spec, workdir, cancelled, analyses)
    try:
        written = write_output(out, prepared, audio, spec.fps, cancelled)
        if written != spec.total_frames:
            raise RuntimeError(f"wrote {written} frames, expected {spec.total_frames}")
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    reencoded = tuple(part.index for part in prepared if part.reencoded)
    return StitchReport(
        frame_count=written,
        video_duration_sec=written / spec.fps,
        audio_duration_sec=audio_info.duration_sec,
        copied_parts=len(prepared) - len(reencoded),
        reencoded_parts=len(reencoded),
        video_size=out.stat().st_size,
        reencoded_indices=reencoded,
        softened_seams=sum(1 for frames in spec.seams.values() if frames > 0),
    )
