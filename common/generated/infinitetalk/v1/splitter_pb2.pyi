from infinitetalk.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SplitOptions(_message.Message):
    __slots__ = ("chunk_target_sec", "tolerance_sec", "silence_threshold_db", "min_silence_sec", "min_chunk_sec", "target_lufs", "skip_normalization")
    CHUNK_TARGET_SEC_FIELD_NUMBER: _ClassVar[int]
    TOLERANCE_SEC_FIELD_NUMBER: _ClassVar[int]
    SILENCE_THRESHOLD_DB_FIELD_NUMBER: _ClassVar[int]
    MIN_SILENCE_SEC_FIELD_NUMBER: _ClassVar[int]
    MIN_CHUNK_SEC_FIELD_NUMBER: _ClassVar[int]
    TARGET_LUFS_FIELD_NUMBER: _ClassVar[int]
    SKIP_NORMALIZATION_FIELD_NUMBER: _ClassVar[int]
    chunk_target_sec: float
    tolerance_sec: float
    silence_threshold_db: float
    min_silence_sec: float
    min_chunk_sec: float
    target_lufs: float
    skip_normalization: bool
    def __init__(self, chunk_target_sec: _Optional[float] = ..., tolerance_sec: _Optional[float] = ..., silence_threshold_db: _Optional[float] = ..., min_silence_sec: _Optional[float] = ..., min_chunk_sec: _Optional[float] = ..., target_lufs: _Optional[float] = ..., skip_normalization: _Optional[bool] = ...) -> None: ...

class SplitRequest(_message.Message):
    __slots__ = ("options", "audio")
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    options: SplitOptions
    audio: _common_pb2.DataPiece
    def __init__(self, options: _Optional[_Union[SplitOptions, _Mapping]] = ..., audio: _Optional[_Union[_common_pb2.DataPiece, _Mapping]] = ...) -> None: ...

class ChunkSpan(_message.Message):
    __slots__ = ("index", "start_sample", "end_sample", "frame_count", "cut_in_silence")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    START_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    END_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    FRAME_COUNT_FIELD_NUMBER: _ClassVar[int]
    CUT_IN_SILENCE_FIELD_NUMBER: _ClassVar[int]
    index: int
    start_sample: int
    end_sample: int
    frame_count: int
    cut_in_silence: bool
    def __init__(self, index: _Optional[int] = ..., start_sample: _Optional[int] = ..., end_sample: _Optional[int] = ..., frame_count: _Optional[int] = ..., cut_in_silence: _Optional[bool] = ...) -> None: ...

class ChunkHeader(_message.Message):
    __slots__ = ("span", "wav_size")
    SPAN_FIELD_NUMBER: _ClassVar[int]
    WAV_SIZE_FIELD_NUMBER: _ClassVar[int]
    span: ChunkSpan
    wav_size: int
    def __init__(self, span: _Optional[_Union[ChunkSpan, _Mapping]] = ..., wav_size: _Optional[int] = ...) -> None: ...

class SplitPlan(_message.Message):
    __slots__ = ("sample_rate", "total_samples", "total_frames", "duration_sec", "input_lufs", "chunks")
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FRAMES_FIELD_NUMBER: _ClassVar[int]
    DURATION_SEC_FIELD_NUMBER: _ClassVar[int]
    INPUT_LUFS_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    sample_rate: int
    total_samples: int
    total_frames: int
    duration_sec: float
    input_lufs: float
    chunks: _containers.RepeatedCompositeFieldContainer[ChunkSpan]
    def __init__(self, sample_rate: _Optional[int] = ..., total_samples: _Optional[int] = ..., total_frames: _Optional[int] = ..., duration_sec: _Optional[float] = ..., input_lufs: _Optional[float] = ..., chunks: _Optional[_Iterable[_Union[ChunkSpan, _Mapping]]] = ...) -> None: ...

class SplitResponse(_message.Message):
    __slots__ = ("chunk", "chunk_wav", "plan")
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    CHUNK_WAV_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    chunk: ChunkHeader
    chunk_wav: _common_pb2.DataPiece
    plan: SplitPlan
    def __init__(self, chunk: _Optional[_Union[ChunkHeader, _Mapping]] = ..., chunk_wav: _Optional[_Union[_common_pb2.DataPiece, _Mapping]] = ..., plan: _Optional[_Union[SplitPlan, _Mapping]] = ...) -> None: ...
