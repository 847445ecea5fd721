"""Deciding, per part, between stream copy and re-encoding to the job's reference parameters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av

from itk_common.video import Mp4Writer

from .errors import StitchCancelledError
from .parts import CodecSignature, PartAnalysis, PartTiming, analyse_part
from .spec import StitchSpec


@dataclass(frozen=True)
class PreparedPart:
    """A part ready to be remuxed: its file (original or re-encoded) and its frame timing."""

    index: int
    path: Path
    frame_count: int
    timing: PartTiming
    reencoded: bool


def conforms(signature: CodecSignature, spec: StitchSpec) -> bool:
    return (
        signature.codec == "h264"
        and (signature.width, signature.height) == (spec.width, spec.height)
        and signature.pix_fmt == "yuv420p"
        and signature.frame_rate == spec.fps
    )


def reencode(source: Path, target: Path, spec: StitchSpec, frame_count: int, cancelled: Callable[[], bool]) -> None:
    """Decode every frame and encode it with the writer the generators use, at the job's size.

    Using the same writer makes the new part's H.264 headers match the other parts', so the
    result can share their track.
    """
    with av.open(str(source)) as container, Mp4Writer(target, spec.width, spec.height, spec.fps,
                                                                  frame_count=frame_count) as writer:
        for frame in container.decode(video=0):
            if cancelled():
                raise StitchCancelledError
            writer.write_frame(frame)


def prepare_parts(parts: dict[int, Path], spec: StitchSpec, workdir: Path, cancelled: Callable[[], bool],
                  analyses: dict[int, PartAnalysis]) -> list[PreparedPart]:
    """Re-encode the parts that cannot be stream-copied; `analyses` holds every part's analysis."""
    signatures = {index: analysis.signature for index, analysis in analyses.items()}
    timings = {index: analysis.timing for index, analysis in analyses.items()}
    copyable = [
        index for index in range(spec.chunk_count)
        if conforms(signatures[index], spec) and timings[index].regular
    ]
    reference = signatures[copyable[0]] if copyable else None
    files = {index: parts[index] for index in range(spec.chunk_count)}
    redone: set[int] = set()

    def redo(indices: list[int]) -> None:
        for index in indices:
            files[index] = workdir / f"reencoded-{index}.mp4"
            reencode(parts[index], files[index], spec, spec.frame_counts[index], cancelled)
            # A part that decodes to fewer frames than it has packets is damaged.
            analysis = analyse_part(index, files[index], spec.fps, spec.frame_counts[index])
            signatures[index], timings[index] = analysis.signature, analysis.timing
            redone.add(index)

    redo([index for index in range(spec.chunk_count)
          if index not in copyable or signatures[index] != reference])
    signature_set = {signatures[index] for index in range(spec.chunk_count)}
    if len(signature_set) > 1:
        # The copied parts came from an encoder set up differently from ours, so the re-encoded
        # parts' headers differ from theirs: one track needs one set, so everything is re-encoded.
        redo([index for index in range(spec.chunk_count) if index not in redone])
    if len({signatures[index] for index in range(spec.chunk_count)}) > 1:
        raise RuntimeError("re-encoded parts still have differing codec parameters")
    return [
        PreparedPart(index=index, path=files[index], frame_count=spec.frame_counts[index],
                     timing=timings[index], reencoded=index in redone)
        for index in range(spec.chunk_count)
    ]
