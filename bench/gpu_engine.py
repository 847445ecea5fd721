"""Where a turbo clip's GPU time goes, and what the VAE decode and the FP8 forward can shed.

Stages (each one's figures are printed and saved as soon as it ends, so a run cut short keeps them):
- `vae`: the Wan2.1 VAE decode of one 81-frame 480x832 clip (21 x 60 x 104 latents, random
  full-size weights) in bf16: as the generator ran it before, with cuDNN autotuning, with
  channels-last 3-D tensors (what the generator does on a GPU), then with the fast paths of
  vae_fast_paths.py (VAE_FUSED_NORMS, VAE_TIME_CHUNK 4 and 20) alone and together, and the fp32
  VAE (VAE_DTYPE's default) without and with them; each against the fp32 decode of the same
  latents (relative error and max abs error in [-1, 1] units), with its first call (compilation
  included), peak memory and the encode of the decoded clip. Compiling the whole decoder was
  measured too and dropped: diffusers runs it once per latent frame with causal caches whose
  shapes change, so it hit the recompile limit and decoded in 8.9 s on an H100; the fused norms
  compile only the norm.
- `callsites`: the FP8 DiT forward (full size, random weights), eager, with every leaf module and
  attention call timed on the GPU by CUDA events around it: seconds per call site (the block
  index stripped, so `blocks.*.self_attn.q` sums the 40 layers), which says which GEMMs and
  kernels the forward spends its time in.
- `fp8`: the same FP8 forward with its blocks compiled (the production path), its kernel profile
  by kind, before and after the changes this benchmark exists to measure.

Run: python bench/gpu_engine.py [--stages vae,callsites,fp8] [--vae-variants A,B] [--json OUT.json] [--tiny]
"""

from __future__ import annotations

import argparse
import gc
import json
import re
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "services/generator/src"), str(ROOT / "common/src"), str(ROOT)]

from bench.gpu_fast_paths import kernel_profile, rel_err  # noqa: E402
from bench.gpu_infinitetalk import clip_inputs, random_dit  # noqa: E402
from itk_generator.infinitetalk import dit as dit_module  # noqa: E402
from itk_generator.infinitetalk.attention import Attention  # noqa: E402
from itk_generator.infinitetalk.config import DiTConfig  # noqa: E402
from itk_generator.infinitetalk.dit import use_fp8_linears  # noqa: E402
from itk_generator.infinitetalk.fp8 import compile_quantizers  # noqa: E402

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
ON_GPU = DEVICE.type == "cuda"


def sync() -> None:
    if ON_GPU:
        torch.cuda.synchronize()


def timed(fn: Callable[[], torch.Tensor], repeats: int) -> tuple[float, float, torch.Tensor]:
    """First-call seconds, mean seconds of `repeats` more calls, last output."""
    sync()
    start = time.perf_counter()
    out = fn()
    sync()
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    sync()
    return first, (time.perf_counter() - start) / max(repeats, 1), out


def vae_stage(args: argparse.Namespace, report: dict[str, object], show: Callable[[str], None]) -> None:
    from diffusers import AutoencoderKLWan

    from itk_generator.infinitetalk.vae import WanVAE

    torch.manual_seed(0)
    if args.tiny:
        model = AutoencoderKLWan(base_dim=8, dim_mult=[1, 2, 2, 2])
        latent_shape = (1, 16, 3, 8, 12)
    else:
        model = AutoencoderKLWan()  # the Wan2.1 VAE's sizes
        latent_shape = (1, 16, 21, 60, 104)
    model = model.to(DEVICE).eval().requires_grad_(False)
    latents = torch.randn(latent_shape, device=DEVICE, generator=torch.Generator(DEVICE).manual_seed(1))
    report["vae_latents"] = "x".join(map(str, latent_shape))

    torch.backends.cudnn.benchmark = False
    fp32 = WanVAE(model, DEVICE, torch.float32, channels_last=False)
    _, seconds, reference = timed(lambda: fp32.decode(latents), 1)
    report["vae_fp32_decode_s"] = round(seconds, 3)
    video = reference  # a decoded clip, on the device: what the encode timings encode
    reference = reference.cpu()
    show("vae_fp32")

    # name: (dtype, cuDNN autotuning, channels-last, VAE_FUSED_NORMS, VAE_TIME_CHUNK)
    variants = {
        "bf16": (torch.bfloat16, False, False, False, 1),
        "bf16_cudnn_benchmark": (torch.bfloat16, True, False, False, 1),
        "bf16_channels_last": (torch.bfloat16, True, True, False, 1),  # VAE_DTYPE=bf16 before fused norms
        "bf16_fused_norms": (torch.bfloat16, True, True, True, 1),  # VAE_DTYPE=bf16 on a GPU now
        "bf16_time_chunk_4": (torch.bfloat16, True, True, False, 4),
        "bf16_fused_norms_time_chunk_4": (torch.bfloat16, True, True, True, 4),
        "bf16_fused_norms_time_chunk_20": (torch.bfloat16, True, True, True, 20),
        "fp32_channels_last": (torch.float32, True, True, False, 1),  # VAE_DTYPE's default, before fused norms
        "fp32_fused_norms": (torch.float32, True, True, True, 1),  # the generator's GPU default now
        "fp32_fused_norms_time_chunk_4": (torch.float32, True, True, True, 4),
    }
    for name, (dtype, benchmark, channels_last, fused_norms, time_chunk) in variants.items():
        if args.vae_variants and name not in args.vae_variants:
            continue
        vae = copy = None
        try:
            torch.backends.cudnn.benchmark = benchmark
            copy = AutoencoderKLWan.from_config(model.config).to(DEVICE).eval().requires_grad_(False)
            copy.load_state_dict(model.state_dict())
            copy = copy.to(dtype)
            vae = WanVAE(copy, DEVICE, dtype, channels_last=channels_last, fused_norms=fused_norms,
                         time_chunk=time_chunk)
            first, seconds, out = timed(lambda vae=vae: vae.decode(latents), args.repeats)
            out = out.cpu()
            report[f"vae_{name}_first_call_s"] = round(first, 2)  # with compilation where there is any
            report[f"vae_{name}_decode_s"] = round(seconds, 3)
            report[f"vae_{name}_rel_err_vs_fp32"] = round(rel_err(out, reference), 5)
            report[f"vae_{name}_max_abs_err_vs_fp32"] = round((out - reference).abs().max().item(), 4)
            report[f"vae_{name}_peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2) if ON_GPU else 0
            # The encode of a whole clip (a new portrait's condition video, in a job's first clip).
            _, seconds, _ = timed(lambda vae=vae: vae.encode(video), args.repeats)
            report[f"vae_{name}_encode_s"] = round(seconds, 3)
        except Exception as err:  # keep the other variants
            report[f"vae_{name}_error"] = repr(err)[:400]
        vae = copy = None
        gc.collect()
        if ON_GPU:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        show(f"vae_{name}_")
    torch.backends.cudnn.benchmark = False


class _WallEvent:
    """torch.cuda.Event's interface on the CPU (for --tiny checks of this script)."""

    def record(self) -> None:
        self.at = time.perf_counter()

    def elapsed_time(self, end: _WallEvent) -> float:
        return (end.at - self.at) * 1000


def new_event() -> torch.cuda.Event | _WallEvent:
    return torch.cuda.Event(enable_timing=True) if ON_GPU else _WallEvent()


class CallSiteTimer:
    """CUDA events around every leaf module and attention call; seconds summed per call site."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.pending: list[tuple[str, torch.cuda.Event, torch.cuda.Event]] = []
        self.starts: dict[int, torch.cuda.Event] = {}
        self.handles = []
        self.current: list[str] = []
        for name, module in model.named_modules():
            site = re.sub(r"\.\d+\.", ".*.", name)
            self.handles.append(module.register_forward_pre_hook(self._enter(site)))
            self.handles.append(module.register_forward_hook(self._leave(site, leaf=not any(module.children()))))

    def _enter(self, site: str):
        def hook(module, _inputs):
            self.current.append(site)
            if not any(module.children()):
                event = new_event()
                event.record()
                self.starts[id(module)] = event
        return hook

    def _leave(self, site: str, leaf: bool):
        def hook(module, _inputs, _output):
            self.current.pop()
            if leaf:
                end = new_event()
                end.record()
                self.pending.append((site, self.starts.pop(id(module)), end))
        return hook

    def wrap_attention(self) -> Callable[[], None]:
        """Times Attention.__call__ / self_attention under the enclosing module's name."""
        original_call, original_self = Attention.__call__, Attention.self_attention
        timer = self

        def timed_call(kernel_name: str, original):
            def run(attention, *args, **kwargs):
                start, end = new_event(), new_event()
                start.record()
                out = original(attention, *args, **kwargs)
                end.record()
                where = timer.current[-1] if timer.current else "?"
                timer.pending.append((f"{where} [{kernel_name}]", start, end))
                return out
            return run

        Attention.__call__ = timed_call("attention", original_call)  # type: ignore[method-assign]
        Attention.self_attention = timed_call("self-attention", original_self)  # type: ignore[method-assign]

        def restore() -> None:
            Attention.__call__, Attention.self_attention = original_call, original_self  # type: ignore[method-assign]
        return restore

    def totals(self) -> dict[str, float]:
        sync()
        seconds: dict[str, float] = defaultdict(float)
        for site, start, end in self.pending:
            seconds[site] += start.elapsed_time(end) / 1000
        self.pending.clear()
        return dict(seconds)

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def build_fp8_model(args: argparse.Namespace):
    config = DiTConfig(dim=128, ffn_dim=256, num_heads=2, num_layers=2) if args.tiny else DiTConfig()
    model = random_dit(config, "sdpa")
    frames, height, width = (5, 32, 48) if args.tiny else (81, 480, 832)
    inputs = clip_inputs(config, frames, height, width)
    with torch.no_grad():
        bf16_out = model(**inputs)
        use_fp8_linears(model, "token")
    model.attention.fp8_self_attention = True
    if ON_GPU:
        torch.cuda.empty_cache()
    return model, inputs, bf16_out


def callsite_stage(model, inputs, report: dict[str, object], show: Callable[[str], None]) -> None:
    timer = CallSiteTimer(model)
    restore = timer.wrap_attention()
    try:
        with torch.no_grad():
            model(**inputs)  # warm-up (cuDNN plans, caches)
            timer.totals()
            sync()
            start = time.perf_counter()
            model(**inputs)
            sync()
            wall = time.perf_counter() - start
        sites = timer.totals()
    finally:
        restore()
        timer.remove()
    report["callsites_eager_fp8_forward_s"] = round(wall, 3)
    report["callsites_timed_sum_s"] = round(sum(sites.values()), 3)
    ranked = sorted(sites.items(), key=lambda item: -item[1])
    report["callsites_s"] = {site: round(seconds, 4) for site, seconds in ranked if seconds >= 0.001}
    show("callsites")


def fp8_stage(model, inputs, bf16_out, args: argparse.Namespace, report: dict[str, object],
              show: Callable[[str], None]) -> None:
    compile_quantizers()
    dit_module.compile_blocks(model)

    def forward() -> torch.Tensor:
        return model(**inputs)

    with torch.no_grad():
        first, seconds, out = timed(forward, args.repeats)
        report["fp8_blocks_compiled_first_call_s"] = round(first, 1)
        report["fp8_blocks_compiled_s_per_forward"] = round(seconds, 3)
        report["fp8_rel_err_vs_bf16"] = round(rel_err(out, bf16_out), 5)
        show("fp8_blocks")
        if ON_GPU:
            report.update({f"fp8_profile_{k}": v for k, v in kernel_profile(forward).items()})
    from itk_generator.infinitetalk.fp8_attention import plan_timings

    report["fp8_attention_cudnn_plan_ms"] = {shape: {index: round(ms, 2) for index, ms in timings.items()}
                                             for shape, timings in plan_timings().items()}
    show("fp8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stages", default="vae,callsites,fp8")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--vae-variants", type=lambda text: set(text.split(",")), default=None,
                        help="comma-separated names of the vae stage's variants to run (default: all)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--tiny", action="store_true", help="small shapes: a quick check of this script on CPU")
    args = parser.parse_args()
    stages = set(args.stages.split(","))
    props = torch.cuda.get_device_properties(DEVICE) if ON_GPU else None
    report: dict[str, object] = {"gpu": props.name if props else "cpu", "torch": torch.__version__,
                                 "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()}
    try:
        import cudnn

        report["cudnn_frontend"] = cudnn.__version__
    except Exception:
        pass

    def show(prefix: str) -> None:
        print(json.dumps({k: v for k, v in report.items() if k.startswith(prefix)}, default=str), flush=True)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=2, default=str))

    print(json.dumps(report), flush=True)
    if "vae" in stages:
        vae_stage(args, report, show)
        gc.collect()
        if ON_GPU:
            torch.cuda.empty_cache()
    if stages & {"callsites", "fp8"}:
        model, inputs, bf16_out = build_fp8_model(args)
        if "callsites" in stages:
            callsite_stage(model, inputs, report, show)
        if "fp8" in stages:
            fp8_stage(model, inputs, bf16_out, args, report, show)
    show("")


if __name__ == "__main__":
    main()
