"""A real Generator server on 127.0.0.1 with the preview backend, and chunks to send it."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest

from infinitetalk.v1 import common_pb2, generator_pb2, generator_pb2_grpc
from itk_common.constants import frames_for_samples
from itk_common.grpc_server import insecure_channel
from itk_common.streaming import data_pieces
from itk_common.wav import encode_wav
from itk_generator.preview import PreviewBackend
from itk_generator.server import GeneratorServer, start_server
from tests.helpers.audio import speech_like

SAMPLE_PORTRAIT = Path(__file__).resolve().parents[2] / "assets" / "sample" / "portrait.png"


def face_like_portrait(width: int = 320, height: int = 400) -> bytes:
    """A drawn head-and-shoulders picture (PNG): enough of a face for the preview to work with."""
    image = np.full((height, width, 3), (70, 90, 120), dtype=np.uint8)
    centre = (width // 2, height * 2 // 5)
    cv2.ellipse(image, (width // 2, height), (width // 2, height // 4), 0, 180, 360, (40, 40, 90), -1)
    cv2.ellipse(image, centre, (width // 4, height // 4), 0, 0, 360, (205, 170, 140), -1)
    for side in (-1, 1):
        eye = (centre[0] + side * width // 10, centre[1] - height // 20)
        cv2.ellipse(image, eye, (width // 30, height // 60), 0, 0, 360, (40, 30, 30), -1)
    cv2.ellipse(image, (centre[0], centre[1] + height // 8), (width // 12, height // 80), 0, 0, 360,
                (170, 80, 80), -1)
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert ok
    return encoded.tobytes()


@dataclass
class Chunk:
    """What a client sends for one chunk."""

    image: bytes
    samples: np.ndarray
    width: int = 256
    height: int = 256
    frame_count: int | None = None
    job_id: str = "job-1"
    chunk_index: int = 0
    sampling: common_pb2.SamplingOptions | None = None
    source_video: bytes | None = None  # dubbing: the chunk's span of source video, sent first
    # Lanes: the piece's place in its lane, and the previous piece's motion frames (.npy bytes).
    lane: int = 0
    lane_first_frame: int = 0
    motion: bytes | None = None
    seed: int = 0
    # Multi-person: `samples` is then [persons, samples], one WAV channel per person.
    persons: list[generator_pb2.Person] = field(default_factory=list)

    def spec(self) -> generator_pb2.ChunkSpec:
        frames = self.frame_count if self.frame_count is not None else frames_for_samples(self.samples.shape[-1])
        return generator_pb2.ChunkSpec(job_id=self.job_id, chunk_index=self.chunk_index, width=self.width,
                                       height=self.height, frame_count=frames, sampling=self.sampling,
                                       lane=self.lane, lane_first_frame=self.lane_first_frame,
                                       has_motion=self.motion is not None, seed=self.seed, persons=self.persons)

    def requests(self, audio_first: bool = False, piece_size: int = 64 * 1024
                 ) -> Iterator[generator_pb2.GenerateRequest]:
        yield generator_pb2.GenerateRequest(spec=self.spec())
        if self.source_video is not None:
            for piece in data_pieces(self.source_video, piece_size):
                yield generator_pb2.GenerateRequest(source_video=piece)
        image = [generator_pb2.GenerateRequest(image=p) for p in data_pieces(self.image, piece_size)]
        audio = [generator_pb2.GenerateRequest(audio=p) for p in data_pieces(encode_wav(self.samples), piece_size)]
        yield from (audio + image) if audio_first else (image + audio)
        if self.motion is not None:
            yield from (generator_pb2.GenerateRequest(motion=p) for p in data_pieces(self.motion, piece_size))


@dataclass
class Reply:
    """Everything the server streamed back for one chunk."""

    progress: list[generator_pb2.Progress] = field(default_factory=list)
    pieces: list[generator_pb2.DataPiece] = field(default_factory=list)
    summaries: list[generator_pb2.GenerateSummary] = field(default_factory=list)
    motion_pieces: list[generator_pb2.DataPiece] = field(default_factory=list)

    @property
    def video(self) -> bytes:
        return b"".join(piece.data for piece in self.pieces)

    @property
    def motion(self) -> bytes:
        return b"".join(piece.data for piece in self.motion_pieces)


def collect(responses: Iterable[generator_pb2.GenerateResponse],
            on_progress: threading.Event | None = None) -> Reply:
    reply = Reply()
    for response in responses:
        kind = response.WhichOneof("event")
        if kind == "progress":
            reply.progress.append(response.progress)
            if on_progress is not None:
                on_progress.set()
        elif kind == "video":
            reply.pieces.append(response.video)
        elif kind == "motion":
            reply.motion_pieces.append(response.motion)
        else:
            reply.summaries.append(response.summary)
    return reply


def held_back(requests: Iterator[generator_pb2.GenerateRequest], gate: threading.Event
              ) -> Iterator[generator_pb2.GenerateRequest]:
    """Send the spec at once and the payload only when `gate` opens (a slow uploader)."""
    yield next(requests)
    gate.wait(30)
    yield from requests


def rpc_error(call: Iterable[generator_pb2.GenerateResponse]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        collect(call)
    return caught.value


@dataclass
class Running:
    server: GeneratorServer
    port: int
    channel: grpc.Channel
    stub: generator_pb2_grpc.GeneratorStub
    work_dir: Path


@pytest.fixture()
def serve(tmp_path: Path) -> Iterator:
    """Start servers for a test (backend, capacity) and stop them all afterwards."""
    started: list[Running] = []

    def start(backend: PreviewBackend | None = None, capacity: int = 1, wait: bool = True,
              **options) -> Running:
        work_dir = tmp_path / f"work-{len(started)}"
        work_dir.mkdir()
        server, port = start_server(backend=backend or PreviewBackend(), capacity=capacity, temp_dir=work_dir,
                                    **options)
        channel = insecure_channel(f"127.0.0.1:{port}")
        # Chunks spool in the server's own scratch folder under TEMP_DIR.
        running = Running(server, port, channel, generator_pb2_grpc.GeneratorStub(channel), server.scratch.path)
        started.append(running)
        if wait:
            assert server.loading_done.wait(30)
        return running

    yield start
    for running in started:
        running.channel.close()
        running.server.stop(0)


@pytest.fixture()
def generator(serve) -> Running:
    return serve()


@pytest.fixture(scope="session")
def portrait() -> bytes:
    return face_like_portrait()


@pytest.fixture(scope="session")
def speech() -> np.ndarray:
    """3.2 s of syllables, no pause: loudness changes every few frames."""
    return speech_like(3.2, pause_every_sec=10.0, seed=3)
