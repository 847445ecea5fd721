"""Attention kernel choice: torch's scaled_dot_product_attention, or flash-attn when installed.

Every caller passes q, k, v as [batch, tokens, heads, head_dim] (the layout the projections
produce), so switching kernels changes nothing else in the model.
"""

from __future__ import annotations

import importlib.util

import torch
import torch.nn.functional as F

BACKENDS = ("auto", "sdpa", "flash")

_flash_attn_func = None


def flash_attn_available() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def _flash_func():  # pragma: no cover - needs a CUDA build of flash-attn
    global _flash_attn_func
    if _flash_attn_func is None:
        from flash_attn import flash_attn_func

        _flash_attn_func = flash_attn_func
    return _flash_attn_func


class Attention:
    """Picks the kernel once; `backend` is "sdpa", "flash" or "auto" (flash when installed)."""

    def __init__(self, backend: str = "auto") -> None:
        if backend not in BACKENDS:
            raise ValueError(f"attention backend must be one of {BACKENDS}, got {backend!r}")
        if backend == "flash" and not flash_attn_available():
            raise ValueError("attention backend 'flash' needs the flash-attn package (the 'flash' extra)")
        self.use_flash = backend == "flash" or (backend == "auto" and flash_attn_available())

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.use_flash and q.is_cuda and q.dtype in (torch.float16, torch.bfloat16):  # pragma: no cover
            return _flash_func()(q, k, v)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return out.transpose(1, 2)
