"""The DiT's two heavy kernels at InfiniteTalk's shapes, bf16 against FP8, and the VAE in bf16 against fp32.

- self-attention, 1 x 40 heads x 32,760 tokens x 128: torch SDPA (cuDNN) in bf16 against the
  FP8 path (fp8_attention.py: per-tensor quantization + cuDNN FP8 fused attention), with the
  relative error of each against fp32 attention on the same inputs;
- the projection / FFN GEMMs, 32,760 x 5,120 by 5,120 and by 13,824 (and 13,824 -> 5,120):
  bf16 against torch._scaled_mm with per-token and per-tensor activation scales (the
  quantization of the activations timed with it), with errors against fp32;
- the Wan VAE (random weights, diffusers' AutoencoderKLWan) decoding one 81-frame 480p clip and
  encoding the 9 motion frames, fp32 against bf16: seconds, peak memory and the bf16 output's
  error against fp32.

TFLOP/s count 4*S^2*D*H for attention and 2*M*N*K for a GEMM. Times: median of CUDA-event-timed
runs after warm-up. Run: python bench/gpu_kernels.py [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "services/generator/src"),
                str(Path(__file__).resolve().parents[1] / "common/src")]

from itk_generator.infinitetalk.fp8 import quantize_per_row, quantize_per_tensor, scaled_matmul  # noqa: E402
from itk_generator.infinitetalk.fp8_attention import fp8_attention  # noqa: E402

DEVICE = torch.device("cuda")
GIB = 1024**3


def median_ms(fn: Callable[[], object], warmup: int = 3, repeats: int = 10) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def rel(value: torch.Tensor, reference: torch.Tensor) -> float:
    return ((value.float() - reference.float()).norm() / reference.float().norm()).item()


def attention_rows(tokens: int, heads: int, dim: int) -> list[dict]:
    g = torch.Generator(device=DEVICE).manual_seed(0)
    # RMS-normed q/k of unit scale, like the model's after norm_q / norm_k
    q, k, v = (torch.randn(1, tokens, heads, dim, generator=g, device=DEVICE, dtype=torch.bfloat16) for _ in range(3))
    flops = 4 * tokens * tokens * dim * heads

    def sdpa() -> torch.Tensor:
        return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)

    # fp32 reference on 4 heads (the error is per head; the full fp32 product would take long)
    sub = slice(0, 4)
    exact = F.scaled_dot_product_attention(*(x[:, :, sub].transpose(1, 2).float() for x in (q, k, v))).transpose(1, 2)
    rows = []
    for name, fn in (("attention bf16 (SDPA, cuDNN)", sdpa), ("attention FP8 (cuDNN, incl. quantization)",
                                                               lambda: fp8_attention(q, k, v))):
        try:
            out = fn()
            ms = median_ms(fn)
            rows.append({"kernel": name, "ms": round(ms, 3), "tflops": round(flops / ms / 1e9, 1),
                         "rel_err_vs_fp32": round(rel(out[:, :, sub], exact), 5)})
        except Exception as err:  # keep the rest of the table
            rows.append({"kernel": name, "error": repr(err)[:400]})
    return rows


def gemm_variants(x: torch.Tensor, w: torch.Tensor) -> dict[str, Callable[[], torch.Tensor]]:
    """The bf16 GEMM and its FP8 versions for one activation / weight pair."""
    w8, w_scale = quantize_per_row(w)
    quant_token = torch.compile(quantize_per_row, dynamic=False)
    x8_token, s_token = quant_token(x)
    x8_tensor, s_tensor = torch.compile(quantize_per_tensor, dynamic=False)(x)
    return {
        "bf16": lambda: x @ w.t(),
        "FP8 per-token, GEMM only": lambda: scaled_matmul(x8_token, s_token, w8, w_scale, torch.bfloat16),
        "FP8 per-tensor, GEMM only": lambda: scaled_matmul(x8_tensor, s_tensor, w8, w_scale, torch.bfloat16),
        "FP8 per-token, quantization + GEMM": lambda: scaled_matmul(*quant_token(x), w8, w_scale, torch.bfloat16),
    }


def gemm_rows(tokens: int) -> list[dict]:
    rows = []
    g = torch.Generator(device=DEVICE).manual_seed(1)
    for k_dim, n_dim in ((5120, 5120), (5120, 13824), (13824, 5120)):
        x = torch.randn(tokens, k_dim, generator=g, device=DEVICE, dtype=torch.bfloat16)
        w = (torch.randn(n_dim, k_dim, generator=g, device=DEVICE) / k_dim**0.5).to(torch.bfloat16)
        exact = x.float() @ w.float().t()
        flops = 2 * tokens * k_dim * n_dim
        for name, fn in gemm_variants(x, w).items():
            label = f"GEMM {tokens}x{k_dim} by {n_dim}: {name}"
            try:
                out = fn()
                ms = median_ms(fn)
                rows.append({"kernel": label, "ms": round(ms, 3), "tflops": round(flops / ms / 1e9, 1),
                             "rel_err_vs_fp32": round(rel(out, exact), 5)})
            except Exception as err:
                rows.append({"kernel": label, "error": repr(err)[:400]})
    return rows


def vae_rows(frames: int, height: int, width: int) -> list[dict]:
    from diffusers import AutoencoderKLWan

    from itk_generator.infinitetalk.vae import WanVAE

    torch.manual_seed(2)
    model = AutoencoderKLWan().to(DEVICE)
    fp32 = WanVAE(model, DEVICE, torch.float32)
    latent = torch.randn(1, 16, (frames - 1) // 4 + 1, height // 8, width // 8, device=DEVICE)
    motion = torch.rand(1, 3, 9, height, width, device=DEVICE) * 2 - 1
    rows = []
    outputs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for name, vae in (("fp32", fp32), ("bf16", None)):
        if vae is None:
            import copy

            vae = WanVAE(copy.deepcopy(model).to(torch.bfloat16), DEVICE, torch.bfloat16)
        with torch.no_grad():
            vae.decode(latent[:, :, :2, :8, :8])
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            decode_ms = median_ms(lambda vae=vae: vae.decode(latent), warmup=1, repeats=3)
            peak = torch.cuda.max_memory_allocated() / GIB
            encode_ms = median_ms(lambda vae=vae: vae.encode(motion), warmup=1, repeats=3)
            outputs[name] = (vae.decode(latent), vae.encode(motion))
        row = {"kernel": f"VAE {name}: decode {frames} frames {width}x{height} / encode 9 motion frames",
               "decode_s": round(decode_ms / 1000, 3), "encode9_s": round(encode_ms / 1000, 3),
               "decode_peak_gib": round(peak, 2)}
        if name == "bf16":
            video32, motion32 = outputs["fp32"]
            video16, motion16 = outputs["bf16"]
            row["decode_rel_err_vs_fp32"] = round(rel(video16, video32), 5)
            row["decode_max_abs_err_vs_fp32"] = round((video16 - video32).abs().max().item(), 4)
            row["decode_max_abs_err_in_8bit_levels"] = round((video16 - video32).abs().max().item() * 127.5, 2)
            row["encode_rel_err_vs_fp32"] = round(rel(motion16, motion32), 5)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=32760)
    parser.add_argument("--skip-vae", action="store_true")
    parser.add_argument("--skip-gemm", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    props = torch.cuda.get_device_properties(DEVICE)
    header = {"gpu": props.name, "torch": torch.__version__, "cuda": torch.version.cuda,
              "cudnn": torch.backends.cudnn.version()}
    try:
        import cudnn

        header["cudnn_frontend"] = cudnn.__version__
        header["cudnn_backend"] = cudnn.backend_version_string()
    except Exception as err:
        header["cudnn_frontend"] = repr(err)[:200]
    print(json.dumps(header), flush=True)
    rows = attention_rows(args.tokens, 40, 128)
    from itk_generator.infinitetalk.fp8_attention import plan_timings

    rows.append({"kernel": "cuDNN FP8 attention plans, ms each (the fastest is used)", "plans": plan_timings()})
    print(json.dumps(rows, indent=1), flush=True)
    if not args.skip_gemm:
        rows += gemm_rows(args.tokens)
    if not args.skip_vae:
        try:
            rows += vae_rows(81, 480, 832)
        except Exception as err:
            rows.append({"kernel": "VAE", "error": repr(err)[:400]})
    if args.json:
        args.json.write_text(json.dumps({**header, "rows": rows}, indent=2))
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
