from infinitetalk.v1 import common_pb2 as _common_pb2
from infinitetalk.v1 import quality_pb2 as _quality_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATUS_UNSPECIFIED: _ClassVar[JobStatus]
    IN_QUEUE: _ClassVar[JobStatus]
    RUNNING: _ClassVar[JobStatus]
    COMPLETED: _ClassVar[JobStatus]
    FAILED: _ClassVar[JobStatus]
    CANCELLED: _ClassVar[JobStatus]
    TIMED_OUT: _ClassVar[JobStatus]
JOB_STATUS_UNSPECIFIED: JobStatus
IN_QUEUE: JobStatus
RUNNING: JobStatus
COMPLETED: JobStatus
FAILED: JobStatus
CANCELLED: JobStatus
TIMED_OUT: JobStatus

class JobOptions(_message.Message):
    __slots__ = ("width", "height", "prompt", "provider", "push_to_s3", "dry_run", "force_offload", "seed", "sampling", "chunk_target_sec", "webhook_url", "image_url", "audio_url", "video_extend", "lanes", "speakers", "audio_type", "stereo_speakers", "audio_2_url")
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    PUSH_TO_S3_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    FORCE_OFFLOAD_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    CHUNK_TARGET_SEC_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_URL_FIELD_NUMBER: _ClassVar[int]
    IMAGE_URL_FIELD_NUMBER: _ClassVar[int]
    AUDIO_URL_FIELD_NUMBER: _ClassVar[int]
    VIDEO_EXTEND_FIELD_NUMBER: _ClassVar[int]
    LANES_FIELD_NUMBER: _ClassVar[int]
    SPEAKERS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_TYPE_FIELD_NUMBER: _ClassVar[int]
    STEREO_SPEAKERS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_2_URL_FIELD_NUMBER: _ClassVar[int]
    width: int
    height: int
    prompt: str
    provider: str
    push_to_s3: bool
    dry_run: bool
    force_offload: bool
    seed: int
    sampling: _common_pb2.SamplingOptions
    chunk_target_sec: float
    webhook_url: str
    image_url: str
    audio_url: str
    video_extend: str
    lanes: int
    speakers: _containers.RepeatedCompositeFieldContainer[JobSpeaker]
    audio_type: str
    stereo_speakers: bool
    audio_2_url: str
    def __init__(self, width: _Optional[int] = ..., height: _Optional[int] = ..., prompt: _Optional[str] = ..., provider: _Optional[str] = ..., push_to_s3: _Optional[bool] = ..., dry_run: _Optional[bool] = ..., force_offload: _Optional[bool] = ..., seed: _Optional[int] = ..., sampling: _Optional[_Union[_common_pb2.SamplingOptions, _Mapping]] = ..., chunk_target_sec: _Optional[float] = ..., webhook_url: _Optional[str] = ..., image_url: _Optional[str] = ..., audio_url: _Optional[str] = ..., video_extend: _Optional[str] = ..., lanes: _Optional[int] = ..., speakers: _Optional[_Iterable[_Union[JobSpeaker, _Mapping]]] = ..., audio_type: _Optional[str] = ..., stereo_speakers: _Optional[bool] = ..., audio_2_url: _Optional[str] = ...) -> None: ...

class JobSpeaker(_message.Message):
    __slots__ = ("audio_url", "box", "person")
    AUDIO_URL_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    PERSON_FIELD_NUMBER: _ClassVar[int]
    audio_url: str
    box: SpeakerBox
    person: int
    def __init__(self, audio_url: _Optional[str] = ..., box: _Optional[_Union[SpeakerBox, _Mapping]] = ..., person: _Optional[int] = ...) -> None: ...

class SpeakerBox(_message.Message):
    __slots__ = ("x0", "y0", "x1", "y1")
    X0_FIELD_NUMBER: _ClassVar[int]
    Y0_FIELD_NUMBER: _ClassVar[int]
    X1_FIELD_NUMBER: _ClassVar[int]
    Y1_FIELD_NUMBER: _ClassVar[int]
    x0: int
    y0: int
    x1: int
    y1: int
    def __init__(self, x0: _Optional[int] = ..., y0: _Optional[int] = ..., x1: _Optional[int] = ..., y1: _Optional[int] = ...) -> None: ...

class CreateJobRequest(_message.Message):
    __slots__ = ("options", "image", "audio", "audio_2")
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    AUDIO_2_FIELD_NUMBER: _ClassVar[int]
    options: JobOptions
    image: _common_pb2.DataPiece
    audio: _common_pb2.DataPiece
    audio_2: _common_pb2.DataPiece
    def __init__(self, options: _Optional[_Union[JobOptions, _Mapping]] = ..., image: _Optional[_Union[_common_pb2.DataPiece, _Mapping]] = ..., audio: _Optional[_Union[_common_pb2.DataPiece, _Mapping]] = ..., audio_2: _Optional[_Union[_common_pb2.DataPiece, _Mapping]] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("id", "provider", "status", "progress", "error", "video_url", "chunk_count", "chunks_done", "frames_total", "frames_done", "duration_sec", "seed", "width", "height", "created_at", "updated_at", "video_available", "lanes", "seams", "lane_count", "quality", "speakers", "boxes_from", "audio_type")
    ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    VIDEO_URL_FIELD_NUMBER: _ClassVar[int]
    CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_DONE_FIELD_NUMBER: _ClassVar[int]
    FRAMES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    FRAMES_DONE_FIELD_NUMBER: _ClassVar[int]
    DURATION_SEC_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    VIDEO_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    LANES_FIELD_NUMBER: _ClassVar[int]
    SEAMS_FIELD_NUMBER: _ClassVar[int]
    LANE_COUNT_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    SPEAKERS_FIELD_NUMBER: _ClassVar[int]
    BOXES_FROM_FIELD_NUMBER: _ClassVar[int]
    AUDIO_TYPE_FIELD_NUMBER: _ClassVar[int]
    id: str
    provider: str
    status: JobStatus
    progress: int
    error: str
    video_url: str
    chunk_count: int
    chunks_done: int
    frames_total: int
    frames_done: int
    duration_sec: float
    seed: int
    width: int
    height: int
    created_at: str
    updated_at: str
    video_available: bool
    lanes: _containers.RepeatedCompositeFieldContainer[JobLane]
    seams: _containers.RepeatedCompositeFieldContainer[JobSeam]
    lane_count: int
    quality: _quality_pb2.QualityReport
    speakers: _containers.RepeatedCompositeFieldContainer[JobSpeaker]
    boxes_from: str
    audio_type: str
    def __init__(self, id: _Optional[str] = ..., provider: _Optional[str] = ..., status: _Optional[_Union[JobStatus, str]] = ..., progress: _Optional[int] = ..., error: _Optional[str] = ..., video_url: _Optional[str] = ..., chunk_count: _Optional[int] = ..., chunks_done: _Optional[int] = ..., frames_total: _Optional[int] = ..., frames_done: _Optional[int] = ..., duration_sec: _Optional[float] = ..., seed: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., created_at: _Optional[str] = ..., updated_at: _Optional[str] = ..., video_available: _Optional[bool] = ..., lanes: _Optional[_Iterable[_Union[JobLane, _Mapping]]] = ..., seams: _Optional[_Iterable[_Union[JobSeam, _Mapping]]] = ..., lane_count: _Optional[int] = ..., quality: _Optional[_Union[_quality_pb2.QualityReport, _Mapping]] = ..., speakers: _Optional[_Iterable[_Union[JobSpeaker, _Mapping]]] = ..., boxes_from: _Optional[str] = ..., audio_type: _Optional[str] = ...) -> None: ...

class JobLane(_message.Message):
    __slots__ = ("index", "start_sec", "end_sec", "chunk_count", "chunks_done")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    START_SEC_FIELD_NUMBER: _ClassVar[int]
    END_SEC_FIELD_NUMBER: _ClassVar[int]
    CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_DONE_FIELD_NUMBER: _ClassVar[int]
    index: int
    start_sec: float
    end_sec: float
    chunk_count: int
    chunks_done: int
    def __init__(self, index: _Optional[int] = ..., start_sec: _Optional[float] = ..., end_sec: _Optional[float] = ..., chunk_count: _Optional[int] = ..., chunks_done: _Optional[int] = ...) -> None: ...

class JobSeam(_message.Message):
    __slots__ = ("time_sec", "chunk_index", "pause_start_sec", "pause_end_sec", "fade_frames", "in_voiced_speech")
    TIME_SEC_FIELD_NUMBER: _ClassVar[int]
    CHUNK_INDEX_FIELD_NUMBER: _ClassVar[int]
    PAUSE_START_SEC_FIELD_NUMBER: _ClassVar[int]
    PAUSE_END_SEC_FIELD_NUMBER: _ClassVar[int]
    FADE_FRAMES_FIELD_NUMBER: _ClassVar[int]
    IN_VOICED_SPEECH_FIELD_NUMBER: _ClassVar[int]
    time_sec: float
    chunk_index: int
    pause_start_sec: float
    pause_end_sec: float
    fade_frames: int
    in_voiced_speech: bool
    def __init__(self, time_sec: _Optional[float] = ..., chunk_index: _Optional[int] = ..., pause_start_sec: _Optional[float] = ..., pause_end_sec: _Optional[float] = ..., fade_frames: _Optional[int] = ..., in_voiced_speech: _Optional[bool] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DownloadVideoRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteVideoRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteVideoResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StreamSegmentsRequest(_message.Message):
    __slots__ = ("id", "from_index")
    ID_FIELD_NUMBER: _ClassVar[int]
    FROM_INDEX_FIELD_NUMBER: _ClassVar[int]
    id: str
    from_index: int
    def __init__(self, id: _Optional[str] = ..., from_index: _Optional[int] = ...) -> None: ...

class SegmentPiece(_message.Message):
    __slots__ = ("kind", "index", "start_sec", "duration_sec", "data")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[SegmentPiece.Kind]
        INIT: _ClassVar[SegmentPiece.Kind]
        MEDIA: _ClassVar[SegmentPiece.Kind]
    KIND_UNSPECIFIED: SegmentPiece.Kind
    INIT: SegmentPiece.Kind
    MEDIA: SegmentPiece.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    START_SEC_FIELD_NUMBER: _ClassVar[int]
    DURATION_SEC_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    kind: SegmentPiece.Kind
    index: int
    start_sec: float
    duration_sec: float
    data: _common_pb2.DataPiece
    def __init__(self, kind: _Optional[_Union[SegmentPiece.Kind, str]] = ..., index: _Optional[int] = ..., start_sec: _Optional[float] = ..., duration_sec: _Optional[float] = ..., data: _Optional[_Union[_common_pb2.DataPiece, _Mapping]] = ...) -> None: ...
