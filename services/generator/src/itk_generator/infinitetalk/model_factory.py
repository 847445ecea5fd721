"""The InfiniteTalk model factory: every model of the pipeline built from the settings once.

The DiT's precision decisions live here: FP8 linears where DTYPE=fp8 and the GPU has FP8 tensor
cores (LoRAs merged first, then quantized on the device), cuDNN FP8 self-attention where it runs
(FP8_ATTENTION), block offload or resident, compiled elementwise or by blocks; with both
InfiniteTalk adapters, the second one kept next to the first (same precision and placement). A multi-GPU
generator checks its layout here before any process starts; each of its ranks builds its own DiT
with `build_dit`.
"""

from __future__ import annotations

import logging

import torch

from ..backend import BackendError
from .attention import Attention
from .config import DiTConfig
from .dit import (
    ADAPTERS,
    MULTI,
    SINGLE,
    InfiniteTalkDiT,
    compile_blocks,
    compile_elementwise,
    fp8_layer_names,
    load_strict,
    use_fp8_linears,
)
from .fp8 import FP8UnavailableError, quantize_state, require_fp8
from .parallel import LayoutError, choose_layout
from .parallel.layout import BRANCH_COUNTS
from .pipeline import InfiniteTalkPipeline
from .settings import VAE_DTYPES, InfiniteTalkSettings

log = logging.getLogger(__name__)


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


# The person counts each adapter renders.
ADAPTER_PERSON_COUNTS = {SINGLE: 1, MULTI: 2}


def resolve_adapters(settings: InfiniteTalkSettings) -> tuple[str, ...]:
    """The adapters to load: INFINITETALK_ADAPTERS, each of which must be in the model directory,
    or every one found there; in ADAPTERS order (the first is active after loading)."""
    from .download import ADAPTERS as ADAPTER_FILES
    from .weights import ModelPaths, WeightsError

    try:
        present = ModelPaths.from_root(settings.model_dir).adapters
    except WeightsError as err:
        raise BackendError(str(err)) from err
    if not settings.adapters:
        return tuple(kind for kind in ADAPTERS if kind in present)
    missing = [kind for kind in settings.adapters if kind not in present]
    if missing:
        commands = "; ".join(ADAPTER_FILES[kind].command(settings.model_dir) for kind in missing)
        raise BackendError(f"INFINITETALK_ADAPTERS names the {', '.join(missing)}-person adapter, which "
                           f"{settings.model_dir} lacks (fetch it: {commands})")
    return tuple(kind for kind in ADAPTERS if kind in settings.adapters)


def person_counts(adapters: tuple[str, ...]) -> tuple[int, ...]:
    return tuple(sorted({ADAPTER_PERSON_COUNTS[kind] for kind in adapters}))


def build_dit(settings: InfiniteTalkSettings, device: torch.device) -> InfiniteTalkDiT:
    """The DiT (+ adapter, + LoRA) on `device`, in FP8 where asked, offloaded and compiled as the
    settings say. Every rank of a multi-GPU generator builds its own."""
    from .weights import ModelPaths, WeightsError, load_adapter_state, load_dit_state_dict

    adapters = resolve_adapters(settings)
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
                                    dit_file=settings.dit_path, keep_fp8=fp8, adapter=adapters[0])
        with torch.device("meta"):
            dit = InfiniteTalkDiT(config, Attention(settings.attention, fp8_self_attention=fp8_attention),
                                  adapter=adapters[0])
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
    for kind in adapters[1:]:
        try:
            spare = load_adapter_state(paths, kind, loras, dtype=dtype, device=device)
            if fp8:
                quantize_state(spare, [name for name in fp8_layer_names(config) if f"{name}.weight" in spare], device)
            dit.keep_spare_adapter(kind, spare)
        except (WeightsError, ValueError, KeyError) as err:
            raise BackendError(f"cannot load the {kind}-person InfiniteTalk adapter: {err}") from err
    if settings.compile_mode == "elementwise":
        compile_elementwise()
    elif settings.compile_mode == "blocks":
        compile_blocks(dit)
    log.info("InfiniteTalk DiT loaded on %s (%s, offload=%s, FP8 self-attention=%s, adapters %s)", device,
             "fp8 linears" if fp8 else dtype, settings.block_offload, fp8_attention, ", ".join(adapters))
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
    vae = WanVAE.load(paths.vae, device, VAE_DTYPES[settings.vae_dtype],
                      fused_norms=settings.fused_vae_norms, time_chunk=settings.vae_time_chunk)
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


def pipeline_modules(pipeline: InfiniteTalkPipeline) -> list[torch.nn.Module]:
    """The torch modules holding the pipeline's weights (what idle offload moves)."""
    modules = []
    for part in (pipeline.dit, pipeline.vae, pipeline.clip, pipeline.text_encoder, pipeline.audio_encoder):
        if isinstance(part, torch.nn.Module):
            modules.append(part)
        else:  # wrappers keep their network as an attribute
            modules.extend(value for value in vars(part).values() if isinstance(value, torch.nn.Module))
    return modules


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
