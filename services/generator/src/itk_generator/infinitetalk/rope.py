"""3-axis rotary position embedding (time, height, width) in fp32 real arithmetic.

Wan splits each head's channel pairs into three groups, one per axis: for head_dim d the
pair counts are c - 2*(c//3), c//3, c//3 with c = d/2 (22, 21, 21 for d = 128). Channels are
paired as (2i, 2i+1). Rotating a pair by angle a is the complex product (x0 + i x1) e^{ia};
here it is written with cos/sin tables so it runs on the GPU in the activations' device,
without complex or float64 tensors.
"""

from __future__ import annotations

import torch


def axis_pair_counts(head_dim: int) -> tuple[int, int, int]:
    pairs = head_dim // 2
    return pairs - 2 * (pairs // 3), pairs // 3, pairs // 3


def _axis_angles(positions: int, pairs: int, theta: float, device: torch.device) -> torch.Tensor:
    """Angles [positions, pairs]: position * theta^(-2i / (2 * pairs))."""
    exponents = torch.arange(0, 2 * pairs, 2, dtype=torch.float64, device=device) / (2 * pairs)
    inverse_frequencies = (1.0 / theta**exponents).to(torch.float32)
    steps = torch.arange(positions, dtype=torch.float32, device=device)
    return torch.outer(steps, inverse_frequencies)


def rope_cos_sin(grid: tuple[int, int, int], head_dim: int, theta: float = 10000.0,
                 device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables [f*h*w, head_dim/2] for tokens laid out in (frame, row, column) order."""
    frames, rows, cols = grid
    device = torch.device(device)
    pair_t, pair_h, pair_w = axis_pair_counts(head_dim)
    angles = torch.cat([
        _axis_angles(frames, pair_t, theta, device)[:, None, None, :].expand(frames, rows, cols, pair_t),
        _axis_angles(rows, pair_h, theta, device)[None, :, None, :].expand(frames, rows, cols, pair_h),
        _axis_angles(cols, pair_w, theta, device)[None, None, :, :].expand(frames, rows, cols, pair_w),
    ], dim=-1).reshape(frames * rows * cols, head_dim // 2)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [B, L, heads, head_dim] by the tables [L, head_dim/2] (fp32); result in x's dtype.

    even' = even*cos - odd*sin, odd' = odd*cos + even*sin, computed in fp32 (type promotion by
    the fp32 tables) and written straight into x's dtype.
    """
    pairs = x.unflatten(-1, (-1, 2))
    even, odd = pairs[..., 0], pairs[..., 1]
    cos = cos[None, :, None, :]
    sin = sin[None, :, None, :]
    out = torch.empty_like(pairs)
    torch.addcmul(even * cos, odd, -sin, out=out[..., 0])
    torch.addcmul(odd * cos, even, sin, out=out[..., 1])
    return out.flatten(-2)
