"""The Generator gRPC methods: admit a chunk, read and check it, render it, stream the result."""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc

from infinitetalk.v1 import generator_pb2, generator_pb2_grpc
from itk_common.constants import FPS
from itk_common.motion import encode_motion
from itk_common.streaming import data_pieces, file_data_pieces

from .admission import ChunkSlots, Refusal
from .backend import Backend, BackendError, Cancelled, ChunkJob, ProgressEvent
from .intake import InvalidChunkError, read_chunk
from .rendering import RenderThread

log = logging.getLogger(__name__)


class GeneratorServicer(generator_pb2_grpc.GeneratorServicer):
    def __init__(self, backend: Backend, slots: ChunkSlots, temp_dir: Path) -> None:
        self.backend = backend
        self.slots = slots
        self.temp_dir = temp_dir
        # Set by the service once backend.load() has returned.
        self.ready = threading.Event()
        self.load_error: BaseException | None = None

    def GetInfo(self, request: generator_pb2.GetInfoRequest, context: grpc.ServicerContext  # noqa: N802
                ) -> generator_pb2.GeneratorInfo:
        return generator_pb2.GeneratorInfo(
            backend=self.backend.name,
            capacity=self.slots.capacity,
            active=self.slots.active,
            ready=self.ready.is_set(),
            draining=self.slots.draining,
            device=self.backend.device if self.ready.is_set() else "",
            devices=self.backend.parallel_devices,
            ignores_motion=not self.backend.continues_motion,
            person_counts=self.backend.person_counts,
        )

    def Generate(self, request_iterator: Iterator[generator_pb2.GenerateRequest],  # noqa: N802
                 context: grpc.ServicerContext) -> Iterator[generator_pb2.GenerateResponse]:
        # Decide before reading anything, so a busy or stopping server answers at once and the
        # caller can try another replica without uploading the payload here first.
        if not self.ready.is_set() and not self.slots.draining:
            state = "failed to load" if self.load_error else "is still loading"
            context.abort(grpc.StatusCode.UNAVAILABLE, f"backend {self.backend.name} {state}")
        refusal = self.slots.try_admit()
        if refusal is Refusal.DRAINING:
            context.abort(grpc.StatusCode.UNAVAILABLE, "draining: this generator is shutting down")
        if refusal is Refusal.FULL:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"busy: {self.slots.capacity} chunk(s) in progress, the capacity")
        try:
            yield from self._generate(request_iterator, context)
        finally:
            self.slots.release()

    def _generate(self, requests: Iterator[generator_pb2.GenerateRequest],
                  context: grpc.ServicerContext) -> Iterator[generator_pb2.GenerateResponse]:
        try:
            job = read_chunk(requests)
        except InvalidChunkError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except grpc.RpcError:
            log.info("client went away while uploading a chunk")
            return
        if job.person_count not in self.backend.person_counts:
            served = ", ".join(str(count) for count in self.backend.person_counts)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"backend {self.backend.name} renders {served} person(s) per chunk, "
                          f"not the {job.person_count} in spec.persons")
        work_dir = Path(tempfile.mkdtemp(prefix="itk-chunk-", dir=self.temp_dir))
        try:
            yield from self._render_and_send(job, work_dir / "chunk.mp4", context)
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)
            if job.force_offload:
                self.backend.unload()

    def _render_and_send(self, job: ChunkJob, output: Path, context: grpc.ServicerContext
                         ) -> Iterator[generator_pb2.GenerateResponse]:
        started = time.monotonic()
        render = RenderThread(self.backend, job, output)
        context.add_callback(render.cancelled.set)
        render.start()
        try:
            for event in render.progress(context.is_active):
                yield generator_pb2.GenerateResponse(progress=_progress_message(event))
            rendered = render.outcome()
        except BackendError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except Cancelled:
            log.info("chunk %s/%d cancelled by the client", job.job_id, job.chunk_index)
            context.abort(grpc.StatusCode.CANCELLED, "cancelled")
        except Exception as exc:
            log.exception("chunk %s/%d failed", job.job_id, job.chunk_index)
            context.abort(grpc.StatusCode.INTERNAL, f"backend {self.backend.name} failed: {exc}")
        finally:
            render.stop()
        seconds = time.monotonic() - started
        log.info("chunk %s/%d: %d frames in %.2f s", job.job_id, job.chunk_index, rendered.frame_count, seconds)
        video_size = rendered.path.stat().st_size
        for piece in file_data_pieces(rendered.path):
            yield generator_pb2.GenerateResponse(video=piece)
        motion = b"" if rendered.motion is None else encode_motion(rendered.motion)
        if motion:
            for piece in data_pieces(motion):
                yield generator_pb2.GenerateResponse(motion=piece)
        yield generator_pb2.GenerateResponse(summary=generator_pb2.GenerateSummary(
            frame_count=rendered.frame_count,
            duration_sec=rendered.frame_count / FPS,
            backend=self.backend.name,
            seconds_spent=seconds,
            width=rendered.width,
            height=rendered.height,
            video_size=video_size,
            motion_frames=0 if rendered.motion is None else len(rendered.motion),
            motion_size=len(motion),
        ))


def _progress_message(event: ProgressEvent) -> generator_pb2.Progress:
    return generator_pb2.Progress(step=event.step, total_steps=event.total_steps,
                                  frames_done=event.frames_done, stage=event.stage)
