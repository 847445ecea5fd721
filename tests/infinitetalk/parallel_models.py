"""A tiny DiT with 8 attention heads (so up to 8 devices can split its tokens), built the same on
every rank, and one clip's random conditioning for it. Imported by spawned ranks too."""

from __future__ import annotations

import torch

from itk_generator.infinitetalk.config import DiTConfig
from itk_generator.infinitetalk.denoiser import ClipConditioning, ClipDenoising
from itk_generator.infinitetalk.dit import MULTI, InfiniteTalkDiT
from itk_generator.infinitetalk.offload import enable_block_offload
from itk_generator.infinitetalk.person_regions import generated_person_masks, latent_masks
from itk_generator.infinitetalk.sampling import SamplingPlan

EIGHT_HEADS = DiTConfig(
    dim=64, ffn_dim=96, freq_dim=32, num_heads=8, num_layers=2, text_len=16, text_dim=24, clip_dim=40,
    audio_layers=3, audio_channels=8, audio_intermediate_dim=32, audio_output_dim=24, audio_context_tokens=4,
)
# 6 latent frames of 4 x 6 latents: 6 tokens a frame, 36 tokens, which 8 devices split 5,5,5,5,4,4,4,4
# (runs that start and end inside frames) and 3 devices split 12 each.
LATENT_GRID = (6, 4, 6)


def build_eight_head_dit(device: torch.device, adapter: str = "single") -> InfiniteTalkDiT:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = InfiniteTalkDiT(EIGHT_HEADS, adapter=adapter)
    return model.eval().requires_grad_(False).to(device)


def build_eight_head_multi_person_dit(device: torch.device) -> InfiniteTalkDiT:
    """The same DiT holding the multi-person adapter (for two-person clips)."""
    return build_eight_head_dit(device, MULTI)


def build_eight_head_dit_fp8_attention(device: torch.device) -> InfiniteTalkDiT:
    """The same DiT with its self-attention through FP8 (DTYPE=fp8's attention; the CPU reference kernel)."""
    model = build_eight_head_dit(device)
    model.attention.fp8_self_attention = True
    return model


def build_eight_head_dit_offloaded(device: torch.device) -> InfiniteTalkDiT:
    """The same DiT with its blocks streamed through two copies (BLOCK_OFFLOAD's path, run on the CPU)."""
    model = build_eight_head_dit(device)
    enable_block_offload(model, device)
    return model


def dit_that_fails_to_load(device: torch.device) -> InfiniteTalkDiT:
    raise RuntimeError("model file missing: /models/dit.safetensors")


def clip_denoising(plan: SamplingPlan, seed: int = 0, batch_guidance: bool = False, persons: int = 1
                   ) -> ClipDenoising:
    """One clip's random conditioning; with two persons, their tracks and the default split of the frame."""
    frames, height, width = LATENT_GRID
    config = EIGHT_HEADS
    g = torch.Generator().manual_seed(seed)
    audio_shape = (1 + 4 * (frames - 1), 5, config.audio_layers, config.audio_channels)
    masks = None
    if persons > 1:
        masks = latent_masks(generated_person_masks([None] * persons, height * 8, width * 8, height * 8, width * 8),
                             height, width)
    conditioning = ClipConditioning(
        text=torch.randn(1, config.text_len, config.text_dim, generator=g),
        negative=torch.randn(1, config.text_len, config.text_dim, generator=g),
        clip_features=torch.randn(1, 257, config.clip_dim, generator=g),
        condition=torch.randn(1, 20, frames, height, width, generator=g),
        audio=torch.randn(1, *([persons] if persons > 1 else []), *audio_shape, generator=g),
        person_masks=masks,
    )
    noise = torch.randn(config.out_dim, frames, height, width, generator=g)
    motion = torch.randn(config.out_dim, 1, height, width, generator=g)
    return ClipDenoising(conditioning, noise, motion, plan, (1e-3, 0.0, 0.0, 0.5, 0.0) if plan.teacache else None,
                         batch_guidance)
