"""FP8 (e4m3) linear layers for the DiT's projections and FFNs.

Scales, chosen for accuracy:
- weights: one scale per output channel (the row's absolute maximum maps to 448, e4m3's
  largest value), so a channel with small weights keeps its precision next to a large one;
- activations: one scale per token (row), computed on the fly, so a token with an outlier
  does not flatten every other token; `per-tensor` is the cheaper alternative the bench measures.

On a GPU with FP8 tensor cores (compute capability 8.9+: Ada, Hopper, Blackwell) the product is
`torch._scaled_mm` with row-wise scales: e4m3 operands, fp32 accumulation, bf16 output, the
scales applied in the GEMM's epilogue. Everywhere else the same quantization runs through a
reference implementation (the e4m3 values decoded to fp32 and multiplied in fp32), so CPU
tests exercise the identical rounding of weights and activations.

State-dict layout: `<name>.weight` (float8_e4m3fn, [out, in]), `<name>.weight_scale` (fp32,
[out, 1]: weight ~= weight_fp8 * weight_scale) and `<name>.bias`. That is the layout of
LightX2V's `scaled_fp8_e4m3` checkpoints, which therefore load without re-quantizing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = float(torch.finfo(FP8_DTYPE).max)  # 448
# Smallest amax a scale is computed from: an all-zero row then quantizes to zeros, not NaNs.
_AMAX_FLOOR = 1e-12
ACTIVATION_SCALINGS = ("token", "tensor")
FP8_MIN_CAPABILITY = (8, 9)


class FP8UnavailableError(RuntimeError):
    """The device cannot run FP8 matrix products."""


def fp8_supported(device: torch.device | str) -> bool:
    """True where torch._scaled_mm runs: CUDA devices of compute capability 8.9 or newer."""
    device = torch.device(device)
    if device.type != "cuda":
        return False
    return torch.cuda.get_device_capability(device) >= FP8_MIN_CAPABILITY


def require_fp8(device: torch.device | str, setting: str = "DTYPE=fp8") -> None:
    """Fail at start-up, naming the setting, on a CUDA device without FP8 tensor cores.

    The CPU is accepted: there the reference implementation runs (slow, for tests)."""
    device = torch.device(device)
    if device.type == "cpu":
        return
    if device.type != "cuda":
        raise FP8UnavailableError(f"{setting} needs a CUDA GPU with FP8 tensor cores or the CPU, got {device}")
    if not fp8_supported(device):
        name = torch.cuda.get_device_name(device)
        major, minor = torch.cuda.get_device_capability(device)
        raise FP8UnavailableError(
            f"{setting} needs a GPU with FP8 tensor cores (compute capability 8.9 or newer: Ada, Hopper, "
            f"Blackwell); {device} is a {name} ({major}.{minor}). Use DTYPE=bf16 on this GPU.")


def _scale_for(amax: torch.Tensor) -> torch.Tensor:
    """The dequantization scale (x ~= x_fp8 * scale) that maps amax to e4m3's largest value."""
    return amax.float().clamp_min(_AMAX_FLOOR) / FP8_MAX


def quantize_per_row(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[..., K] -> e4m3 values [..., K] and fp32 scales [..., 1], one per row (token or output channel)."""
    scale = _scale_for(x.abs().amax(dim=-1, keepdim=True))
    return (x.float() / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE), scale


def quantize_per_tensor(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x -> e4m3 values and one fp32 scale (shape [1, 1]) for the whole tensor."""
    scale = _scale_for(x.abs().amax()).reshape(1, 1)
    return (x.float() / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE), scale


def dequantize(values: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return (values.float() * scale.float()).to(dtype)


# The activation quantizers the layers call; compile_quantizers() swaps in fused versions.
_quantizers: dict[str, Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]] = {
    "token": quantize_per_row, "tensor": quantize_per_tensor}


def compile_quantizers() -> None:
    """torch.compile the activation quantizers: amax, divide and cast become one or two kernels."""
    _quantizers["token"] = torch.compile(quantize_per_row, dynamic=False)
    _quantizers["tensor"] = torch.compile(quantize_per_tensor, dynamic=False)


def scaled_matmul(x_fp8: torch.Tensor, x_scale: torch.Tensor, weight_fp8: torch.Tensor,
                  weight_scale: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:
    """x_fp8 [M, K] (scales [M, 1] or [1, 1]) @ weight_fp8 [N, K]^T (scales [N, 1]) -> [M, N] in out_dtype."""
    if x_fp8.is_cuda:
        x_scale = x_scale.expand(x_fp8.shape[0], 1).contiguous() if x_scale.shape[0] == 1 else x_scale
        # Row-wise scaling: A's scales [M, 1], B's [1, N]; B must be column-major, which the
        # transpose of the row-major [N, K] weight is.
        return torch._scaled_mm(x_fp8, weight_fp8.t(), scale_a=x_scale, scale_b=weight_scale.view(1, -1),
                                out_dtype=out_dtype)
    # Reference: the same e4m3 values and scales, multiplied exactly in fp32.
    product = (x_fp8.float() @ weight_fp8.float().t()) * x_scale.float() * weight_scale.view(1, -1).float()
    return product.to(out_dtype)


class FP8Linear(nn.Module):
    """A Linear whose weight is stored in e4m3 with per-output-channel scales."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 activation_scaling: str = "token", device: torch.device | str | None = None,
                 bias_dtype: torch.dtype = torch.bfloat16) -> None:
        super().__init__()
        if activation_scaling not in ACTIVATION_SCALINGS:
            raise ValueError(f"activation scaling must be one of {ACTIVATION_SCALINGS}, got {activation_scaling!r}")
        if in_features % 16 or out_features % 16:
            raise ValueError(f"FP8 GEMMs need sizes that are multiples of 16, got {in_features}x{out_features}")
        self.in_features, self.out_features = in_features, out_features
        self.activation_scaling = activation_scaling
        self.weight = nn.Parameter(torch.empty(out_features, in_features, dtype=FP8_DTYPE, device=device),
                                   requires_grad=False)
        self.weight_scale = nn.Parameter(torch.ones(out_features, 1, dtype=torch.float32, device=device),
                                         requires_grad=False)
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=bias_dtype, device=device),
                                 requires_grad=False) if bias else None

    @classmethod
    def from_linear(cls, layer: nn.Linear, activation_scaling: str = "token") -> FP8Linear:
        """Quantize a Linear's weight (per output channel); the bias keeps its dtype."""
        weight = layer.weight.detach()
        fp8 = cls(layer.in_features, layer.out_features, layer.bias is not None, activation_scaling,
                  device=weight.device,
                  bias_dtype=layer.bias.dtype if layer.bias is not None else torch.bfloat16)
        if weight.device.type != "meta":
            values, scale = quantize_per_row(weight)
            fp8.weight.data, fp8.weight_scale.data = values, scale
            if layer.bias is not None:
                fp8.bias.data = layer.bias.detach().clone()
        return fp8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out_dtype = x.dtype if x.dtype in (torch.bfloat16, torch.float16, torch.float32) else torch.bfloat16
        if x.is_cuda and out_dtype == torch.float32:
            out_dtype = torch.bfloat16  # the FP8 GEMM writes 16-bit outputs; the model runs in bf16 anyway
        rows = x.reshape(-1, x.shape[-1])
        x_fp8, x_scale = _quantizers[self.activation_scaling](rows)
        out = scaled_matmul(x_fp8, x_scale, self.weight, self.weight_scale, out_dtype)
        if self.bias is not None:
            out = out + self.bias.to(out.dtype)
        return out.reshape(*x.shape[:-1], self.out_features)

    def dequantized_weight(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return dequantize(self.weight, self.weight_scale, dtype)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, weights=e4m3 per channel, "
                f"activations=e4m3 per {self.activation_scaling}")


def is_fp8_state(state: dict[str, torch.Tensor]) -> bool:
    """True for a state dict holding pre-quantized weights (`*.weight_scale` next to e4m3 `*.weight`)."""
    return any(name.endswith(".weight_scale") for name in state)


def dequantize_state(state: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """A pre-quantized state dict in plain tensors of `dtype` (for bf16 runs and for LoRA merges)."""
    plain: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if name.endswith(".weight_scale"):
            continue
        scale = state.get(name + "_scale") if name.endswith(".weight") else None
        if scale is not None:
            plain[name] = dequantize(tensor, scale.reshape(-1, 1), dtype)
        elif tensor.dtype == FP8_DTYPE:
            raise ValueError(f"{name} is stored in FP8 without a {name}_scale tensor")
        else:
            plain[name] = tensor
    return plain


def quantize_state(state: dict[str, torch.Tensor], layer_names: Iterable[str],
                   device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Give every named layer an e4m3 `weight` and a `weight_scale`, in place.

    Layers already quantized (a published FP8 checkpoint) keep their values and scales (the scale
    reshaped to [out, 1]); bf16/fp32 weights are quantized per output channel on `device`, which
    is much faster on a GPU than on the CPU, and stay there. Pre-quantized layers that are not
    named (a checkpoint that quantized more layers than this model runs in FP8) are dequantized
    to bf16."""
    layer_names = list(layer_names)
    wanted = {f"{layer}.weight_scale" for layer in layer_names}
    for scale_name in [name for name in state if name.endswith(".weight_scale") and name not in wanted]:
        weight_name = scale_name.removesuffix("_scale")
        state[weight_name] = dequantize(state[weight_name], state.pop(scale_name).reshape(-1, 1), torch.bfloat16)
    for layer in layer_names:
        weight_name, scale_name = f"{layer}.weight", f"{layer}.weight_scale"
        weight = state[weight_name]
        if scale_name in state:
            if weight.dtype != FP8_DTYPE:
                raise ValueError(f"{weight_name} has a weight_scale but is stored as {weight.dtype}, not e4m3")
            state[scale_name] = state[scale_name].float().reshape(-1, 1)
            continue
        values, scale = quantize_per_row(weight.to(device))
        state[weight_name], state[scale_name] = values, scale
    return state




def swap_in_fp8_linears(model: nn.Module, layer_names: Iterable[str], activation_scaling: str = "token") -> None:
    """Replace the named nn.Linear submodules by FP8Linear (quantizing any real weights they hold).

    On a model built on the meta device the new layers are empty, ready for a state dict that
    `quantize_state` prepared."""
    for name in layer_names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        layer = getattr(parent, child) if not child.isdigit() else parent[int(child)]
        if not isinstance(layer, nn.Linear):
            raise TypeError(f"{name} is a {type(layer).__name__}, not a Linear")
        replacement = FP8Linear.from_linear(layer, activation_scaling)
        if child.isdigit():
            parent[int(child)] = replacement
        else:
            setattr(parent, child, replacement)


__all__ = [
    "ACTIVATION_SCALINGS",
    "FP8_DTYPE",
    "FP8_MAX",
    "FP8Linear",
    "FP8UnavailableError",
    "compile_quantizers",
    "dequantize",
    "dequantize_state",
    "fp8_supported",
    "is_fp8_state",
    "quantize_per_row",
    "quantize_per_tensor",
    "quantize_state",
    "require_fp8",
    "scaled_matmul",
    "swap_in_fp8_linears",
]
