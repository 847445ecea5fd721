"""Split options: defaults, the client's overrides, and their validation.

In the proto every option is a plain scalar, so 0 (the unset value) means "use the server's default";
anything else must make sense or the request is refused with a message naming the field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

MIN_CHUNK_TARGET_SEC = 1.0


class OptionsError(ValueError):
    """An option the client set is unusable; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"options.{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class SplitOptions:
    chunk_target_sec: float = 45.0
    # None: a third of the chunk target.
    tolerance_sec: float | None = None
    silence_threshold_db: float = -40.0
    min_silence_sec: float = 0.5
    min_chunk_sec: float = 2.0
    target_lufs: float = -23.0
    skip_normalization: bool = False

    @property
    def effective_tolerance_sec(self) -> float:
        return self.chunk_target_sec / 3.0 if self.tolerance_sec is None else self.tolerance_sec

    def validated(self) -> SplitOptions:
        """Return self after checking every field; raise OptionsError on the first bad one."""
        _require_finite(self)
        # The generator renders clips of a few seconds, and a tiny target would turn a long recording
        # into a flood of chunks; a second is a generous floor.
        if self.chunk_target_sec < MIN_CHUNK_TARGET_SEC:
            raise OptionsError(
                "chunk_target_sec", f"must be at least {MIN_CHUNK_TARGET_SEC} s, got {self.chunk_target_sec}"
            )
        if self.tolerance_sec is not None and self.tolerance_sec < 0:
            raise OptionsError("tolerance_sec", f"must not be negative, got {self.tolerance_sec}")
        if not -150.0 <= self.silence_threshold_db < 0:
            raise OptionsError(
                "silence_threshold_db", f"must be a dBFS level in [-150, 0), got {self.silence_threshold_db}"
            )
        if self.min_silence_sec < 0:
            raise OptionsError("min_silence_sec", f"must not be negative, got {self.min_silence_sec}")
        if self.min_chunk_sec < 0:
            raise OptionsError("min_chunk_sec", f"must not be negative, got {self.min_chunk_sec}")
        if self.min_chunk_sec > self.chunk_target_sec:
            raise OptionsError(
                "min_chunk_sec",
                f"({self.min_chunk_sec}) must not exceed chunk_target_sec ({self.chunk_target_sec})",
            )
        if not -70.0 <= self.target_lufs < 0:
            raise OptionsError("target_lufs", f"must be in [-70, 0) LUFS, got {self.target_lufs}")
        return self

    def overridden_by(self, request: object) -> SplitOptions:
        """These defaults with every non-zero field of a SplitOptions message applied, validated."""
        changes: dict[str, object] = {}
        for name in (
            "chunk_target_sec",
            "tolerance_sec",
            "silence_threshold_db",
            "min_silence_sec",
            "min_chunk_sec",
            "target_lufs",
        ):
            value = float(getattr(request, name))
            if value != 0.0:
                changes[name] = value
        if getattr(request, "skip_normalization", False):
            changes["skip_normalization"] = True
        return replace(self, **changes).validated()


def _require_finite(options: SplitOptions) -> None:
    for name in ("chunk_target_sec", "silence_threshold_db", "min_silence_sec", "min_chunk_sec", "target_lufs"):
        if not math.isfinite(getattr(options, name)):
            raise OptionsError(name, "must be a finite number")
    if options.tolerance_sec is not None and not math.isfinite(options.tolerance_sec):
        raise OptionsError("tolerance_sec", "must be a finite number")
