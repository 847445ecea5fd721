from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class QualityReport(_message.Message):
    __slots__ = ("state", "error", "frame_count", "fps", "video_duration_sec", "audio_duration_sec", "reference", "segments", "sync_lag_frames", "sync_correlation", "identity_distance", "identity_trend_per_min", "face_colour_delta_e", "frame_colour_delta_e", "face_colour_trend_per_min", "step_p99", "steps", "max_seam_step", "max_boundary_step", "face_share", "compute_sec")
    STATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    FRAME_COUNT_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    VIDEO_DURATION_SEC_FIELD_NUMBER: _ClassVar[int]
    AUDIO_DURATION_SEC_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    SYNC_LAG_FRAMES_FIELD_NUMBER: _ClassVar[int]
    SYNC_CORRELATION_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_DISTANCE_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_TREND_PER_MIN_FIELD_NUMBER: _ClassVar[int]
    FACE_COLOUR_DELTA_E_FIELD_NUMBER: _ClassVar[int]
    FRAME_COLOUR_DELTA_E_FIELD_NUMBER: _ClassVar[int]
    FACE_COLOUR_TREND_PER_MIN_FIELD_NUMBER: _ClassVar[int]
    STEP_P99_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    MAX_SEAM_STEP_FIELD_NUMBER: _ClassVar[int]
    MAX_BOUNDARY_STEP_FIELD_NUMBER: _ClassVar[int]
    FACE_SHARE_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_SEC_FIELD_NUMBER: _ClassVar[int]
    state: str
    error: str
    frame_count: int
    fps: float
    video_duration_sec: float
    audio_duration_sec: float
    reference: str
    segments: _containers.RepeatedCompositeFieldContainer[QualitySegment]
    sync_lag_frames: int
    sync_correlation: float
    identity_distance: float
    identity_trend_per_min: float
    face_colour_delta_e: float
    frame_colour_delta_e: float
    face_colour_trend_per_min: float
    step_p99: float
    steps: _containers.RepeatedCompositeFieldContainer[FrameStep]
    max_seam_step: float
    max_boundary_step: float
    face_share: float
    compute_sec: float
    def __init__(self, state: _Optional[str] = ..., error: _Optional[str] = ..., frame_count: _Optional[int] = ..., fps: _Optional[float] = ..., video_duration_sec: _Optional[float] = ..., audio_duration_sec: _Optional[float] = ..., reference: _Optional[str] = ..., segments: _Optional[_Iterable[_Union[QualitySegment, _Mapping]]] = ..., sync_lag_frames: _Optional[int] = ..., sync_correlation: _Optional[float] = ..., identity_distance: _Optional[float] = ..., identity_trend_per_min: _Optional[float] = ..., face_colour_delta_e: _Optional[float] = ..., frame_colour_delta_e: _Optional[float] = ..., face_colour_trend_per_min: _Optional[float] = ..., step_p99: _Optional[float] = ..., steps: _Optional[_Iterable[_Union[FrameStep, _Mapping]]] = ..., max_seam_step: _Optional[float] = ..., max_boundary_step: _Optional[float] = ..., face_share: _Optional[float] = ..., compute_sec: _Optional[float] = ...) -> None: ...

class QualitySegment(_message.Message):
    __slots__ = ("start_sec", "end_sec", "sync_lag_frames", "sync_correlation", "sync_signal", "identity_distance", "face_colour_delta_e", "frame_colour_delta_e", "max_step", "face_share")
    START_SEC_FIELD_NUMBER: _ClassVar[int]
    END_SEC_FIELD_NUMBER: _ClassVar[int]
    SYNC_LAG_FRAMES_FIELD_NUMBER: _ClassVar[int]
    SYNC_CORRELATION_FIELD_NUMBER: _ClassVar[int]
    SYNC_SIGNAL_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_DISTANCE_FIELD_NUMBER: _ClassVar[int]
    FACE_COLOUR_DELTA_E_FIELD_NUMBER: _ClassVar[int]
    FRAME_COLOUR_DELTA_E_FIELD_NUMBER: _ClassVar[int]
    MAX_STEP_FIELD_NUMBER: _ClassVar[int]
    FACE_SHARE_FIELD_NUMBER: _ClassVar[int]
    start_sec: float
    end_sec: float
    sync_lag_frames: int
    sync_correlation: float
    sync_signal: str
    identity_distance: float
    face_colour_delta_e: float
    frame_colour_delta_e: float
    max_step: float
    face_share: float
    def __init__(self, start_sec: _Optional[float] = ..., end_sec: _Optional[float] = ..., sync_lag_frames: _Optional[int] = ..., sync_correlation: _Optional[float] = ..., sync_signal: _Optional[str] = ..., identity_distance: _Optional[float] = ..., face_colour_delta_e: _Optional[float] = ..., frame_colour_delta_e: _Optional[float] = ..., max_step: _Optional[float] = ..., face_share: _Optional[float] = ...) -> None: ...

class FrameStep(_message.Message):
    __slots__ = ("frame", "kind", "step", "ratio_to_p99")
    FRAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    RATIO_TO_P99_FIELD_NUMBER: _ClassVar[int]
    frame: int
    kind: str
    step: float
    ratio_to_p99: float
    def __init__(self, frame: _Optional[int] = ..., kind: _Optional[str] = ..., step: _Optional[float] = ..., ratio_to_p99: _Optional[float] = ...) -> None: ...
