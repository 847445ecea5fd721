"""FP8 self-attention: cuDNN's FP8 fused attention (the `nvidia-cudnn-frontend` package) on Hopper
and newer GPUs, and a reference implementation of the same arithmetic everywhere else.

q, k and v are quantized to e4m3 with one scale per tensor (amax / 448, computed on the device,
so no host synchronisation). Inside the kernel S = q k^T is accumulated in fp32, the softmax's
numerator P~ = exp(S - rowmax) (so 0 < P~ <= 1) is rounded to e4m3 with the fixed scale 256
before the P~ v product. On Blackwell the output is written in bf16; on Hopper cuDNN writes it
in e4m3 only (measured: "sdpa fp8 forward with HALF/BFLOAT16 output is only supported on
Blackwell"), with v's scale: every output row is a convex combination of v's rows, so |o| <=
max|v| and o / v_scale fits e4m3's range exactly; it is decoded to bf16 right after (fused into
the next kernels when compiled). So the fp8 roundings of q, k, v, P~ and (on Hopper) o are all
that differs from bf16 attention.

The cuDNN call is registered as a torch custom op, so `torch.compile` of a whole block treats it
as one opaque kernel (no graph break) and fuses the quantization of q, k and v into the RoPE /
RMSNorm kernels before it.
"""

from __future__ import annotations

import importlib.util
import math
import threading
from collections.abc import Callable

import torch

from .fp8 import FP8_DTYPE, FP8_MAX

# P~ lies in (0, 1]; 256 maps 1 to a power of two below e4m3's maximum (448).
SOFTMAX_SCALE = 256.0
_MIN_CUDNN_BACKEND = 91400  # cuDNN 9.14: the first release with this FP8 forward graph on Hopper

# Maps this device's amaxes of q, k and v to those of the whole tensors (see fp8_attention).
AmaxReducer = Callable[[torch.Tensor], torch.Tensor]


class FP8AttentionUnavailableError(RuntimeError):
    """cuDNN's FP8 attention cannot run here (package, library version or GPU)."""


def cudnn_frontend_installed() -> bool:
    return importlib.util.find_spec("cudnn") is not None


def check_cudnn_fp8_attention(device: torch.device | str) -> None:
    """Raise FP8AttentionUnavailableError saying why cuDNN FP8 attention cannot run on `device`."""
    device = torch.device(device)
    if device.type != "cuda":
        raise FP8AttentionUnavailableError(f"cuDNN FP8 attention runs on CUDA GPUs, not {device}")
    if torch.cuda.get_device_capability(device) < (9, 0):
        raise FP8AttentionUnavailableError(
            f"cuDNN FP8 attention needs compute capability 9.0 or newer (Hopper, Blackwell); {device} is "
            f"{torch.cuda.get_device_name(device)}")
    if not cudnn_frontend_installed():
        raise FP8AttentionUnavailableError(
            "cuDNN FP8 attention needs the nvidia-cudnn-frontend package (the generator's 'fp8' extra)")
    import cudnn

    if cudnn.backend_version() < _MIN_CUDNN_BACKEND:
        raise FP8AttentionUnavailableError(
            f"cuDNN FP8 attention needs cuDNN 9.14 or newer, found {cudnn.backend_version_string()}")


def quantize_per_tensor_4d(x: torch.Tensor, amax: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """x -> contiguous e4m3 values and the fp32 dequantization scale as a [1, 1, 1, 1] tensor.

    The scale maps `amax` (by default x's own) to e4m3's largest value."""
    amax = x.abs().amax() if amax is None else amax
    scale = (amax.float().clamp_min(1e-12) / FP8_MAX).reshape(1, 1, 1, 1)
    return (x.float() / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE).contiguous(), scale


def reference_fp8_attention(q8: torch.Tensor, k8: torch.Tensor, v8: torch.Tensor, q_scale: torch.Tensor,
                            k_scale: torch.Tensor, v_scale: torch.Tensor) -> torch.Tensor:
    """The arithmetic of Hopper's FP8 kernel in fp32: [B, S, H, D] e4m3 inputs -> the output
    [B, S_q, H, D] in e4m3, scaled by 1 / v_scale.

    Processed one head at a time to bound the fp32 score matrix."""
    head_dim = q8.shape[-1]
    out = torch.empty(q8.shape, dtype=FP8_DTYPE, device=q8.device)
    for head in range(q8.shape[2]):
        q = q8[:, :, head].float() * q_scale.reshape(1, 1, 1)
        k = k8[:, :, head].float() * k_scale.reshape(1, 1, 1)
        v = v8[:, :, head].float() * v_scale.reshape(1, 1, 1)
        scores = q @ k.transpose(1, 2) / math.sqrt(head_dim)
        numerator = torch.exp(scores - scores.amax(dim=-1, keepdim=True))
        rounded = (numerator * SOFTMAX_SCALE).to(FP8_DTYPE).float() / SOFTMAX_SCALE
        result = (rounded @ v) / numerator.sum(dim=-1, keepdim=True)
        out[:, :, head] = (result / v_scale.reshape(1, 1, 1)).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
    return out


class _Plan:
    """One built graph: its tensors, constants, workspace and candidate plans (the fastest once timed)."""

    def __init__(self, graph: object, tensors: dict, constants: dict, workspace: torch.Tensor,
                 out_dtype: torch.dtype, handle: object, candidates: list[int]) -> None:
        self.graph, self.tensors, self.constants, self.workspace = graph, tensors, constants, workspace
        self.out_dtype, self.handle, self.candidates = out_dtype, handle, candidates
        self.best: int | None = None if len(candidates) > 1 else (candidates[0] if candidates else 0)
        self.timings_ms: dict[int, float] = {}

    def execute(self, pack: dict) -> None:
        if self.best is None:
            self.best = self._fastest(pack)
        self.graph.execute_plan_at_index(pack, self.workspace, self.best, handle=self.handle)

    def _fastest(self, pack: dict) -> int:
        """Time every candidate plan on the real inputs (a few runs each) and keep the fastest."""
        for index in self.candidates:
            try:
                self.graph.execute_plan_at_index(pack, self.workspace, index, handle=self.handle)
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                for _ in range(3):
                    self.graph.execute_plan_at_index(pack, self.workspace, index, handle=self.handle)
                end.record()
                end.synchronize()
                self.timings_ms[index] = start.elapsed_time(end) / 3
            except Exception:  # a plan that fails to run is not a candidate
                continue
        if not self.timings_ms:
            raise FP8AttentionUnavailableError("no cuDNN FP8 attention plan ran")
        return min(self.timings_ms, key=self.timings_ms.__getitem__)


class _CudnnGraphs:
    """Built cuDNN graphs per (device, shape), their workspaces and handles."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.graphs: dict[tuple, _Plan] = {}
        self.handles: dict[int, object] = {}

    def get(self, q8: torch.Tensor, k8: torch.Tensor) -> _Plan:
        batch, s_q, heads, dim = q8.shape
        s_kv = k8.shape[1]
        key = (q8.device.index, batch, s_q, s_kv, heads, dim)
        with self.lock:
            if key not in self.graphs:
                self.graphs[key] = self._build(q8.device, batch, heads, s_q, s_kv, dim)
            return self.graphs[key]

    def handle(self, device: torch.device) -> object:
        import cudnn

        index = device.index if device.index is not None else torch.cuda.current_device()
        if index not in self.handles:
            with torch.cuda.device(index):
                self.handles[index] = cudnn.create_handle()
        return self.handles[index]

    def _build(self, device: torch.device, batch: int, heads: int, s_q: int, s_kv: int, dim: int) -> _Plan:
        import cudnn

        handle = self.handle(device)
        fp8, fp32 = cudnn.data_type.FP8_E4M3, cudnn.data_type.FLOAT
        torch_out = output_dtype(device)
        out_type = cudnn.data_type.BFLOAT16 if torch_out == torch.bfloat16 else fp8
        try:
            graph = cudnn.pygraph(io_data_type=fp8, intermediate_data_type=fp32, compute_data_type=fp32,
                                  handle=handle)
            # [B, S, H, D] memory seen as (b, h, s, d), the layout the projections produce
            q_stride = (s_q * heads * dim, dim, heads * dim, 1)
            kv_stride = (s_kv * heads * dim, dim, heads * dim, 1)
            q = graph.tensor(name="q", dim=(batch, heads, s_q, dim), stride=q_stride, data_type=fp8)
            k = graph.tensor(name="k", dim=(batch, heads, s_kv, dim), stride=kv_stride, data_type=fp8)
            v = graph.tensor(name="v", dim=(batch, heads, s_kv, dim), stride=kv_stride, data_type=fp8)
            scalars = {name: graph.tensor(name=name, dim=(1, 1, 1, 1), stride=(1, 1, 1, 1), data_type=fp32)
                       for name in ("descale_q", "descale_k", "descale_v", "descale_s", "scale_s", "scale_o")}
            o, _stats, amax_s, amax_o = graph.sdpa_fp8(
                q=q, k=k, v=v, descale_q=scalars["descale_q"], descale_k=scalars["descale_k"],
                descale_v=scalars["descale_v"], descale_s=scalars["descale_s"], scale_s=scalars["scale_s"],
                scale_o=scalars["scale_o"], generate_stats=False, attn_scale=1.0 / math.sqrt(dim),
                use_causal_mask=False)
            o.set_output(True).set_dim((batch, heads, s_q, dim)).set_stride(q_stride).set_data_type(out_type)
            for amax in (amax_s, amax_o):
                amax.set_output(True).set_dim((1, 1, 1, 1)).set_stride((1, 1, 1, 1)).set_data_type(fp32)
            graph.validate()
            graph.build_operation_graph()
            graph.create_execution_plans([cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
            graph.check_support()
            # every candidate plan (kernel configuration): the fastest is measured at the first call
            graph.build_plans(cudnn.build_plan_policy.ALL)
        except Exception as err:
            raise FP8AttentionUnavailableError(
                f"cuDNN has no FP8 attention for {batch}x{heads}x{s_q}x{s_kv}x{dim}: {err}") from err
        constants = {
            "descale_s": torch.full((1, 1, 1, 1), 1.0 / SOFTMAX_SCALE, device=device),
            "scale_s": torch.full((1, 1, 1, 1), SOFTMAX_SCALE, device=device),
            "amax_s": torch.empty((1, 1, 1, 1), device=device),
            "amax_o": torch.empty((1, 1, 1, 1), device=device),
        }
        plans = [index for index in range(graph.get_execution_plan_count())
                 if graph.get_workspace_size_plan_at_index(index) >= 0]
        workspace_size = max([graph.get_workspace_size_plan_at_index(index) for index in plans] + [1])
        workspace = torch.empty(workspace_size, dtype=torch.uint8, device=device)
        tensors = {"q": q, "k": k, "v": v, "o": o, "amax_s": amax_s, "amax_o": amax_o, **scalars}
        return _Plan(graph, tensors, constants, workspace, torch_out, handle, plans)


_graphs = _CudnnGraphs()


def _run_cudnn(q8: torch.Tensor, k8: torch.Tensor, v8: torch.Tensor, q_scale: torch.Tensor, k_scale: torch.Tensor,
               v_scale: torch.Tensor) -> torch.Tensor:
    import cudnn

    plan = _graphs.get(q8, k8)
    tensors, constants = plan.tensors, plan.constants
    out = torch.empty(q8.shape, dtype=plan.out_dtype, device=q8.device)
    # bf16 output: unscaled; e4m3 output: o / v_scale (|o| <= max|v|, see the module docstring)
    scale_o = torch.reciprocal(v_scale) if plan.out_dtype == FP8_DTYPE else torch.ones_like(v_scale)
    pack = {
        tensors["q"]: q8, tensors["k"]: k8, tensors["v"]: v8, tensors["o"]: out,
        tensors["descale_q"]: q_scale, tensors["descale_k"]: k_scale, tensors["descale_v"]: v_scale,
        tensors["descale_s"]: constants["descale_s"], tensors["scale_s"]: constants["scale_s"],
        tensors["scale_o"]: scale_o, tensors["amax_s"]: constants["amax_s"],
        tensors["amax_o"]: constants["amax_o"],
    }
    cudnn.set_stream(handle=plan.handle, stream=torch.cuda.current_stream(q8.device).cuda_stream)
    plan.execute(pack)
    return out


def plan_timings() -> dict[str, dict[int, float]]:
    """Per built shape: milliseconds of each candidate cuDNN plan as measured at its first call."""
    return {"x".join(map(str, key[1:])): dict(plan.timings_ms) for key, plan in _graphs.graphs.items()}


def output_dtype(device: torch.device) -> torch.dtype:
    """bf16 where cuDNN writes it (Blackwell), else e4m3 scaled by 1 / v_scale (Hopper, the CPU reference)."""
    if device.type == "cuda" and torch.cuda.get_device_capability(device) >= (10, 0):
        return torch.bfloat16
    return FP8_DTYPE


@torch.library.custom_op("itk::fp8_attention", mutates_args=())
def fp8_attention_op(q8: torch.Tensor, k8: torch.Tensor, v8: torch.Tensor, q_scale: torch.Tensor,
                     k_scale: torch.Tensor, v_scale: torch.Tensor) -> torch.Tensor:
    """e4m3 q, k, v [B, S, H, D] with their per-tensor scales -> the attention output [B, S_q, H, D]
    in `output_dtype` (e4m3 outputs are o / v_scale)."""
    if q8.is_cuda:
        out = _run_cudnn(q8, k8, v8, q_scale, k_scale, v_scale)
        if out.dtype != output_dtype(q8.device):
            raise FP8AttentionUnavailableError(f"cuDNN wrote {out.dtype}, expected {output_dtype(q8.device)}")
        return out
    return reference_fp8_attention(q8, k8, v8, q_scale, k_scale, v_scale)


@fp8_attention_op.register_fake
def _fp8_attention_shape(q8: torch.Tensor, k8: torch.Tensor, v8: torch.Tensor, q_scale: torch.Tensor,
                         k_scale: torch.Tensor, v_scale: torch.Tensor) -> torch.Tensor:
    return torch.empty(q8.shape, dtype=output_dtype(q8.device), device=q8.device)


def fp8_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, reduce_amax: AmaxReducer | None = None
                  ) -> torch.Tensor:
    """Attention of [B, S, H, D] q, k, v through FP8; returns [B, S_q, H, D] in q's dtype.

    `reduce_amax` is for a device that holds only some of the heads (sequence parallelism): it
    turns this device's amaxes of q, k and v (an fp32 tensor [3]) into the whole tensors' ones, so
    every device quantizes with the scales one device would use. Without it, the amaxes are local.

    The decoding of an e4m3 output stays outside the custom op, so that a compiled block fuses it
    into the output projection's own quantization."""
    amaxes = [t.abs().amax() for t in (q, k, v)]
    if reduce_amax is not None:
        amaxes = list(reduce_amax(torch.stack(amaxes).float()).unbind())
    q8, q_scale = quantize_per_tensor_4d(q, amaxes[0])
    k8, k_scale = quantize_per_tensor_4d(k, amaxes[1])
    v8, v_scale = quantize_per_tensor_4d(v, amaxes[2])
    out = fp8_attention_op(q8, k8, v8, q_scale, k_scale, v_scale)
    if out.dtype == FP8_DTYPE:
        return (out.float() * v_scale).to(q.dtype)
    return out.to(q.dtype)
