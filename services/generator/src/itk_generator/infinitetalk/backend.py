"""The generator backend that renders chunks with the InfiniteTalk model.

Its settings are in settings.py (the environment variables listed there), the models it loads are
built by model_factory.py; this module turns a chunk into a request of the pipeline and the
pipeline's frames into the chunk's MP4. A two-person chunk (ChunkJob.persons) gets one audio
track per person and the persons' regions of the frame (person_regions.py), and needs the
multi-person adapter; the person counts served follow the adapters loaded.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from itk_common.catalogue import (
    MOTION_FRAMES,
    PRESET_NAMES,
    RESOLUTIONS,
    ClipGrid,
    check_clip_layout,
    resolution_family,
)
from itk_common.constants import SAMPLES_PER_FRAME
from itk_common.motion import uint8_to_motion
from itk_common.source_video import SourceFrames, VideoError
from itk_common.video import Mp4Writer

from ..backend import (
    Backend,
    BackendError,
    Cancelled,
    ChunkJob,
    Offer,
    ProgressCallback,
    ProgressEvent,
    RenderedChunk,
)
from ..images import ImageDecodeError, decode_image
from .idle_offload import IdleOffload
from .model_factory import (
    build_dit,
    build_pipeline,
    check_parallel_settings,
    person_counts,
    pipeline_modules,
    resolve_adapters,
)
from .parallel import ParallelGroup, WorkerLostError
from .person_regions import RegionError, generated_person_masks, latent_masks
from .pipeline import ChunkRequest, InfiniteTalkPipeline, StepReport, plan_clips
from .resolution import choose_bucket, delivered_size, resize_to_cover
from .sampling import TEACACHE_COEFFICIENTS, preset_plan, with_overrides
from .settings import SIZE_MULTIPLE, InfiniteTalkSettings
from .speakers import region_weights

log = logging.getLogger(__name__)


def normalise_resolution(name: str) -> str:
    """"" -> 480p; also accepts the reference's names ("infinitetalk-480")."""
    try:
        return resolution_family(name)
    except ValueError as err:
        raise BackendError(str(err)) from err


class InfiniteTalkBackend(Backend):
    name = "infinitetalk"

    def __init__(self, settings: InfiniteTalkSettings,
                 on_parallel_lost: Callable[[BaseException], None] | None = None) -> None:
        self.settings = settings
        self.pipeline: InfiniteTalkPipeline | None = None
        self.parallel: ParallelGroup | None = None
        # What to do when a rank dies while serving (default: exit, so the pod restarts).
        self.on_parallel_lost = on_parallel_lost
        self._lock = threading.Lock()
        self._idle: IdleOffload | None = None
        self._warmed: tuple[str, ...] = ()

    @classmethod
    def from_env(cls) -> InfiniteTalkBackend:
        return cls(InfiniteTalkSettings.from_env())

    @property
    def device(self) -> str:
        count = self.settings.parallel_devices
        if count == 1:
            return self.settings.device
        device = torch.device(self.settings.device)
        if device.type == "cuda":
            return f"cuda:{device.index or 0}-{(device.index or 0) + count - 1}"
        return f"{device.type} x{count}"

    @property
    def parallel_devices(self) -> int:
        return self.settings.parallel_devices

    def offer(self) -> Offer:
        return Offer(presets=PRESET_NAMES, clip_grid=ClipGrid(self.settings.clip_frames, MOTION_FRAMES),
                     resolutions=RESOLUTIONS, buckets=self._warmed)

    def warm_up(self) -> None:
        """Run one clip (one step, continuing from motion frames, so every stage of a later clip runs)
        at each warm-up bucket: compilation, kernel selection and the encoders' first calls happen
        here, before SERVING, instead of in the first job. Guidance batching gives each branch count
        its own shapes, so then every preset is run."""
        pipeline = self.pipeline
        assert pipeline is not None, "load() first"
        presets = PRESET_NAMES if self.settings.guidance_batch else (self.settings.preset,)
        with self._in_use():  # a load and warm-up longer than OFFLOAD_IDLE_SEC must not park the weights
            self._warm_up(pipeline, presets)

    def _warm_up(self, pipeline: InfiniteTalkPipeline, presets: tuple[str, ...]) -> None:
        clip_frames = pipeline.clip_frames
        warmed = []
        for family, width, height in self.settings.warmup_sizes():
            height_, width_ = (height, width) if self.settings.size else choose_bucket(height, width, family)
            for preset in presets:
                started = time.monotonic()
                request = ChunkRequest(
                    image=np.full((height_, width_, 3), 128, dtype=np.uint8),
                    audio=np.zeros(clip_frames * SAMPLES_PER_FRAME, dtype=np.float32),
                    frame_count=clip_frames - MOTION_FRAMES, prompt="", seed=1,
                    # a later piece of a lane: its first clip starts with the motion frames before it
                    lane_first_frame=clip_frames,
                    plan=replace(preset_plan(preset, family), steps=1), motion_frames=MOTION_FRAMES,
                    color_correction=self.settings.color_correction_strength,
                    teacache_coefficients=tuple(TEACACHE_COEFFICIENTS[family]),
                    motion=np.zeros((MOTION_FRAMES, height_, width_, 3), dtype=np.float16))
                # Under the grad mode a job runs in (generate's no_grad): compiled graphs are keyed
                # on it, and an inference_mode warm-up made every job after a start compile again.
                for _frames in pipeline.generate(request):
                    pass
                log.info("warmed up %s %dx%d (%s) in %.1f s", family, width_, height_, preset,
                         time.monotonic() - started)
            warmed.append(f"{family}:{width_}x{height_}")
        self._warmed = tuple(warmed)

    @functools.cached_property
    def person_counts(self) -> tuple[int, ...]:
        """1 with the single-person adapter, 2 with the multi-person one (INFINITETALK_ADAPTERS, or
        the adapters in MODEL_DIR); known before the weights are loaded. Two-person forwards need
        every token's speaker label on one device, so a generator whose parallel layout splits
        tokens (sequence parallelism) serves one person only."""
        counts = person_counts(resolve_adapters(self.settings))
        if 2 in counts and splits_tokens(self.settings):
            log.warning("two-person chunks are not served: PARALLEL_DEVICES=%d with PARALLEL_MODE=%s splits a "
                        "forward's tokens over devices (sequence parallelism)", self.settings.parallel_devices,
                        self.settings.parallel_mode)
            counts = tuple(count for count in counts if count != 2)
        if not counts:
            raise BackendError("this generator serves no person count: its only adapter is the multi-person one, "
                               "which does not run with sequence parallelism; use PARALLEL_MODE=guidance with at "
                               "least as many devices as forwards a step, or one device")
        return counts

    def load(self) -> None:
        with self._lock:
            if self.pipeline is None:
                if self.settings.parallel_devices == 1:
                    self.pipeline = build_pipeline(self.settings)
                else:
                    self.pipeline, self.parallel = self._load_parallel()
                if self.settings.offload_idle_sec and self._idle is None:
                    pipeline = self.pipeline
                    self._idle = IdleOffload(lambda: pipeline_modules(pipeline),
                                             torch.device(self.settings.device), self.settings.offload_idle_sec)
                    self._idle.start()

    def _load_parallel(self) -> tuple[InfiniteTalkPipeline, ParallelGroup]:
        settings = self.settings
        check_parallel_settings(settings)
        try:
            group = ParallelGroup(settings.parallel_devices, settings.device, settings.parallel_mode,
                                  functools.partial(build_dit, settings), self.on_parallel_lost)
        except WorkerLostError as err:
            raise BackendError(str(err)) from err
        try:
            pipeline = build_pipeline(settings)
            group.attach(pipeline)
            group.wait_ready()
        except WorkerLostError as err:
            group.shutdown()
            raise BackendError(str(err)) from err
        except BaseException:
            group.shutdown()
            raise
        log.info("rendering each chunk across %d devices (%s)", settings.parallel_devices, self.device)
        return pipeline, group

    def unload(self) -> None:
        with self._lock:
            self.pipeline = None
            if self._idle is not None:
                self._idle.stop()
                self._idle = None
            if self.parallel is not None:
                self.parallel.shutdown()
                self.parallel = None
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def render(self, job: ChunkJob, output: Path, progress: ProgressCallback,
               cancelled: threading.Event) -> RenderedChunk:
        if job.frame_count < 1:
            raise BackendError(f"frame_count must be positive, got {job.frame_count}")
        if job.audio.size == 0:
            raise BackendError("the chunk has no audio")
        try:
            image = decode_image(job.image)
        except ImageDecodeError as err:
            raise BackendError(str(err)) from err
        request, delivered = self._prepare(job, image)
        source = open_source(job)
        if source is not None:
            bucket = request.image.shape[:2]
            request = replace(request, reference_frame=lambda index: resize_to_cover(source.frame(index), *bucket))
        if self.pipeline is None:
            self.load()
        pipeline = self.pipeline
        assert pipeline is not None
        with self._in_use():
            return self._render(job, request, delivered, pipeline, output, progress, cancelled, source)

    def _in_use(self) -> contextlib.AbstractContextManager:
        """Keeps OFFLOAD_IDLE_SEC from parking the weights while a chunk or the warm-up runs."""
        return self._idle.in_use() if self._idle is not None else contextlib.nullcontext()

    def _render(self, job: ChunkJob, request: ChunkRequest, delivered: tuple[int, int],
                pipeline: InfiniteTalkPipeline, output: Path, progress: ProgressCallback,
                cancelled: threading.Event, source: SourceFrames | None) -> RenderedChunk:

        def on_step(report: StepReport) -> None:
            if cancelled.is_set():
                raise Cancelled(f"chunk {job.chunk_index} of {job.job_id} cancelled")
            progress(ProgressEvent(report.step, report.total_steps, report.frames_done, "denoise"))

        clips = plan_clips(job.frame_count, pipeline.clip_frames, request.motion_frames, request.motion is not None)
        total_steps = request.plan.steps * len(clips)
        progress(ProgressEvent(0, total_steps, 0, "encode"))
        height, width = delivered
        motion: list[np.ndarray] = []
        partial = Path(tempfile.mkstemp(suffix=".mp4", dir=output.parent)[1])
        try:
            # The MP4 is encoded on a thread of its own, so the device starts the next clip while
            # x264 codes this one (libx264 works without the GIL); the pool's exit waits for it.
            with Mp4Writer(partial, width, height, frame_count=job.frame_count) as writer, \
                    ThreadPoolExecutor(1, thread_name_prefix=f"mp4-{job.chunk_index}") as encoder:
                writes: list[Future[None]] = []
                delivered_frames = 0
                clip_started = time.monotonic()
                for clip_index, frames in enumerate(pipeline.generate(request, on_step, motion.append)):
                    # The model's time for the clip (the first also encodes the image, prompt and
                    # audio); writing the MP4 is not counted. bench/gpu_service.py sums these.
                    log.info("clip %d of chunk %s/%d: %d frames in %.3f s", clip_index, job.job_id, job.chunk_index,
                             len(frames), time.monotonic() - clip_started)
                    if writes and writes[-1].done():
                        writes[-1].result()  # an encoding error stops the chunk at once
                    first = delivered_frames
                    if frames.shape[1:3] != delivered:
                        frames = np.stack([resize_to_cover(frame, height, width) for frame in frames])
                    writes.append(encoder.submit(_write_frames, writer, frames))
                    delivered_frames += len(frames)
                    # The clip's frames go out now, for live playback; the MP4 follows whole.
                    progress(ProgressEvent(total_steps if delivered_frames == job.frame_count else 0,
                                           total_steps, delivered_frames, "decode", clip=frames,
                                           clip_first_frame=first))
                    clip_started = time.monotonic()
                for write in writes:
                    write.result()
            if writer.frames_written != job.frame_count:
                raise BackendError(f"generated {writer.frames_written} frames, expected {job.frame_count}")
            os.replace(partial, output)
        except VideoError as err:
            raise BackendError(str(err)) from err
        finally:
            partial.unlink(missing_ok=True)
            if source is not None:
                source.close()
        return RenderedChunk(path=output, frame_count=job.frame_count, width=width, height=height,
                             motion=motion[0] if motion else None)

    def _prepare(self, job: ChunkJob, image: np.ndarray) -> tuple[ChunkRequest, tuple[int, int]]:
        sampling = job.sampling
        resolution = normalise_resolution(sampling.resolution)
        preset = sampling.preset.strip().lower() or self.settings.preset
        try:
            plan = with_overrides(preset_plan(preset, resolution), sampling.steps, sampling.shift,
                                  sampling.text_guidance, sampling.audio_guidance, sampling.teacache)
        except ValueError as err:
            raise BackendError(str(err)) from err
        if self.settings.size:
            bucket = (self.settings.size[1], self.settings.size[0])
        elif job.width > 0 and job.height > 0:
            bucket = choose_bucket(job.height, job.width, resolution)
        else:
            bucket = choose_bucket(image.shape[0], image.shape[1], resolution)
        motion_frames = sampling.motion_frames or MOTION_FRAMES
        try:
            check_clip_layout(self.settings.clip_frames, motion_frames)
        except ValueError as err:
            raise BackendError(f"sampling.motion_frames: {err}") from err
        if job.persons:
            audio, (context_audio, context_before) = job.person_tracks, job.person_tracks_with_context
            masks = fit_person_masks(job, image.shape[:2], bucket)
        else:
            (context_audio, context_before), audio, masks = job.audio_with_context, job.audio, None
        request = ChunkRequest(
            image=resize_to_cover(image, *bucket),
            audio=np.asarray(audio, dtype=np.float32),
            frame_count=job.frame_count,
            prompt=job.prompt,
            seed=job.seed,
            plan=plan,
            motion_frames=motion_frames,
            color_correction=self.settings.color_correction_strength if sampling.color_correction else 0.0,
            teacache_coefficients=tuple(TEACACHE_COEFFICIENTS[resolution]),
            lane=job.lane,
            lane_first_frame=job.lane_first_frame,
            motion=fit_motion(job.motion, motion_frames, bucket),
            context_audio=np.asarray(context_audio, dtype=np.float32) if job.context_audio is not None else None,
            context_before=context_before,
            person_masks=masks,
        )
        return request, delivered_size(job.height, job.width, bucket)


def splits_tokens(settings: InfiniteTalkSettings) -> bool:
    """Whether some preset's step would split a forward's tokens over this generator's devices."""
    if settings.parallel_devices == 1:
        return False
    from .config import DiTConfig
    from .parallel import LayoutError, choose_layout
    from .parallel.layout import BRANCH_COUNTS
    from .weights import ModelPaths, WeightsError

    try:
        heads = DiTConfig.from_json(ModelPaths.from_root(settings.model_dir).dit_config).num_heads
        return any(choose_layout(settings.parallel_devices, branches, heads, settings.parallel_mode).sequence_degree > 1
                   for branches in BRANCH_COUNTS)
    except (WeightsError, LayoutError, ValueError, OSError) as err:
        raise BackendError(f"cannot read the parallel layout: {err}") from err


def fit_person_masks(job: ChunkJob, image_size: tuple[int, int], bucket: tuple[int, int]) -> torch.Tensor:
    """The persons' regions (and the background) at the generated size, from their boxes on the
    uploaded image or the default split; refused when a region covers no token of the frame."""
    count = len(job.persons)
    if count != 2:
        raise BackendError(f"the InfiniteTalk multi-person model renders 2 persons, the chunk has {count}")
    if job.person_audio is None or job.person_audio.shape[0] != count:
        tracks = 0 if job.person_audio is None else job.person_audio.shape[0]
        raise BackendError(f"the chunk lists {count} persons but carries {tracks} audio track(s)")
    try:
        masks = generated_person_masks([person.box for person in job.persons], *image_size, *bucket)
        latent = latent_masks(masks, bucket[0] // 8, bucket[1] // 8)
        region_weights(latent, (bucket[0] // SIZE_MULTIPLE, bucket[1] // SIZE_MULTIPLE), torch.float32)
    except (RegionError, ValueError) as err:
        raise BackendError(f"persons: {err}") from err
    return masks


def fit_motion(motion: np.ndarray | None, motion_frames: int, bucket: tuple[int, int]) -> np.ndarray | None:
    """The previous piece's motion frames at the generated size (height, width) of this piece.

    They normally come at that size already; a piece retried on a generator with another size
    (INFINITETALK_SIZE) gets them resized to cover it, so the lane goes on rather than failing.
    """
    if motion is None:
        return None
    if len(motion) < motion_frames:
        raise BackendError(f"motion: {len(motion)} frames given, this piece continues from {motion_frames}")
    motion = motion[-motion_frames:]
    if motion.shape[1:3] == bucket:
        return motion
    frames = [resize_to_cover(((frame.astype(np.float32) + 1) * 127.5).round().clip(0, 255).astype(np.uint8),
                              *bucket) for frame in motion]
    return uint8_to_motion(np.stack(frames))


def open_source(job: ChunkJob) -> SourceFrames | None:
    """The chunk's source video (dubbing), read front to back as the clips advance."""
    if job.source_video is None:
        return None
    try:
        return SourceFrames(job.source_video)
    except VideoError as err:
        raise BackendError(str(err)) from err


def _write_frames(writer: Mp4Writer, frames: np.ndarray) -> None:
    for frame in frames:
        writer.write(frame)
