"""The generator backend that renders chunks with the InfiniteTalk model.

Settings (environment, read by `InfiniteTalkBackend.from_env`):
- MODEL_DIR: the model directory (layout as written by `itk-download-weights`); required.
- INFINITETALK_PRESET: "quality" (40 steps, 3 forwards a step) or "fast" (8 steps, 2 forwards;
  meant for a step-distilled LoRA such as FusioniX). Default quality.
- LORA_PATH / LORA_SCALE: an optional LoRA merged into the DiT at load (scale default 1.0).
- DEVICE: "cuda", "cuda:N" or "cpu" (default cuda when available). DTYPE: bf16, fp16, fp32 or
  fp8 (default bf16 on a GPU, fp32 on the CPU). fp8: the blocks' projections and FFNs in e4m3
  (fp8.py) on GPUs of compute capability 8.9+, the rest in bf16; FP8_ACTIVATION_SCALING token
  (default) or tensor; FP8_ATTENTION auto (cuDNN FP8 self-attention where it runs, else bf16),
  on or off.
- DIT_PATH: a whole DiT in one safetensors file used instead of the Wan2.1 shards (LightX2V's
  distilled models, bf16 or pre-quantized scaled FP8, as fetched by `itk-download-weights --dit`).
- VAE_DTYPE: fp32 (default) or bf16; VAE_TILING: decode/encode in spatial tiles (less memory at 720p).
- GUIDANCE_BATCH: run a step's guidance forwards as one batched forward.
- BLOCK_OFFLOAD: keep the DiT blocks in CPU memory and stream them to the GPU (48 GB cards).
- ATTENTION_BACKEND: auto (flash-attn when installed, else torch SDPA), sdpa, sdpa-cudnn,
  sdpa-flash or flash-attn (see attention.py).
- INFINITETALK_COMPILE: off, elementwise (torch.compile the norms / modulation / RoPE / gated
  residuals) or blocks (compile every block's whole forward; not with BLOCK_OFFLOAD). Default:
  elementwise on a GPU, off on the CPU. The first forward then takes ~10 s longer.
- INFINITETALK_CLIP_FRAMES: frames per clip (default 81; 4n+1). INFINITETALK_SIZE: "WxH" forces
  the generated size instead of the resolution buckets (both for small test models).
- COLOR_CORRECTION_STRENGTH: strength of the colour correction toward the reference image, on
  for every job that does not turn it off (default 1.0, the reference CLI's value).
- TEXT_ENCODER_DEVICE: where umT5 runs (default: cpu with BLOCK_OFFLOAD, else DEVICE); prompt
  embeddings are cached per prompt, so a job's later chunks skip it.
- PARALLEL_DEVICES: devices one chunk is rendered across (default 1). With N > 1 this process
  is rank 0 on DEVICE and spawns ranks 1..N-1 on the next N-1 devices (parallel/launch.py);
  the service stays one endpoint of capacity 1. PARALLEL_MODE: auto, guidance or sequence
  (parallel/layout.py).

Precision: the DiT and umT5 run in DTYPE, CLIP in fp16 on a GPU (as the reference), the VAE and
wav2vec2 in fp32.

GPU memory (measured on one H200, torch 2.11, one 81-frame 480x832 clip, random weights; see
bench/gpu_infinitetalk.py): DiT weights 35.2 GiB in bf16; DiT forward peak 38.2 GiB resident and
5.35 GiB with BLOCK_OFFLOAD; VAE decode of a clip 9.3 GiB peak on its own. Add umT5-XXL (an
11 GB file) when it sits on the GPU, i.e. without BLOCK_OFFLOAD: the resident mode needs an
80 GB card, the offload mode fits a 48 GB one with room to spare.
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from itk_common.config import ConfigError, env_bool, env_float, env_int, env_str
from itk_common.motion import uint8_to_motion
from itk_common.source_video import SourceFrames, VideoError
from itk_common.video import Mp4Writer

from ..backend import Backend, BackendError, Cancelled, ChunkJob, ProgressCallback, ProgressEvent, RenderedChunk
from ..images import ImageDecodeError, decode_image
from .attention import BACKENDS as ATTENTION_BACKENDS
from .attention import Attention
from .config import DiTConfig
from .dit import (
    InfiniteTalkDiT,
    compile_blocks,
    compile_elementwise,
    fp8_layer_names,
    load_strict,
    use_fp8_linears,
)
from .fp8 import ACTIVATION_SCALINGS, FP8UnavailableError, quantize_state, require_fp8
from .parallel import MODES as PARALLEL_MODES
from .parallel import LayoutError, ParallelGroup, WorkerLostError, choose_layout
from .parallel.layout import BRANCH_COUNTS
from .pipeline import ChunkRequest, InfiniteTalkPipeline, StepReport, plan_clips, validate_clip_layout
from .resolution import RESOLUTIONS, choose_bucket, delivered_size, resize_to_cover
from .sampling import PRESETS, TEACACHE_COEFFICIENTS, preset_plan, with_overrides

log = logging.getLogger(__name__)

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32, "fp8": torch.bfloat16}
VAE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
FP8_ATTENTION_MODES = ("auto", "on", "off")
# The spatial size must be a multiple of the VAE stride (8) times the patch size (2).
SIZE_MULTIPLE = 16
COMPILE_MODES = ("", "off", "elementwise", "blocks")


@dataclass(frozen=True)
class InfiniteTalkSettings:
    model_dir: Path
    preset: str = "quality"
    lora_path: Path | None = None
    lora_scale: float = 1.0
    device: str = field(default_factory=lambda: "cuda" if torch.cuda.is_available() else "cpu")
    dtype: str = ""
    block_offload: bool = False
    attention: str = "auto"
    compile: str = ""
    clip_frames: int = 81
    size: tuple[int, int] | None = None  # (width, height) forced instead of the buckets
    color_correction_strength: float = 1.0
    text_encoder_device: str = ""
    dit_path: Path | None = None
    fp8_activation_scaling: str = "token"
    fp8_attention: str = "auto"
    vae_dtype: str = "fp32"
    vae_tiling: bool = False
    guidance_batch: bool = False
    parallel_devices: int = 1
    parallel_mode: str = "auto"

    def __post_init__(self) -> None:
        if self.parallel_devices < 1:
            raise ConfigError(f"PARALLEL_DEVICES must be at least 1, got {self.parallel_devices}")
        if self.parallel_mode not in PARALLEL_MODES:
            raise ConfigError(f"PARALLEL_MODE must be one of {PARALLEL_MODES}, got {self.parallel_mode!r}")
        if self.preset not in PRESETS:
            raise ConfigError(f"INFINITETALK_PRESET must be one of {sorted(PRESETS)}, got {self.preset!r}")
        if self.dtype and self.dtype not in DTYPES:
            raise ConfigError(f"DTYPE must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if self.attention not in ATTENTION_BACKENDS:
            raise ConfigError(f"ATTENTION_BACKEND must be one of {ATTENTION_BACKENDS}, got {self.attention!r}")
        try:
            validate_clip_layout(self.clip_frames, 1)
        except ValueError as err:
            raise ConfigError(f"INFINITETALK_CLIP_FRAMES: {err}") from err
        if self.compile not in COMPILE_MODES:
            raise ConfigError(f"INFINITETALK_COMPILE must be one of {COMPILE_MODES}, got {self.compile!r}")
        if self.compile == "blocks" and self.block_offload:
            raise ConfigError("INFINITETALK_COMPILE=blocks does not work with BLOCK_OFFLOAD; use elementwise")
        if self.fp8_activation_scaling not in ACTIVATION_SCALINGS:
            raise ConfigError(f"FP8_ACTIVATION_SCALING must be one of {ACTIVATION_SCALINGS}, "
                              f"got {self.fp8_activation_scaling!r}")
        if self.fp8_attention not in FP8_ATTENTION_MODES:
            raise ConfigError(f"FP8_ATTENTION must be one of {FP8_ATTENTION_MODES}, got {self.fp8_attention!r}")
        if self.vae_dtype not in VAE_DTYPES:
            raise ConfigError(f"VAE_DTYPE must be one of {sorted(VAE_DTYPES)}, got {self.vae_dtype!r}")
        if self.dtype == "fp8" and self.block_offload:
            raise ConfigError("DTYPE=fp8 does not work with BLOCK_OFFLOAD (the FP8 weights already halve the memory)")
        if self.size and (self.size[0] % SIZE_MULTIPLE or self.size[1] % SIZE_MULTIPLE):
            raise ConfigError(f"INFINITETALK_SIZE must be multiples of {SIZE_MULTIPLE}, got {self.size}")

    @property
    def compile_mode(self) -> str:
        if self.compile:
            return self.compile
        return "elementwise" if self.device.startswith("cuda") else "off"

    @property
    def torch_dtype(self) -> torch.dtype:
        if self.dtype:
            return DTYPES[self.dtype]
        return torch.bfloat16 if self.device.startswith("cuda") else torch.float32

    @classmethod
    def from_env(cls) -> InfiniteTalkSettings:
        model_dir = env_str("MODEL_DIR", "")
        if not model_dir:
            raise ConfigError("MODEL_DIR must name the InfiniteTalk model directory")
        lora = env_str("LORA_PATH", "")
        size = env_str("INFINITETALK_SIZE", "")
        return cls(
            model_dir=Path(model_dir),
            preset=env_str("INFINITETALK_PRESET", "quality"),
            lora_path=Path(lora) if lora else None,
            lora_scale=env_float("LORA_SCALE", 1.0),
            device=env_str("DEVICE", "cuda" if torch.cuda.is_available() else "cpu"),
            dtype=env_str("DTYPE", ""),
            block_offload=env_bool("BLOCK_OFFLOAD", False),
            attention=env_str("ATTENTION_BACKEND", "auto"),
            compile=env_str("INFINITETALK_COMPILE", "").strip().lower(),
            clip_frames=env_int("INFINITETALK_CLIP_FRAMES", 81, minimum=5),
            size=parse_size(size) if size else None,
            color_correction_strength=env_float("COLOR_CORRECTION_STRENGTH", 1.0, minimum=0.0),
            text_encoder_device=env_str("TEXT_ENCODER_DEVICE", ""),
            dit_path=Path(dit_path) if (dit_path := env_str("DIT_PATH", "")) else None,
            fp8_activation_scaling=env_str("FP8_ACTIVATION_SCALING", "token").strip().lower(),
            fp8_attention=env_str("FP8_ATTENTION", "auto").strip().lower(),
            vae_dtype=env_str("VAE_DTYPE", "fp32").strip().lower(),
            vae_tiling=env_bool("VAE_TILING", False),
            guidance_batch=env_bool("GUIDANCE_BATCH", False),
            parallel_devices=env_int("PARALLEL_DEVICES", 1, minimum=1),
            parallel_mode=env_str("PARALLEL_MODE", "auto").strip().lower(),
        )


def parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError as err:
        raise ConfigError(f"INFINITETALK_SIZE must look like 832x480, got {text!r}") from err
    return width, height


def normalise_resolution(name: str) -> str:
    """"" -> 480p; also accepts the reference's names ("infinitetalk-480")."""
    aliases = {"": "480p", "480": "480p", "720": "720p", "infinitetalk-480": "480p", "infinitetalk-720": "720p"}
    resolution = aliases.get(name.strip().lower(), name.strip().lower())
    if resolution not in RESOLUTIONS:
        raise BackendError(f"unknown resolution {name!r}; use one of {', '.join(RESOLUTIONS)}")
    return resolution


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

    def load(self) -> None:
        with self._lock:
            if self.pipeline is None:
                if self.settings.parallel_devices == 1:
                    self.pipeline = build_pipeline(self.settings)
                else:
                    self.pipeline, self.parallel = self._load_parallel()

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
            with Mp4Writer(partial, width, height, frame_count=job.frame_count) as writer:
                for frames in pipeline.generate(request, on_step, motion.append):
                    for frame in frames:
                        writer.write(frame if frame.shape[:2] == delivered else resize_to_cover(frame, height, width))
                    progress(ProgressEvent(total_steps if writer.frames_written == job.frame_count else 0,
                                           total_steps, writer.frames_written, "decode"))
            if writer.frames_written != job.frame_count:
                raise BackendError(f"generated {writer.frames_written} frames, expected {job.frame_count}")
            os.replace(partial, output)
        except VideoError as err:
            raise BackendError(str(err)) from err
        finally:
            partial.unlink(missing_ok=True)
            if source is not None:
                source.close()
        if job.force_offload:
            self.unload()
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
        motion_frames = sampling.motion_frames or 9
        try:
            validate_clip_layout(self.settings.clip_frames, motion_frames)
        except ValueError as err:
            raise BackendError(str(err)) from err
        context_audio, context_before = job.audio_with_context
        request = ChunkRequest(
            image=resize_to_cover(image, *bucket),
            audio=np.asarray(job.audio, dtype=np.float32),
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
        )
        return request, delivered_size(job.height, job.width, bucket)


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


def check_parallel_settings(settings: InfiniteTalkSettings) -> None:
    """Before starting any process: enough devices, and a layout for both kinds of step."""
    from .weights import ModelPaths, WeightsError

    count = settings.parallel_devices
    device = torch.device(settings.device)
    if device.type == "cuda":
        first = device.index or 0
        visible = torch.cuda.device_count()
        if first + count > visible:
            raise BackendError(f"PARALLEL_DEVICES={count} needs CUDA devices {first}..{first + count - 1}; "
                               f"{visible} visible")
    try:
        config = DiTConfig.from_json(ModelPaths.from_root(settings.model_dir).dit_config)
    except (WeightsError, ValueError, OSError) as err:
        raise BackendError(f"cannot read the InfiniteTalk DiT config: {err}") from err
    for branches in BRANCH_COUNTS:
        try:
            choose_layout(count, branches, config.num_heads, settings.parallel_mode)
        except LayoutError as err:
            raise BackendError(f"PARALLEL_DEVICES / PARALLEL_MODE: {err}") from err


def build_dit(settings: InfiniteTalkSettings, device: torch.device) -> InfiniteTalkDiT:
    """The DiT (+ adapter, + LoRA) on `device`, in FP8 where asked, offloaded and compiled as the
    settings say. Every rank of a multi-GPU generator builds its own."""
    from .weights import ModelPaths, WeightsError, load_dit_state_dict

    dtype = settings.torch_dtype
    fp8 = settings.dtype == "fp8"
    distilled = settings.lora_path is not None or settings.dit_path is not None
    if settings.preset in ("fast", "turbo") and not distilled:
        log.warning("INFINITETALK_PRESET=%s is meant for step-distilled weights (LORA_PATH or DIT_PATH); "
                    "none is set", settings.preset)
    if fp8:
        try:
            require_fp8(device)
        except FP8UnavailableError as err:
            raise BackendError(str(err)) from err
    fp8_attention = resolve_fp8_attention(settings, device)
    try:
        paths = ModelPaths.from_root(settings.model_dir)
        config = DiTConfig.from_json(paths.dit_config)
        loras = [(settings.lora_path, settings.lora_scale)] if settings.lora_path else []
        # N ranks load at once: read each shard straight onto the rank's GPU, or host memory would
        # hold N copies of the 35 GiB model.
        straight_to_gpu = settings.parallel_devices > 1 and device.type == "cuda" and not settings.block_offload
        state = load_dit_state_dict(paths, loras, dtype=dtype, device=device if straight_to_gpu else "cpu",
                                    dit_file=settings.dit_path, keep_fp8=fp8)
        with torch.device("meta"):
            dit = InfiniteTalkDiT(config, Attention(settings.attention, fp8_self_attention=fp8_attention))
            if fp8:
                use_fp8_linears(dit, settings.fp8_activation_scaling)
        if fp8:  # LoRAs are already merged: quantize (on the device) what is not pre-quantized
            quantize_state(state, fp8_layer_names(config), device)
        load_strict(dit, state, assign=True)
    except (WeightsError, ValueError, KeyError) as err:
        raise BackendError(f"cannot load the InfiniteTalk DiT: {err}") from err
    del state
    dit.eval().requires_grad_(False)
    if settings.block_offload and device.type == "cuda":
        from .offload import enable_block_offload

        enable_block_offload(dit, device)
    else:
        dit.to(device)
    if settings.compile_mode == "elementwise":
        compile_elementwise()
    elif settings.compile_mode == "blocks":
        compile_blocks(dit)
    log.info("InfiniteTalk DiT loaded on %s (%s, offload=%s, FP8 self-attention=%s)", device,
             "fp8 linears" if fp8 else dtype, settings.block_offload, fp8_attention)
    return dit


def build_pipeline(settings: InfiniteTalkSettings) -> InfiniteTalkPipeline:
    """Load every model once: DiT (+ adapter, + LoRA), VAE, CLIP, umT5, wav2vec2."""
    from .audio_features import AudioFeatureExtractor
    from .clip_vision import ClipVisionEncoder
    from .text_encoder import TextEncoder
    from .vae import WanVAE
    from .weights import ModelPaths

    device = torch.device(settings.device)
    dtype = settings.torch_dtype
    dit = build_dit(settings, device)
    paths = ModelPaths.from_root(settings.model_dir)
    on_gpu = device.type == "cuda"
    text_device = torch.device(settings.text_encoder_device or ("cpu" if settings.block_offload else device))
    text_dtype = dtype  # bf16 on a GPU; on the CPU (block offload) bf16 also halves its 22 GB of fp32 weights
    vae = WanVAE.load(paths.vae, device, VAE_DTYPES[settings.vae_dtype])
    if settings.vae_tiling:
        vae.model.enable_tiling()
    return InfiniteTalkPipeline(
        dit=dit,
        vae=vae,
        clip=ClipVisionEncoder.load(paths.clip, device, torch.float16 if on_gpu else torch.float32),
        text_encoder=TextEncoder.load(paths.t5, paths.tokenizer_dir, text_device, text_dtype),
        audio_encoder=AudioFeatureExtractor.load(paths.wav2vec_dir, device, torch.float32),
        device=device,
        clip_frames=settings.clip_frames,
        batch_guidance=settings.guidance_batch,
    )


def resolve_fp8_attention(settings: InfiniteTalkSettings, device: torch.device) -> bool:
    """Whether the self-attention runs in FP8: with DTYPE=fp8 and FP8_ATTENTION auto where cuDNN's
    FP8 attention runs, always with `on` (the reference implementation on the CPU; a start-up
    error on a GPU that cannot), never with `off`."""
    if settings.dtype != "fp8" or settings.fp8_attention == "off":
        return False
    if device.type == "cpu":
        return settings.fp8_attention == "on"
    from .fp8_attention import FP8AttentionUnavailableError, check_cudnn_fp8_attention

    try:
        check_cudnn_fp8_attention(device)
    except FP8AttentionUnavailableError as err:
        if settings.fp8_attention == "on":
            raise BackendError(f"FP8_ATTENTION=on: {err}") from err
        log.warning("self-attention stays in bf16: %s", err)
        return False
    return True
