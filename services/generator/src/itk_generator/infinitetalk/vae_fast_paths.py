"""Two ways to run the Wan2.1 VAE (diffusers' AutoencoderKLWan) with less memory traffic and
fewer, larger kernels, each giving the same values as the model's own code up to rounding.

Fused norms. Every RMS norm in the VAE upcasts its input to fp32, normalizes, rounds back,
multiplies by the scale and by gamma, and is then followed by a SiLU: six passes over the tensor,
three of them in fp32. At the full-resolution stages of a decode (96 channels x 4 frames x 480 x
832 per latent frame) that is memory traffic, not arithmetic. `fuse_norms` swaps each norm and the
SiLU after it for one function computed in fp32 and rounded once, compiled by torch.compile on a
GPU into one kernel (with dynamic shapes, so the stages' sizes share a graph).

Time chunks. diffusers decodes one latent frame per decoder call (4 video frames), and encodes 4
video frames per encoder call, carrying the causal convolutions' last frames in a cache. A causal
convolution over frames [a, b) with the cache of the frames before a gives the same result as
over each frame in turn, and the encoder's stride-2 temporal convolutions see the same windows
for any run of 4k frames (each keeps one frame of cache), so `decode_in_time_chunks` and
`encode_in_time_chunks` hand the model `time_chunk` latent frames' worth per call after the first
(which stays alone: the first latent frame is one video frame, the temporal resamplers start from
it). Fewer calls launch fewer, larger kernels on the small low-resolution stages.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKLWan
from torch import nn
from torch._dynamo.exc import TorchDynamoException
from torch._inductor.exc import InductorError

log = logging.getLogger(__name__)

# Modules whose `nonlinearity` (a SiLU) follows each of the norms named here and nothing else.
_NORMS_BEFORE_SILU = {"WanResidualBlock": ("norm1", "norm2"), "WanEncoder3d": ("norm_out",),
                      "WanDecoder3d": ("norm_out",)}
_NORMS_ALONE = {"WanAttentionBlock": ("norm",)}


def rms_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, silu: bool) -> torch.Tensor:
    """x / ||x|| over the channels (dim 1) x weight (+ bias) (then SiLU), in fp32, rounded once to x's dtype.

    `weight` is the norm's gamma times its scale (sqrt of the channel count), kept in fp32.
    """
    y = F.normalize(x.float(), dim=1) * weight
    if bias is not None:
        y = y + bias
    if silu:
        y = F.silu(y)
    return y.to(x.dtype)


_compiled: Callable[..., torch.Tensor] | None = None
_compile_failed = False
# One graph per input rank, layout (contiguous, channels-last, the resamplers' permuted views),
# size-1 dimension and dtype the norms meet: 6 in a channels-last decode and encode, up to about a
# dozen with other layouts or dtypes in one process, above torch.compile's default of 8 per
# function, after which it would raise (fullgraph).
NORM_GRAPHS = 48


def compiled_rms_norm() -> Callable[..., torch.Tensor]:
    """`rms_norm` through torch.compile, built once per process; its graphs are shared by every norm.

    The recompile limit is raised here, once, for the whole process (a per-call config patch
    costs about 0.1 ms on each of a decode's hundreds of norm calls); it only lets a function
    that would otherwise fall back to eager compile more graphs."""
    global _compiled
    if _compiled is None:
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, NORM_GRAPHS)
        _compiled = torch.compile(rms_norm, dynamic=True, fullgraph=True)
    return _compiled


class FusedRMSNorm(nn.Module):
    """One of the VAE's WanRMS_norm layers, with the SiLU that follows it where `silu`."""

    def __init__(self, norm: nn.Module, silu: bool, compiled: bool) -> None:
        super().__init__()
        if not norm.channel_first:
            raise ValueError("only the VAE's channel-first norms can be fused")
        # Buffers, not parameters: they are derived from the original gamma, which this replaces.
        # Made from the model in its final dtype, gamma x scale is exact in fp32; the product is
        # taken in fp32 whatever dtype a later cast gives the buffer.
        self.register_buffer("weight", (norm.gamma.detach().float() * norm.scale).clone())
        bias = norm.bias
        self.register_buffer("bias", bias.detach().float().clone() if isinstance(bias, torch.Tensor) else None)
        self.silu = silu
        self.compiled = compiled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        global _compile_failed
        if not self.compiled or _compile_failed:
            return rms_norm(x, self.weight, self.bias, self.silu)
        try:
            return compiled_rms_norm()(x, self.weight, self.bias, self.silu)
        except (TorchDynamoException, InductorError) as exc:
            # The same values without the compiler: slower, never wrong. Said once, in the log.
            _compile_failed = True
            log.warning("VAE_FUSED_NORMS: torch.compile failed (%s); the fused norms run uncompiled",
                        str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__)
            return rms_norm(x, self.weight, self.bias, self.silu)


def fuse_norms(model: AutoencoderKLWan, compiled: bool) -> int:
    """Replace the VAE's norms (and the SiLU after each) with `FusedRMSNorm`s; the number replaced."""
    replaced = 0
    for module in model.modules():
        kind = type(module).__name__
        if kind in _NORMS_BEFORE_SILU:
            if not isinstance(getattr(module, "nonlinearity", None), nn.SiLU):
                continue  # another activation: leave this module as it is
            for name in _NORMS_BEFORE_SILU[kind]:
                setattr(module, name, FusedRMSNorm(getattr(module, name), silu=True, compiled=compiled))
                replaced += 1
            module.nonlinearity = nn.Identity()
        elif kind in _NORMS_ALONE:
            for name in _NORMS_ALONE[kind]:
                setattr(module, name, FusedRMSNorm(getattr(module, name), silu=False, compiled=compiled))
                replaced += 1
    return replaced


def time_spans(frames: int, per_call: int) -> list[tuple[int, int]]:
    """[start, end) of each call over `frames`: the first frame alone, then `per_call` frames at a time."""
    if per_call < 1:
        raise ValueError(f"frames per call must be at least 1, got {per_call}")
    return [(0, 1), *((start, min(start + per_call, frames)) for start in range(1, frames, per_call))]


def decode_in_time_chunks(model: AutoencoderKLWan, z: torch.Tensor, time_chunk: int) -> torch.Tensor:
    """AutoencoderKLWan.decode's loop with `time_chunk` latent frames per decoder call after the first.

    z: unnormalized latents [B, z_dim, t, h, w]; returns the video [B, 3, 1 + 4(t-1), 8h, 8w]
    clamped to [-1, 1]. Uses the model's own feature cache, as its decode does.
    """
    model.clear_cache()
    try:
        x = model.post_quant_conv(z)
        parts = []
        for index, (start, end) in enumerate(time_spans(z.shape[2], time_chunk)):
            model._conv_idx = [0]
            parts.append(model.decoder(x[:, :, start:end], feat_cache=model._feat_map,
                                       feat_idx=model._conv_idx, first_chunk=index == 0))
        return torch.cat(parts, 2).clamp_(-1.0, 1.0)
    finally:
        model.clear_cache()


def encode_in_time_chunks(model: AutoencoderKLWan, x: torch.Tensor, time_chunk: int) -> torch.Tensor:
    """AutoencoderKLWan's encode loop with 4 x `time_chunk` video frames per encoder call after the first.

    x: video [B, 3, 1 + 4n, H, W]; returns the encoder's moments [B, 2 z_dim, 1 + n, H/8, W/8]
    (mean, then log-variance), as `model.encode(x).latent_dist.parameters`.
    """
    frames = x.shape[2]
    if (frames - 1) % 4:
        raise ValueError(f"the Wan VAE encodes 1 + 4n frames, got {frames}")
    model.clear_cache()
    try:
        parts = []
        for start, end in time_spans(frames, 4 * time_chunk):
            model._enc_conv_idx = [0]
            parts.append(model.encoder(x[:, :, start:end], feat_cache=model._enc_feat_map,
                                       feat_idx=model._enc_conv_idx))
        return model.quant_conv(torch.cat(parts, 2))
    finally:
        model.clear_cache()
