"""Cutting blobs into <= 1 MiB pieces and putting them back together."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from infinitetalk.v1 import common_pb2

from .constants import MAX_PIECE_BYTES


def iter_byte_pieces(data: bytes, size: int = MAX_PIECE_BYTES) -> Iterator[tuple[bytes, bool]]:
    """Yield (piece, is_last) over `data`; an empty blob is one empty last piece."""
    if not data:
        yield b"", True
        return
    for offset in range(0, len(data), size):
        yield data[offset : offset + size], offset + size >= len(data)


def iter_file_pieces(source: Path | BinaryIO, size: int = MAX_PIECE_BYTES) -> Iterator[tuple[bytes, bool]]:
    """Like iter_byte_pieces, but reads a file lazily so large videos never sit in memory whole."""
    handle: BinaryIO
    close = False
    if isinstance(source, Path):
        handle = source.open("rb")
        close = True
    else:
        handle = source
    try:
        current = handle.read(size)
        while True:
            following = handle.read(size)
            yield current, not following
            if not following:
                return
            current = following
    finally:
        if close:
            handle.close()


def data_pieces(data: bytes, size: int = MAX_PIECE_BYTES) -> Iterator[common_pb2.DataPiece]:
    for piece, last in iter_byte_pieces(data, size):
        yield common_pb2.DataPiece(data=piece, last=last)


def file_data_pieces(source: Path | BinaryIO, size: int = MAX_PIECE_BYTES) -> Iterator[common_pb2.DataPiece]:
    for piece, last in iter_file_pieces(source, size):
        yield common_pb2.DataPiece(data=piece, last=last)


def join_pieces(pieces: Iterable[common_pb2.DataPiece]) -> bytes:
    return b"".join(piece.data for piece in pieces)
