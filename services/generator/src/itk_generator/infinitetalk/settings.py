"""The InfiniteTalk generator's settings, read from the environment by `InfiniteTalkSettings.from_env`.

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
- VAE_FUSED_NORMS: each VAE norm and the SiLU after it as one function, compiled on a GPU (default
  on a GPU, off on the CPU); VAE_TIME_CHUNK: latent frames' worth per decoder and encoder call
  after the first (default 1, as diffusers). Both give the same frames up to rounding
  (vae_fast_paths.py). Why the fused norms are on and the time chunks off by default, measured
  on a GPU: docs/performance.md, "Two fast paths for the VAE".
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
- OFFLOAD_IDLE_SEC: after this many seconds without a chunk, move the weights to pinned host
  memory and give the GPU memory back; the next chunk brings them back first (idle_offload.py).
  Default 0: the models stay on the GPU between chunks and jobs, which is what a generator is for.
  The seed API's `force_offload` does not unload them (it is passed on to remote providers only).
- INFINITETALK_WARMUP_BUCKETS: the resolution buckets (`480p:832x480`, family:WIDTHxHEIGHT,
  comma-separated) compiled and run once before the generator reports SERVING, so the first job
  runs at the steady speed; `off` for none. Default on a GPU: 480p:832x480,480p:480x832 (or the
  INFINITETALK_SIZE), on the CPU: off.
- PARALLEL_DEVICES: devices one chunk is rendered across (default 1). With N > 1 this process
  is rank 0 on DEVICE and spawns ranks 1..N-1 on the next N-1 devices (parallel/launch.py);
  the service stays one endpoint of capacity 1. PARALLEL_MODE: auto, guidance or sequence
  (parallel/layout.py).
- INFINITETALK_ADAPTERS: which InfiniteTalk adapters to load, "single" (one person), "multi" (two
  people) or "single,multi"; default every one found in MODEL_DIR (`itk-download-weights --multi`
  fetches the multi-person one). The generator reports the person counts they render, and with
  both it holds the second adapter's 5.0 GB (2.49e9 parameters, bf16) next to the first and switches per chunk.

Precision: the DiT and umT5 run in DTYPE, CLIP in fp16 on a GPU (as the reference), the VAE and
wav2vec2 in fp32.

GPU memory (measured on one H200, torch 2.11, one 81-frame 480x832 clip, random weights; see
bench/gpu_infinitetalk.py): DiT weights 35.2 GiB in bf16; DiT forward peak 38.2 GiB resident and
5.35 GiB with BLOCK_OFFLOAD; VAE decode of a clip 9.3 GiB peak on its own. Add umT5-XXL (an
11 GB file) when it sits on the GPU, i.e. without BLOCK_OFFLOAD: the resident mode needs an
80 GB card, the offload mode fits a 48 GB one with room to spare.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from itk_common.catalogue import CLIP_FRAMES, DEFAULT_PRESET, PRESET_NAMES, check_clip_layout, parse_bucket
from itk_common.config import ConfigError, env_bool, env_float, env_int, env_str

from .attention import BACKENDS as ATTENTION_BACKENDS
from .dit import ADAPTERS
from .fp8 import ACTIVATION_SCALINGS
from .parallel import MODES as PARALLEL_MODES

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32, "fp8": torch.bfloat16}
VAE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
FP8_ATTENTION_MODES = ("auto", "on", "off")
# The spatial size must be a multiple of the VAE stride (8) times the patch size (2).
SIZE_MULTIPLE = 16
COMPILE_MODES = ("", "off", "elementwise", "blocks")


@dataclass(frozen=True)
class InfiniteTalkSettings:
    model_dir: Path
    preset: str = DEFAULT_PRESET
    lora_path: Path | None = None
    lora_scale: float = 1.0
    device: str = field(default_factory=lambda: "cuda" if torch.cuda.is_available() else "cpu")
    dtype: str = ""
    block_offload: bool = False
    attention: str = "auto"
    compile: str = ""
    clip_frames: int = CLIP_FRAMES
    size: tuple[int, int] | None = None  # (width, height) forced instead of the buckets
    color_correction_strength: float = 1.0
    text_encoder_device: str = ""
    dit_path: Path | None = None
    fp8_activation_scaling: str = "token"
    fp8_attention: str = "auto"
    vae_dtype: str = "fp32"
    vae_tiling: bool = False
    vae_fused_norms: bool | None = None  # None: on a GPU (see fused_vae_norms)
    vae_time_chunk: int = 1
    guidance_batch: bool = False
    parallel_devices: int = 1
    parallel_mode: str = "auto"
    offload_idle_sec: float = 0.0
    # None: the default for the device (see warmup_sizes); () for none.
    warmup_buckets: tuple[str, ...] | None = None
    adapters: tuple[str, ...] = ()  # empty: every adapter found in the model directory

    def __post_init__(self) -> None:
        if self.parallel_devices < 1:
            raise ConfigError(f"PARALLEL_DEVICES must be at least 1, got {self.parallel_devices}")
        unknown = [kind for kind in self.adapters if kind not in ADAPTERS]
        if unknown or len(set(self.adapters)) != len(self.adapters):
            raise ConfigError(f"INFINITETALK_ADAPTERS must name some of {', '.join(ADAPTERS)} once each, "
                              f"got {','.join(self.adapters)!r}")
        # Each setting with a fixed set of values, by its variable's name ("" is the default where allowed).
        choices = {
            "PARALLEL_MODE": (self.parallel_mode, PARALLEL_MODES),
            "INFINITETALK_PRESET": (self.preset, PRESET_NAMES),
            "DTYPE": (self.dtype, ("", *DTYPES)),
            "ATTENTION_BACKEND": (self.attention, ATTENTION_BACKENDS),
            "INFINITETALK_COMPILE": (self.compile, COMPILE_MODES),
            "FP8_ACTIVATION_SCALING": (self.fp8_activation_scaling, ACTIVATION_SCALINGS),
            "FP8_ATTENTION": (self.fp8_attention, FP8_ATTENTION_MODES),
            "VAE_DTYPE": (self.vae_dtype, VAE_DTYPES),
        }
        for name, (value, allowed) in choices.items():
            if value not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(v for v in allowed if v)}, got {value!r}")
        try:
            check_clip_layout(self.clip_frames, 1)
        except ValueError as err:
            raise ConfigError(f"INFINITETALK_CLIP_FRAMES: {err}") from err
        if self.compile == "blocks" and self.block_offload:
            raise ConfigError("INFINITETALK_COMPILE=blocks does not work with BLOCK_OFFLOAD; use elementwise")
        if self.dtype == "fp8" and self.block_offload:
            raise ConfigError("DTYPE=fp8 does not work with BLOCK_OFFLOAD (the FP8 weights already halve the memory)")
        if self.offload_idle_sec and not self.device.startswith("cuda"):
            raise ConfigError("OFFLOAD_IDLE_SEC moves the weights off a GPU; DEVICE is not one")
        if self.offload_idle_sec and (self.parallel_devices > 1 or self.block_offload):
            raise ConfigError("OFFLOAD_IDLE_SEC works on one GPU without BLOCK_OFFLOAD")
        for bucket in self.warmup_buckets or ():
            try:
                parse_bucket(bucket)
            except ValueError as err:
                raise ConfigError(f"INFINITETALK_WARMUP_BUCKETS: {err}") from err
        if self.size and (self.size[0] % SIZE_MULTIPLE or self.size[1] % SIZE_MULTIPLE):
            raise ConfigError(f"INFINITETALK_SIZE must be multiples of {SIZE_MULTIPLE}, got {self.size}")

    def warmup_sizes(self) -> list[tuple[str, int, int]]:
        """(family, width, height) of each bucket to warm up before SERVING."""
        if self.warmup_buckets is not None:
            return [parse_bucket(bucket) for bucket in self.warmup_buckets]
        if not self.device.startswith("cuda"):
            return []
        if self.size:
            return [("480p", *self.size)]
        return [("480p", 832, 480), ("480p", 480, 832)]

    @property
    def fused_vae_norms(self) -> bool:
        """VAE_FUSED_NORMS, by default on a GPU (compiled there; the CPU keeps diffusers' norms)."""
        return self.device.startswith("cuda") if self.vae_fused_norms is None else self.vae_fused_norms

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
            preset=env_str("INFINITETALK_PRESET", DEFAULT_PRESET).strip().lower(),
            lora_path=Path(lora) if lora else None,
            lora_scale=env_float("LORA_SCALE", 1.0),
            device=env_str("DEVICE", "cuda" if torch.cuda.is_available() else "cpu"),
            dtype=env_str("DTYPE", ""),
            block_offload=env_bool("BLOCK_OFFLOAD", False),
            attention=env_str("ATTENTION_BACKEND", "auto"),
            compile=env_str("INFINITETALK_COMPILE", "").strip().lower(),
            clip_frames=env_int("INFINITETALK_CLIP_FRAMES", CLIP_FRAMES, minimum=5),
            size=parse_size(size) if size else None,
            color_correction_strength=env_float("COLOR_CORRECTION_STRENGTH", 1.0, minimum=0.0),
            text_encoder_device=env_str("TEXT_ENCODER_DEVICE", ""),
            dit_path=Path(dit_path) if (dit_path := env_str("DIT_PATH", "")) else None,
            fp8_activation_scaling=env_str("FP8_ACTIVATION_SCALING", "token").strip().lower(),
            fp8_attention=env_str("FP8_ATTENTION", "auto").strip().lower(),
            vae_dtype=env_str("VAE_DTYPE", "fp32").strip().lower(),
            vae_tiling=env_bool("VAE_TILING", False),
            vae_fused_norms=env_bool("VAE_FUSED_NORMS", False) if env_str("VAE_FUSED_NORMS", "").strip() else None,
            vae_time_chunk=env_int("VAE_TIME_CHUNK", 1, minimum=1),
            guidance_batch=env_bool("GUIDANCE_BATCH", False),
            parallel_devices=env_int("PARALLEL_DEVICES", 1, minimum=1),
            parallel_mode=env_str("PARALLEL_MODE", "auto").strip().lower(),
            offload_idle_sec=env_float("OFFLOAD_IDLE_SEC", 0.0, minimum=0.0),
            warmup_buckets=parse_warmup(env_str("INFINITETALK_WARMUP_BUCKETS", "")),
            adapters=tuple(kind.strip().lower() for kind in env_str("INFINITETALK_ADAPTERS", "").split(",")
                           if kind.strip()),
        )


def parse_warmup(text: str) -> tuple[str, ...] | None:
    """INFINITETALK_WARMUP_BUCKETS: "" = the device's default, "off" = none, else the list."""
    if not text.strip():
        return None
    if text.strip().lower() in ("off", "none", "0"):
        return ()
    return tuple(part.strip() for part in text.split(",") if part.strip())


def parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError as err:
        raise ConfigError(f"INFINITETALK_SIZE must look like 832x480, got {text!r}") from err
    return width, height
