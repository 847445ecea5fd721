"""Attention kernel choice: torch's scaled_dot_product_attention, or flash-attn when installed.

Every caller passes q, k, v as [batch, tokens, heads, head_dim] (the layout the projections
produce), so switching kernels changes nothing else in the model.

Backends:
- "sdpa": torch SDPA, letting torch pick its kernel;
- "sdpa-cudnn" / "sdpa-flash": torch SDPA restricted to its cuDNN or FlashAttention-2 kernel
  (on CUDA; elsewhere plain SDPA);
- "flash-attn" (alias "flash"): the flash-attn package (the `flash` extra);
- "auto": flash-attn when installed, else "sdpa".

Independently of the backend, the video self-attention (the 32,760-token one that dominates the
forward) can run in FP8 (`fp8_self_attention`, see fp8_attention.py); the cross-attentions, with
their short key sequences, stay in 16 bits.
"""

from __future__ import annotations

import contextlib
import importlib.util
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

if TYPE_CHECKING:
    from .fp8_attention import AmaxReducer
    from .speakers import SpeakerRegions

BACKENDS = ("auto", "sdpa", "sdpa-cudnn", "sdpa-flash", "flash-attn", "flash")
_SDPA_RESTRICTIONS = {"sdpa-cudnn": SDPBackend.CUDNN_ATTENTION, "sdpa-flash": SDPBackend.FLASH_ATTENTION}


def flash_attn_available() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


class Attention:
    """The kernel every attention layer of one model calls; `select` switches it."""

    def __init__(self, backend: str = "auto", fp8_self_attention: bool = False) -> None:
        self.select(backend)
        self.fp8_self_attention = fp8_self_attention

    def select(self, backend: str) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"attention backend must be one of {BACKENDS}, got {backend!r}")
        if backend in ("flash", "flash-attn") and not flash_attn_available():
            raise ValueError(f"attention backend {backend!r} needs the flash-attn package (the 'flash' extra)")
        self.backend = backend
        self.use_flash_attn = backend in ("flash", "flash-attn") or (backend == "auto" and flash_attn_available())
        self.sdpa_restriction = _SDPA_RESTRICTIONS.get(backend)
        self._flash_attn_func = None

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        half = q.dtype in (torch.float16, torch.bfloat16)
        if self.use_flash_attn and q.is_cuda and half:  # pragma: no cover - needs a CUDA build of flash-attn
            if self._flash_attn_func is None:
                from flash_attn import flash_attn_func

                self._flash_attn_func = flash_attn_func
            return self._flash_attn_func(q, k, v)
        restricted = self.sdpa_restriction is not None and q.is_cuda and half
        with sdpa_kernel(self.sdpa_restriction) if restricted else contextlib.nullcontext():
            out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return out.transpose(1, 2)

    def reference_map(self, q: torch.Tensor, k: torch.Tensor, regions: SpeakerRegions) -> torch.Tensor:
        """The self-attention's reference attention map [B, L, persons + 1] (speakers.py), on this kernel."""
        from .speakers import reference_attention_map

        return reference_attention_map(self, q, k, regions)

    def self_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                       reduce_amax: AmaxReducer | None = None) -> torch.Tensor:
        """The video tokens' self-attention: FP8 when enabled, else the selected kernel.

        `reduce_amax` comes from sequence parallelism, where this device holds some of the heads:
        FP8 takes its per-tensor scales from the whole tensors through it (16-bit kernels need none)."""
        if self.fp8_self_attention:
            from .fp8_attention import fp8_attention

            return fp8_attention(q, k, v, reduce_amax)
        return self(q, k, v)
