"""The gateway's backends (splitter, stitcher, generators) started in-process on 127.0.0.1.

`BackendServices` owns real servers on free ports; generators run the preview backend wrapped
in a `CountingBackend`, which counts the chunks each one rendered to the end (how tests prove a
resumed job did not render a finished chunk again) and can be slowed down per audio second.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from itk_common.grpc_server import GrpcService, wait_for_serving
from itk_generator.backend import Backend, ChunkJob, ProgressCallback, RenderedChunk
from itk_generator.preview import PreviewBackend
from itk_generator.server import GeneratorServer
from itk_generator.server import start_server as start_generator_server
from itk_splitter.server import start_server as start_splitter_server
from itk_stitcher.server import start_server as start_stitcher_server

HOST = "127.0.0.1"


class CountingBackend(Backend):
    """The preview backend, counting finished renders per (job, chunk); `cost_per_audio_sec`
    makes each chunk take that long per second of audio (cancellable), to keep chunks in flight.
    Set `failure` to an exception to make every render raise it (BackendError: the chunk is
    refused as bad input; anything else: the generator reports an internal failure)."""

    name = "preview"

    def __init__(self, cost_per_audio_sec: float = 0.0, devices: int = 1,
                 person_counts: tuple[int, ...] | None = None) -> None:
        self.inner = PreviewBackend(cost_per_audio_sec=cost_per_audio_sec)
        self.devices = devices  # what GetInfo reports, as a multi-GPU generator would
        # What GetInfo reports as person counts (None: the preview's own, one or two).
        self.counts = person_counts
        self.rendered: Counter[tuple[str, int]] = Counter()
        self.started: Counter[tuple[str, int]] = Counter()
        # Renders under way now: (job, chunk) -> time.monotonic() when it began.
        self.running: dict[tuple[str, int], float] = {}
        self.failure: Exception | None = None
        self._lock = threading.Lock()

    def load(self) -> None:
        self.inner.load()

    @property
    def parallel_devices(self) -> int:
        return self.devices

    @property
    def person_counts(self) -> tuple[int, ...]:
        return self.inner.person_counts if self.counts is None else self.counts

    def render(self, job: ChunkJob, output: Path, progress: ProgressCallback,
               cancelled: threading.Event) -> RenderedChunk:
        key = (job.job_id, job.chunk_index)
        with self._lock:
            self.started[key] += 1
            self.running[key] = time.monotonic()
        try:
            if self.failure is not None:
                raise self.failure
            result = self.inner.render(job, output, progress, cancelled)
            with self._lock:
                self.rendered[key] += 1
            return result
        finally:
            with self._lock:
                self.running.pop(key, None)


@dataclass
class GeneratorHandle:
    server: GeneratorServer
    port: int
    backend: CountingBackend

    @property
    def target(self) -> str:
        return f"{HOST}:{self.port}"

    def stop(self) -> None:
        self.server.stop(grace=0)


def start_generator(temp_dir: Path, capacity: int = 1, cost_per_audio_sec: float = 0.0,
                    port: int = 0, devices: int = 1, person_counts: tuple[int, ...] | None = None) -> GeneratorHandle:
    backend = CountingBackend(cost_per_audio_sec, devices, person_counts)
    temp_dir.mkdir(parents=True, exist_ok=True)
    server, bound = start_generator_server(HOST, port, backend=backend, capacity=capacity, temp_dir=temp_dir)
    handle = GeneratorHandle(server, bound, backend)
    wait_for_serving(handle.target, timeout=60)
    return handle


@dataclass
class BackendServices:
    """Splitter, stitcher and generators; `stop()` stops all of them."""

    root: Path
    splitter: GrpcService
    splitter_port: int
    stitcher: GrpcService
    stitcher_port: int
    generators: list[GeneratorHandle] = field(default_factory=list)

    @property
    def splitter_target(self) -> str:
        return f"{HOST}:{self.splitter_port}"

    @property
    def stitcher_target(self) -> str:
        return f"{HOST}:{self.stitcher_port}"

    @property
    def generator_targets(self) -> list[str]:
        return [g.target for g in self.generators]

    def add_generator(self, capacity: int = 1, cost_per_audio_sec: float = 0.0) -> GeneratorHandle:
        handle = start_generator(self.root / f"generator-{len(self.generators)}", capacity, cost_per_audio_sec)
        self.generators.append(handle)
        return handle

    def rendered(self, job_id: str) -> Counter[int]:
        """Chunk index -> renders finished for `job_id`, over every generator."""
        counts: Counter[int] = Counter()
        for generator in self.generators:
            for (job, index), times in generator.backend.rendered.items():
                if job == job_id:
                    counts[index] += times
        return counts

    def started(self, job_id: str) -> Counter[int]:
        """Chunk index -> renders begun for `job_id`, over every generator."""
        counts: Counter[int] = Counter()
        for generator in self.generators:
            for (job, index), times in generator.backend.started.items():
                if job == job_id:
                    counts[index] += times
        return counts

    def running_since(self, job_id: str) -> list[float]:
        """When each render of `job_id` under way now began (time.monotonic())."""
        return [since for generator in self.generators
                for (job, _), since in list(generator.backend.running.items()) if job == job_id]

    def stop(self) -> None:
        for generator in self.generators:
            generator.stop()
        self.splitter.stop(0)
        self.stitcher.stop(0)


def start_backend_services(root: Path, generators: int = 1, capacity: int = 1,
                           cost_per_audio_sec: float = 0.0) -> BackendServices:
    (root / "stitcher").mkdir(parents=True, exist_ok=True)
    splitter, splitter_port = start_splitter_server(HOST, 0)
    stitcher, stitcher_port = start_stitcher_server(HOST, 0, temp_dir=root / "stitcher")
    services = BackendServices(root, splitter, splitter_port, stitcher, stitcher_port)
    for _ in range(generators):
        services.add_generator(capacity, cost_per_audio_sec)
    return services


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.05, message: str = "condition") -> None:
    """Poll `predicate` until true; fail with `message` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{message} not reached in {timeout:.0f}s")
        time.sleep(interval)
