"""What a job's parts must add up to, as the header announces it."""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import StitchInputError


@dataclass(frozen=True)
class StitchSpec:
    """What the job should add up to: chunk count, output size and each chunk's planned frames."""

    fps: int
    width: int
    height: int
    frame_counts: tuple[int, ...]
    # Seams between lanes: the first part after each seam -> frames cross-faded on each side.
    seams: dict[int, int] = field(default_factory=dict)

    @property
    def chunk_count(self) -> int:
        return len(self.frame_counts)

    @property
    def total_frames(self) -> int:
        return sum(self.frame_counts)

    def validate(self) -> None:
        if not self.frame_counts:
            raise StitchInputError("the header plans no chunks")
        if self.fps <= 0:
            raise StitchInputError(f"fps must be positive, got {self.fps}")
        if self.width <= 0 or self.height <= 0 or self.width % 2 or self.height % 2:
            raise StitchInputError(f"width and height must be positive and even, got {self.width}x{self.height}")
        for index, count in enumerate(self.frame_counts):
            if count <= 0:
                raise StitchInputError(f"chunk {index}: planned frame count must be positive, got {count}")
        for index, frames in self.seams.items():
            if not 1 <= index < self.chunk_count:
                raise StitchInputError(f"seam at chunk {index}: must be between 1 and {self.chunk_count - 1}")
            if frames < 0:
                raise StitchInputError(f"seam at chunk {index}: fade_frames must not be negative, got {frames}")
