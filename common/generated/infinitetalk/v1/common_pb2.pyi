from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class SamplingOptions(_message.Message):
    __slots__ = ("preset", "steps", "shift", "text_guidance", "audio_guidance", "motion_frames", "teacache", "color_correction", "resolution")
    PRESET_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    SHIFT_FIELD_NUMBER: _ClassVar[int]
    TEXT_GUIDANCE_FIELD_NUMBER: _ClassVar[int]
    AUDIO_GUIDANCE_FIELD_NUMBER: _ClassVar[int]
    MOTION_FRAMES_FIELD_NUMBER: _ClassVar[int]
    TEACACHE_FIELD_NUMBER: _ClassVar[int]
    COLOR_CORRECTION_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    preset: str
    steps: int
    shift: float
    text_guidance: float
    audio_guidance: float
    motion_frames: int
    teacache: bool
    color_correction: bool
    resolution: str
    def __init__(self, preset: _Optional[str] = ..., steps: _Optional[int] = ..., shift: _Optional[float] = ..., text_guidance: _Optional[float] = ..., audio_guidance: _Optional[float] = ..., motion_frames: _Optional[int] = ..., teacache: _Optional[bool] = ..., color_correction: _Optional[bool] = ..., resolution: _Optional[str] = ...) -> None: ...

class DataPiece(_message.Message):
    __slots__ = ("data", "last")
    DATA_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    last: bool
    def __init__(self, data: _Optional[bytes] = ..., last: _Optional[bool] = ...) -> None: ...
