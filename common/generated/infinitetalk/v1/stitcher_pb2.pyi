from infinitetalk.v1 import common_pb2 as _common_pb2
from infinitetalk.v1 import quality_pb2 as _quality_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StitchHeader(_message.Message):
    __slots__ = ("job_id", "chunk_count", "fps", "width", "height", "frame_counts", "seams")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    FRAME_COUNTS_FIELD_NUMBER: _ClassVar[int]
    SEAMS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    chunk_count: int
    fps: int
    width: int
    height: int
    frame_counts: _containers.RepeatedScalarFieldContainer[int]
    seams: _containers.RepeatedCompositeFieldContainer[SeamFade]
    def __init__(self, job_id: _Optional[str] = ..., chunk_count: _Optional[int] = ..., fps: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., frame_counts: _Optional[_Iterable[int]] = ..., seams: _Optional[_Iterable[_Union[SeamFade, _Mapping]]] = ...) -> None: ...

class SeamFade(_message.Message):
    __slots__ = ("chunk_index", "fade_frames")
    CHUNK_INDEX_FIELD_NUMBER: _ClassVar[int]
    FADE_FRAMES_FIELD_NUMBER: _ClassVar[int]
    chunk_index: int
    fade_frames: int
    def __init__(self, chunk_index: _Optional[int] = ..., fade_frames: _Optional[int] = ...) -> None: ...

class PartData(_message.Message):
    __slots__ = ("index", "data", "last")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    index: int
    data: bytes
    last: bool
    def __init__(self, index: _Optional[int] = ..., data: _Optional[bytes] = ..., last: _Optional[bool] = ...) -> None: ...

class StitchRequest(_message.Message):
    __slots__ = ("header", "audio", "part")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    PART_FIELD_NUMBER: _ClassVar[int]
    header: StitchHeader
    audio: _common_pb2.DataPiece
    part: PartData
    def __init__(self, header: _Optional[_Union[StitchHeader, _Mapping]] = ..., audio: _Optional[_Union[_common_pb2.DataPiece, _Mapping]] = ..., part: _Optional[_Union[PartData, _Mapping]] = ...) -> None: ...

class StitchSummary(_message.Message):
    __slots__ = ("frame_count", "video_duration_sec", "audio_duration_sec", "copied_parts", "reencoded_parts", "video_size", "softened_seams")
    FRAME_COUNT_FIELD_NUMBER: _ClassVar[int]
    VIDEO_DURATION_SEC_FIELD_NUMBER: _ClassVar[int]
    AUDIO_DURATION_SEC_FIELD_NUMBER: _ClassVar[int]
    COPIED_PARTS_FIELD_NUMBER: _ClassVar[int]
    REENCODED_PARTS_FIELD_NUMBER: _ClassVar[int]
    VIDEO_SIZE_FIELD_NUMBER: _ClassVar[int]
    SOFTENED_SEAMS_FIELD_NUMBER: _ClassVar[int]
    frame_count: int
    video_duration_sec: float
    audio_duration_sec: float
    copied_parts: int
    reencoded_parts: int
    video_size: int
    softened_seams: int
    def __init__(self, frame_count: _Optional[int] = ..., video_duration_sec: _Optional[float] = ..., audio_duration_sec: _Optional[float] = ..., copied_parts: _Optional[int] = ..., reencoded_parts: _Optional[int] = ..., video_size: _Optional[int] = ..., softened_seams: _Optional[int] = ...) -> None: ...

class StitchResponse(_message.Message):
    __slots__ = ("video", "summary")
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    video: _common_pb2.DataPiece
    summary: StitchSummary
    def __init__(self, video: _Optional[_Union[_common_pb2.DataPiece, _Mapping]] = ..., summary: _Optional[_Union[StitchSummary, _Mapping]] = ...) -> None: ...

class AssessHeader(_message.Message):
    __slots__ = ("job_id", "boundary_frames", "seam_frames", "fade_frames")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    BOUNDARY_FRAMES_FIELD_NUMBER: _ClassVar[int]
    SEAM_FRAMES_FIELD_NUMBER: _ClassVar[int]
    FADE_FRAMES_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    boundary_frames: _containers.RepeatedScalarFieldContainer[int]
    seam_frames: _containers.RepeatedScalarFieldContainer[int]
    fade_frames: int
    def __init__(self, job_id: _Optional[str] = ..., boundary_frames: _Optional[_Iterable[int]] = ..., seam_frames: _Optional[_Iterable[int]] = ..., fade_frames: _Optional[int] = ...) -> None: ...

class AssessRequest(_message.Message):
    __slots__ = ("header", "video", "reference")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    header: AssessHeader
    video: _common_pb2.DataPiece
    reference: _common_pb2.DataPiece
    def __init__(self, header: _Optional[_Union[AssessHeader, _Mapping]] = ..., video: _Optional[_Union[_common_pb2.DataPiece, _Mapping]] = ..., reference: _Optional[_Union[_common_pb2.DataPiece, _Mapping]] = ...) -> None: ...
