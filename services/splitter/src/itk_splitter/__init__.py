"""Splitter service: decodes a speech recording, normalises its loudness once, and cuts it at pauses
into chunks whose boundaries fall on 25 fps video frames (multiples of 640 samples at 16 kHz)."""

from .errors import AudioDecodeError, AudioInputError, EmptyAudioError
from .options import OptionsError, SplitOptions
from .plan import ChunkSpan, plan_chunks
from .split import EncodedChunk, SplitResult, split_audio

__all__ = [
    "AudioDecodeError",
    "AudioInputError",
    "ChunkSpan",
    "EmptyAudioError",
    "EncodedChunk",
    "OptionsError",
    "SplitOptions",
    "SplitResult",
    "plan_chunks",
    "split_audio",
]
