from infinitetalk.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SplitOptions(_message.Message):
    __slots__ = ("chunk_target_sec", "tolerance_sec", "silence_threshold_db", "min_silence_sec", "min_chunk_sec", "target_lufs", "skip_normalization", "lane_count", "min_lane_sec", "clip_frames", "motion_frames", "audio_context_sec", "seam_fade_sec", "track_count", "channels_as_tracks", "audio_type")
    CHUNK_TARGET_SEC_FIELD_NUMBER: _ClassVar[int]
    TOLERANCE_SEC_FIELD_NUMBER: _ClassVar[int]
    SILENCE_THRESHOLD_DB_FIELD_NUMBER: _ClassVar[int]
    MIN_SILENCE_SEC_FIELD_NUMBER: _ClassVar[int]
    MIN_CHUNK_SEC_FIELD_NUMBER: _ClassVar[int]
    TARGET_LUFS_FIELD_NUMBER: _ClassVar[int]
    SKIP_NORMALIZATION_FIELD_NUMBER: _ClassVar[int]
    LANE_COUNT_FIELD_NUMBER: _ClassVar[int]
    MIN_LANE_SEC_FIELD_NUMBER: _ClassVar[int]
    CLIP_FRAMES_FIELD_NUMBER: _ClassVar[int]
    MOTION_FRAMES_FIELD_NUMBER: _ClassVar[int]
    AUDIO_CONTEXT_SEC_FIELD_NUMBER: _ClassVar[int]
    SEAM_FADE_SEC_FIELD_NUMBER: _ClassVar[int]
    TRACK_COUNT_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_AS_TRACKS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_TYPE_FIELD_NUMBER: _ClassVar[int]
    chunk_target_sec: float
    tolerance_sec: float
    silence_threshold_db: float
    min_silence_sec: float
    min_chunk_sec: float
    target_lufs: float
    skip_normalization: bool
    lane_count: int
    min_lane_sec: float
    clip_frames: int
    motion_frames: int
    audio_context_sec: float
    seam_fade_sec: float
    track_count: int
    channels_as_tracks: bool
    audio_type: str
    def __init__(self, chunk_target_sec: _Optional[float] = ..., tolerance_sec: _Optional[float] = ..., silence_threshold_db: _Optional[float] = ..., min_silence_sec: _Optional[float] = ..., min_chunk_sec: _Optional[float] = ..., target_lufs: _Optional[float] = ..., skip_normalization: _Optional[bool] = ..., lane_count: _Optional[int] = ..., min_lane_sec: _Optional[float] = ..., clip_frames: _Optional[int] = ..., motion_frames: _Optional[int] = ..., audio_context_sec: _Optional[float] = ..., seam_fade_sec: _Optional[float] = ..., track_count: _Optional[int] = ..., channels_as_tracks: _Optional[bool] = ..., audio_type: _Optional[str] = ...) -> None: ...

class SplitRequest(_message.Message):
    __slots__ = ("options", "audio")
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    options: SplitOptions
    audio: _common_pb2.DataPiece
    def __init__(self, options: _Optional[_Union[SplitOptions, _Mapping]] = ..., audio: _Optional[_Union[_common_pb2.DataPiece, _Mapping]] = ...) -> None: ...

class ChunkSpan(_message.Message):
    __slots__ = ("index", "start_sample", "end_sample", "frame_count", "cut_in_silence", "lane", "lane_first_frame", "wav_start_sample", "wav_end_sample")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    START_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    END_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    FRAME_COUNT_FIELD_NUMBER: _ClassVar[int]
    CUT_IN_SILENCE_FIELD_NUMBER: _ClassVar[int]
    LANE_FIELD_NUMBER: _ClassVar[int]
    LANE_FIRST_FRAME_FIELD_NUMBER: _ClassVar[int]
    WAV_START_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    WAV_END_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    index: int
    start_sample: int
    end_sample: int
    frame_count: int
    cut_in_silence: bool
    lane: int
    lane_first_frame: int
    wav_start_sample: int
    wav_end_sample: int
    def __init__(self, index: _Optional[int] = ..., start_sample: _Optional[int] = ..., end_sample: _Optional[int] = ..., frame_count: _Optional[int] = ..., cut_in_silence: _Optional[bool] = ..., lane: _Optional[int] = ..., lane_first_frame: _Optional[int] = ..., wav_start_sample: _Optional[int] = ..., wav_end_sample: _Optional[int] = ...) -> None: ...

class Lane(_message.Message):
    __slots__ = ("index", "start_sample", "end_sample", "first_chunk", "chunk_count", "frame_count")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    START_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    END_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    FIRST_CHUNK_FIELD_NUMBER: _ClassVar[int]
    CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    FRAME_COUNT_FIELD_NUMBER: _ClassVar[int]
    index: int
    start_sample: int
    end_sample: int
    first_chunk: int
    chunk_count: int
    frame_count: int
    def __init__(self, index: _Optional[int] = ..., start_sample: _Optional[int] = ..., end_sample: _Optional[int] = ..., first_chunk: _Optional[int] = ..., chunk_count: _Optional[int] = ..., frame_count: _Optional[int] = ...) -> None: ...

class Seam(_message.Message):
    __slots__ = ("chunk_index", "sample", "time_sec", "pause_start_sec", "pause_end_sec", "fade_frames", "in_voiced_speech")
    CHUNK_INDEX_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    TIME_SEC_FIELD_NUMBER: _ClassVar[int]
    PAUSE_START_SEC_FIELD_NUMBER: _ClassVar[int]
    PAUSE_END_SEC_FIELD_NUMBER: _ClassVar[int]
    FADE_FRAMES_FIELD_NUMBER: _ClassVar[int]
    IN_VOICED_SPEECH_FIELD_NUMBER: _ClassVar[int]
    chunk_index: int
    sample: int
    time_sec: float
    pause_start_sec: float
    pause_end_sec: float
    fade_frames: int
    in_voiced_speech: bool
    def __init__(self, chunk_index: _Optional[int] = ..., sample: _Optional[int] = ..., time_sec: _Optional[float] = ..., pause_start_sec: _Optional[float] = ..., pause_end_sec: _Optional[float] = ..., fade_frames: _Optional[int] = ..., in_voiced_speech: _Optional[bool] = ...) -> None: ...

class ChunkHeader(_message.Message):
    __slots__ = ("span", "wav_size")
    SPAN_FIELD_NUMBER: _ClassVar[int]
    WAV_SIZE_FIELD_NUMBER: _ClassVar[int]
    span: ChunkSpan
    wav_size: int
    def __init__(self, span: _Optional[_Union[ChunkSpan, _Mapping]] = ..., wav_size: _Optional[int] = ...) -> None: ...

class SplitPlan(_message.Message):
    __slots__ = ("sample_rate", "total_samples", "total_frames", "duration_sec", "input_lufs", "chunks", "lanes", "seams", "track_lufs")
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FRAMES_FIELD_NUMBER: _ClassVar[int]
    DURATION_SEC_FIELD_NUMBER: _ClassVar[int]
    INPUT_LUFS_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    LANES_FIELD_NUMBER: _ClassVar[int]
    SEAMS_FIELD_NUMBER: _ClassVar[int]
    TRACK_LUFS_FIELD_NUMBER: _ClassVar[int]
    sample_rate: int
    total_samples: int
    total_frames: int
    duration_sec: float
    input_lufs: float
    chunks: _containers.RepeatedCompositeFieldContainer[ChunkSpan]
    lanes: _containers.RepeatedCompositeFieldContainer[Lane]
    seams: _containers.RepeatedCompositeFieldContainer[Seam]
    track_lufs: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, sample_rate: _Optional[int] = ..., total_samples: _Optional[int] = ..., total_frames: _Optional[int] = ..., duration_sec: _Optional[float] = ..., input_lufs: _Optional[float] = ..., chunks: _Optional[_Iterable[_Union[ChunkSpan, _Mapping]]] = ..., lanes: _Optional[_Iterable[_Union[Lane, _Mapping]]] = ..., seams: _Optional[_Iterable[_Union[Seam, _Mapping]]] = ..., track_lufs: _Optional[_Iterable[float]] = ...) -> None: ...

class SplitResponse(_message.Message):
    __slots__ = ("chunk", "chunk_wav", "plan", "mix")
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    CHUNK_WAV_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    MIX_FIELD_NUMBER: _ClassVar[int]
    chunk: ChunkHeader
    chunk_wav: _common_pb2.DataPiece
    plan: SplitPlan
    mix: _common_pb2.DataPiece
    def __init__(self, chunk: _Optional[_Union[ChunkHeader, _Mapping]] = ..., chunk_wav: _Optional[_Union[_common_pb2.DataPiece, _Mapping]] = ..., plan: _Optional[_Union[SplitPlan, _Mapping]] = ..., mix: _Optional[_Union[_common_pb2.DataPiece, _Mapping]] = ...) -> None: ...
