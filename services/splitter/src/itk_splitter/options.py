"""Split options: defaults, the client's overrides, and their validation.

Options where 0 is no usable value are plain proto scalars, and 0 (the unset value) means "use the
server's default". Options where 0 means something (no tolerance, no minimum, no audio context, a
hard cut at seams) are `optional` in the proto: unset takes the server's default, a sent 0 is 0.
Anything set must make sense or the request is refused with a message naming the field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from google.protobuf.message import Message

MIN_CHUNK_TARGET_SEC = 1.0
MAX_LANES = 64
# Speakers a multi-person recording may have (the model renders two; the splitter does not care).
MAX_TRACKS = 8
AUDIO_TYPES = ("para", "add")
# InfiniteTalk's stream: 81-frame clips, each after the first starting from the last 9 frames before it.
DEFAULT_CLIP_FRAMES = 81
DEFAULT_MOTION_FRAMES = 9
# The options whose 0 is a value (`optional` in the proto): only an unset one takes the default.
ZERO_MEANINGFUL_OPTIONS = ("tolerance_sec", "min_silence_sec", "min_chunk_sec", "min_lane_sec", "audio_context_sec",
                           "seam_fade_sec")


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
    # 0: independent chunks cut at pauses; n >= 1: at most n lanes (continuous streams).
    lane_count: int = 0
    min_lane_sec: float = 30.0
    # The lanes' clip grid; 0 = InfiniteTalk's 81 / 9.
    clip_frames: int = 0
    motion_frames: int = 0
    audio_context_sec: float = 0.0
    seam_fade_sec: float = 0.4
    # Multi-person: speakers (0/1 = one), one file per speaker or one channel each, para / add.
    track_count: int = 0
    channels_as_tracks: bool = False
    audio_type: str = "para"

    @property
    def tracks(self) -> int:
        return max(1, self.track_count)

    @property
    def lane_clip_frames(self) -> int:
        return self.clip_frames or DEFAULT_CLIP_FRAMES

    @property
    def lane_motion_frames(self) -> int:
        return self.motion_frames or DEFAULT_MOTION_FRAMES

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
        self._validate_lanes()
        return self

    def _validate_lanes(self) -> None:
        if not 0 <= self.lane_count <= MAX_LANES:
            raise OptionsError("lane_count", f"must be between 0 and {MAX_LANES}, got {self.lane_count}")
        if self.min_lane_sec < 0:
            raise OptionsError("min_lane_sec", f"must not be negative, got {self.min_lane_sec}")
        clip, motion = self.lane_clip_frames, self.lane_motion_frames
        if clip < 5 or (clip - 1) % 4:
            raise OptionsError("clip_frames", f"must be 4n+1 and at least 5, got {clip}")
        if motion < 1 or (motion - 1) % 4 or motion >= clip:
            raise OptionsError("motion_frames", f"must be 4n+1 and below clip_frames ({clip}), got {motion}")
        if not 0 <= self.audio_context_sec <= 30:
            raise OptionsError("audio_context_sec", f"must be between 0 and 30 s, got {self.audio_context_sec}")
        if not 0 <= self.seam_fade_sec <= 5:
            raise OptionsError("seam_fade_sec", f"must be between 0 and 5 s, got {self.seam_fade_sec}")
        if not 0 <= self.track_count <= MAX_TRACKS:
            raise OptionsError("track_count", f"must be between 0 and {MAX_TRACKS}, got {self.track_count}")
        if self.audio_type not in AUDIO_TYPES:
            raise OptionsError("audio_type", f"must be para or add, got {self.audio_type!r}")
        if self.channels_as_tracks and self.tracks < 2:
            raise OptionsError("channels_as_tracks", "needs track_count of 2 or more")

    def overridden_by(self, request: Message) -> SplitOptions:
        """These defaults with a SplitOptions message applied, validated: every optional field the
        message sets (0 included) and every other field it sets to non-zero."""
        changes: dict[str, object] = {}
        for name in ("chunk_target_sec", "silence_threshold_db", "target_lufs"):
            value = float(getattr(request, name))
            if value != 0.0:
                changes[name] = value
        for name in ZERO_MEANINGFUL_OPTIONS:
            if request.HasField(name):
                changes[name] = float(getattr(request, name))
        for name in ("lane_count", "clip_frames", "motion_frames"):
            number = int(getattr(request, name))
            if number != 0:
                changes[name] = number
        if request.skip_normalization:
            changes["skip_normalization"] = True
        for name in ("track_count",):
            number = int(getattr(request, name, 0))
            if number != 0:
                changes[name] = number
        if getattr(request, "channels_as_tracks", False):
            changes["channels_as_tracks"] = True
        if getattr(request, "audio_type", ""):
            changes["audio_type"] = str(request.audio_type)
        return replace(self, **changes).validated()


def _require_finite(options: SplitOptions) -> None:
    for name in ("chunk_target_sec", "silence_threshold_db", "min_silence_sec", "min_chunk_sec", "target_lufs",
                 "min_lane_sec", "audio_context_sec", "seam_fade_sec"):
        if not math.isfinite(getattr(options, name)):
            raise OptionsError(name, "must be a finite number")
    if options.tolerance_sec is not None and not math.isfinite(options.tolerance_sec):
        raise OptionsError("tolerance_sec", "must be a finite number")
