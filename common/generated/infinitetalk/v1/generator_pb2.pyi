from infinitetalk.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ChunkSpec(_message.Message):
    __slots__ = ("job_id", "chunk_index", "width", "height", "prompt", "seed", "sampling", "frame_count", "force_offload", "lane", "lane_first_frame", "audio_context_before", "audio_context_after", "has_motion", "persons")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    CHUNK_INDEX_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    FRAME_COUNT_FIELD_NUMBER: _ClassVar[int]
    FORCE_OFFLOAD_FIELD_NUMBER: _ClassVar[int]
    LANE_FIELD_NUMBER: _ClassVar[int]
    LANE_FIRST_FRAME_FIELD_NUMBER: _ClassVar[int]
    AUDIO_CONTEXT_BEFORE_FIELD_NUMBER: _ClassVar[int]
    AUDIO_CONTEXT_AFTER_FIELD_NUMBER: _ClassVar[int]
    HAS_MOTION_FIELD_NUMBER: _ClassVar[int]
    PERSONS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    chunk_index: int
    width: int
    height: int
    prompt: str
    seed: int
    sampling: _common_pb2.SamplingOptions
    frame_count: int
    force_offload: bool
    lane: int
    lane_first_frame: int
    audio_context_before: int
    audio_context_after: int
    has_motion: bool
    persons: _containers.RepeatedCompositeFieldContainer[Person]
    def __init__(self, job_id: _Optional[str] = ..., chunk_index: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., prompt: _Optional[str] = ..., seed: _Optional[int] = ..., sampling: _Optional[_Union[_common_pb2.SamplingOptions, _Mapping]] = ..., frame_count: _Optional[int] = ..., force_offload: _Optional[bool] = ..., lane: _Optional[int] = ..., lane_first_frame: _Optional[int] = ..., audio_context_before: _Optional[int] = ..., audio_context_after: _Optional[int] = ..., has_motion: _Optional[bool] = ..., persons: _Optional[_Iterable[_Union[Person, _Mapping]]] = ...) -> None: ...

class Person(_message.Message):
    __slots__ = ("x0", "y0", "x1", "y1")
    X0_FIELD_NUMBER: _ClassVar[int]
    Y0_FIELD_NUMBER: _ClassVar[int]
    X1_FIELD_NUMBER: _ClassVar[int]
    Y1_FIELD_NUMBER: _ClassVar[int]
    x0: float
    y0: float
    x1: float
    y1: float
    def __init__(self, x0: _Optional[float] = ..., y0: _Optional[float] = ..., x1: _Optional[float] = ..., y1: _Optional[float] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("spec", "image", "audio", "source_video", "motion")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    SOURCE_VIDEO_FIELD_NUMBER: _ClassVar[int]
    MOTION_FIELD_NUMBER: _ClassVar[int]
    spec: ChunkSpec
    image: _common_pb2.DataPiece
    audio: _common_pb2.DataPiece
    source_video: _common_pb2.DataPiece
    motion: _common_pb2.DataPiece
    def __init__(self, spec: _Optional[_Union[ChunkSpec, _Mapping]] = ..., image: _Optional[_Union[_common_pb2.DataPiece, _Mapping]] = ..., audio: _Optional[_Union[_common_pb2.DataPiece, _Mapping]] = ..., source_video: _Optional[_Union[_common_pb2.DataPiece, _Mapping]] = ..., motion: _Optional[_Union[_common_pb2.DataPiece, _Mapping]] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("step", "total_steps", "frames_done", "stage")
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    FRAMES_DONE_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    step: int
    total_steps: int
    frames_done: int
    stage: str
    def __init__(self, step: _Optional[int] = ..., total_steps: _Optional[int] = ..., frames_done: _Optional[int] = ..., stage: _Optional[str] = ...) -> None: ...

class GenerateSummary(_message.Message):
    __slots__ = ("frame_count", "duration_sec", "backend", "seconds_spent", "width", "height", "video_size", "motion_frames", "motion_size")
    FRAME_COUNT_FIELD_NUMBER: _ClassVar[int]
    DURATION_SEC_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    SECONDS_SPENT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    VIDEO_SIZE_FIELD_NUMBER: _ClassVar[int]
    MOTION_FRAMES_FIELD_NUMBER: _ClassVar[int]
    MOTION_SIZE_FIELD_NUMBER: _ClassVar[int]
    frame_count: int
    duration_sec: float
    backend: str
    seconds_spent: float
    width: int
    height: int
    video_size: int
    motion_frames: int
    motion_size: int
    def __init__(self, frame_count: _Optional[int] = ..., duration_sec: _Optional[float] = ..., backend: _Optional[str] = ..., seconds_spent: _Optional[float] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., video_size: _Optional[int] = ..., motion_frames: _Optional[int] = ..., motion_size: _Optional[int] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("progress", "video", "summary", "motion")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    MOTION_FIELD_NUMBER: _ClassVar[int]
    progress: Progress
    video: _common_pb2.DataPiece
    summary: GenerateSummary
    motion: _common_pb2.DataPiece
    def __init__(self, progress: _Optional[_Union[Progress, _Mapping]] = ..., video: _Optional[_Union[_common_pb2.DataPiece, _Mapping]] = ..., summary: _Optional[_Union[GenerateSummary, _Mapping]] = ..., motion: _Optional[_Union[_common_pb2.DataPiece, _Mapping]] = ...) -> None: ...

class GetInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GeneratorInfo(_message.Message):
    __slots__ = ("backend", "capacity", "active", "ready", "draining", "device", "devices", "ignores_motion", "person_counts")
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    IGNORES_MOTION_FIELD_NUMBER: _ClassVar[int]
    PERSON_COUNTS_FIELD_NUMBER: _ClassVar[int]
    backend: str
    capacity: int
    active: int
    ready: bool
    draining: bool
    device: str
    devices: int
    ignores_motion: bool
    person_counts: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, backend: _Optional[str] = ..., capacity: _Optional[int] = ..., active: _Optional[int] = ..., ready: _Optional[bool] = ..., draining: _Optional[bool] = ..., device: _Optional[str] = ..., devices: _Optional[int] = ..., ignores_motion: _Optional[bool] = ..., person_counts: _Optional[_Iterable[int]] = ...) -> None: ...
