"""Multi-GPU benchmark: one 81-frame 480p clip's sampling on 1, 2, 4 and 8 GPUs of one host.

For every GPU count and preset (`fast`: 8 steps x 2 forwards, `quality`: 40 steps x 3
forwards) and every parallel mode whose layout differs (auto, guidance, sequence; see
services/generator/src/itk_generator/infinitetalk/parallel/layout.py), the generator's own
ParallelDenoiser runs the clip's whole schedule on the full-size DiT (14B configuration,
random bf16 weights, the same on every GPU), with the generator's ranks: this process is
rank 0, the others are spawned as the generator spawns them. Printed per row: seconds for the
clip's sampling, that plus the VAE decode of the clip (which stays on rank 0, measured once),
speed-up and efficiency against 1 GPU, the highest peak GPU memory of any rank, and how far the
final latent is from the 1-GPU one (bf16 rounding: same order as eager vs compiled).

    python bench/gpu_parallel.py --gpus 1,2 [--presets fast,quality] [--modes auto,guidance,sequence]
                                 [--precisions bf16,fp8]
    python bench/gpu_parallel.py --tiny --device cpu --gpus 1,2     # a quick check of this script (gloo)
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "services/generator/src"),
                str(Path(__file__).resolve().parents[1] / "common/src"),
                str(Path(__file__).resolve().parent)]

from gpu_infinitetalk import random_dit, random_vae  # noqa: E402

from itk_generator.infinitetalk import dit as dit_module  # noqa: E402
from itk_generator.infinitetalk.config import DiTConfig  # noqa: E402
from itk_generator.infinitetalk.denoiser import ClipConditioning, ClipDenoising, LocalDenoiser  # noqa: E402
from itk_generator.infinitetalk.dit import InfiniteTalkDiT, use_fp8_linears  # noqa: E402
from itk_generator.infinitetalk.fp8 import compile_quantizers  # noqa: E402
from itk_generator.infinitetalk.parallel import MODES, ParallelGroup, choose_layout  # noqa: E402
from itk_generator.infinitetalk.sampling import preset_plan, with_overrides  # noqa: E402

GIB = 1024**3
TINY = DiTConfig(dim=128, ffn_dim=256, num_heads=8, num_layers=2)


def build_dit(tiny: bool, compile_mode: str, precision: str, device: torch.device) -> InfiniteTalkDiT:
    """Every rank's DiT: the same random weights (one seed), in bf16 or FP8 (e4m3 linears with
    per-token activation scales and FP8 self-attention, as DTYPE=fp8), compiled as the generator would."""
    if device.type == "cuda":
        torch.cuda.set_device(device)
    model = random_dit(TINY if tiny else DiTConfig(), "sdpa", device)
    if precision == "fp8":
        use_fp8_linears(model, "token")
        model.attention.fp8_self_attention = True
        compile_quantizers()
    if compile_mode == "elementwise":
        dit_module.compile_elementwise()
    elif compile_mode == "blocks":
        dit_module.compile_blocks(model)
    return model


def clip_denoising(config: DiTConfig, plan, frames: int, height: int, width: int,
                   device: torch.device) -> ClipDenoising:
    g = torch.Generator().manual_seed(1)
    latent_frames, latent_h, latent_w = (frames - 1) // 4 + 1, height // 8, width // 8
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32

    def rand(*shape: int, cast: bool = True) -> torch.Tensor:
        tensor = torch.randn(*shape, generator=g)
        return (tensor.to(dtype) if cast else tensor).to(device)

    conditioning = ClipConditioning(
        text=rand(1, config.text_len, config.text_dim), negative=rand(1, config.text_len, config.text_dim),
        clip_features=rand(1, 257, config.clip_dim), condition=rand(1, 20, latent_frames, latent_h, latent_w),
        audio=rand(1, frames, config.audio_window, config.audio_layers, config.audio_channels))
    noise = rand(config.out_dim, latent_frames, latent_h, latent_w, cast=False)
    motion = rand(config.out_dim, 1, latent_h, latent_w, cast=False)
    return ClipDenoising(conditioning, noise, motion, plan)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_clip(denoiser, clip: ClipDenoising, device: torch.device) -> tuple[float, torch.Tensor]:
    sync(device)
    start = time.perf_counter()
    with torch.no_grad():
        latent = denoiser(clip, lambda _step: None)
    sync(device)
    return time.perf_counter() - start, latent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gpus", default="1,2,4,8", help="GPU counts (above the visible count: skipped)")
    parser.add_argument("--presets", default="fast,quality", help="of turbo, fast, quality")
    parser.add_argument("--precisions", default="bf16", help="bf16 and/or fp8 (compute capability 8.9+)")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--steps", type=int, default=0, help="override the presets' step counts (0: theirs)")
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=832)
    parser.add_argument("--compile", default="elementwise", choices=["off", "elementwise", "blocks"])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer narrow model, for checking this script")
    parser.add_argument("--warmup-steps", type=int, default=1, help="steps of one warm-up clip per setting")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    device = torch.device(args.device, 0) if args.device == "cuda" else torch.device(args.device)
    available = torch.cuda.device_count() if device.type == "cuda" else 8
    counts = [n for n in (int(x) for x in args.gpus.split(",")) if n <= available]
    presets = [p for p in args.presets.split(",") if p]
    modes = [m for m in args.modes.split(",") if m]
    config = TINY if args.tiny else DiTConfig()
    compile_mode = args.compile if device.type == "cuda" else "off"
    precisions = [p for p in args.precisions.split(",") if p]

    report: dict[str, object] = {
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "gpus_visible": available, "torch": torch.__version__, "cuda": torch.version.cuda,
        "nccl": ".".join(map(str, torch.cuda.nccl.version())) if device.type == "cuda" else None,
        "clip": f"{args.frames} frames {args.width}x{args.height}", "compile": args.compile, "rows": [],
    }
    rows: list[dict[str, object]] = report["rows"]  # type: ignore[assignment]

    def save() -> None:
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=2, default=str))

    def plan_for(preset: str):
        plan = preset_plan(preset)
        return with_overrides(plan, steps=args.steps) if args.steps else plan

    def warm(denoiser, preset: str) -> None:
        if args.warmup_steps:
            warm_plan = with_overrides(plan_for(preset), steps=args.warmup_steps)
            timed_clip(denoiser, clip_denoising(config, warm_plan, args.frames, args.height, args.width, device),
                       device)

    # The VAE decode of a clip stays on rank 0 whatever the GPU count: measured once, added to each row.
    vae_decode_s = 0.0
    if not args.tiny and device.type == "cuda":
        vae = random_vae()
        latent = torch.randn(1, 16, (args.frames - 1) // 4 + 1, args.height // 8, args.width // 8, device=device)
        with torch.no_grad():
            vae.decode(latent[:, :, :2, :8, :8])
            sync(device)
            start = time.perf_counter()
            vae.decode(latent)
            sync(device)
        vae_decode_s = time.perf_counter() - start
        vae = latent = None
        gc.collect()
        torch.cuda.empty_cache()
    report["vae_decode_s"] = round(vae_decode_s, 2)

    baseline: dict[tuple[str, str], tuple[float, torch.Tensor]] = {}
    for precision, count in ((precision, count) for precision in precisions for count in counts):
        factory = functools.partial(build_dit, args.tiny, compile_mode, precision)
        try:
            model = factory(device)
        except Exception as err:  # FP8 where the GPU cannot: say so, go on with the rest
            rows.append({"gpus": count, "precision": precision, "error": repr(err)[:300]})
            print(json.dumps(rows[-1]), flush=True)
            continue
        holder = SimpleNamespace(dit=model, denoiser=LocalDenoiser(model))
        group = None
        if count > 1:
            group = ParallelGroup(count, str(device), modes[0], factory)
            group.attach(holder)
            group.wait_ready()
        denoiser = holder.denoiser
        try:
            for preset in presets:
                plan = plan_for(preset)
                seen: set[tuple[int, int]] = set()
                for mode in (modes if count > 1 else ["-"]):
                    if group is not None:
                        layout = choose_layout(count, len(plan.branches), config.num_heads, mode)
                        if (layout.guidance_groups, layout.sequence_degree) in seen:
                            continue
                        seen.add((layout.guidance_groups, layout.sequence_degree))
                        group.runtime.mode = mode
                        described = layout.describe().split(": ")[1]
                    else:
                        described = "one device"
                    warm(denoiser, preset)
                    if group is not None:
                        group.runtime.peak_memory()
                    elif device.type == "cuda":
                        torch.cuda.reset_peak_memory_stats(device)
                    clip = clip_denoising(config, plan, args.frames, args.height, args.width, device)
                    seconds, latent = timed_clip(denoiser, clip, device)
                    peaks = (group.runtime.peak_memory() if group is not None
                             else [torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0])
                    if count == 1:
                        baseline[(precision, preset)] = (seconds, latent.float().cpu())
                    base_seconds, base_latent = baseline.get((precision, preset), (0.0, None))
                    row = {
                        "gpus": count, "precision": precision, "preset": preset,
                        "mode": mode if count > 1 else "-", "layout": described,
                        "steps": plan.steps, "forwards_per_step": len(plan.branches),
                        "sampling_s": round(seconds, 2), "clip_s": round(seconds + vae_decode_s, 2),
                        "speedup": round(base_seconds / seconds, 2) if base_seconds else None,
                        "clip_speedup": (round((base_seconds + vae_decode_s) / (seconds + vae_decode_s), 2)
                                         if base_seconds else None),
                        "efficiency": round(base_seconds / seconds / count, 2) if base_seconds else None,
                        "peak_gib_per_gpu": round(max(peaks) / GIB, 1),
                        "max_abs_diff_vs_1_gpu": (float((latent.float().cpu() - base_latent).abs().max())
                                                  if base_latent is not None else None),
                    }
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    save()
        finally:
            if group is not None:
                group.shutdown()
            model = denoiser = holder = group = None  # the next GPU count builds its own DiT on GPU 0
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()

    header = ["GPUs", "precision", "preset", "mode", "layout", "sampling s", "clip s", "speed-up", "clip speed-up",
              "efficiency", "peak GiB/GPU", "max abs diff vs 1 GPU"]
    keys = ["gpus", "precision", "preset", "mode", "layout", "sampling_s", "clip_s", "speedup", "clip_speedup",
            "efficiency", "peak_gib_per_gpu", "max_abs_diff_vs_1_gpu"]
    print(f"\n{report['gpu']}, torch {report['torch']}, CUDA {report['cuda']}, NCCL {report['nccl']}; "
          f"{report['clip']}, compile {args.compile}; VAE decode of the clip on rank 0: {vae_decode_s:.2f} s\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in (r for r in rows if "error" not in r):
        cells = [("" if row[k] is None else f"{row[k]:.2g}" if k == "max_abs_diff_vs_1_gpu" else str(row[k]))
                 for k in keys]
        print("| " + " | ".join(cells) + " |")
    for row in (r for r in rows if "error" in r):
        print(f"not run: {row['gpus']} GPU(s) {row['precision']}: {row['error']}")
    save()


if __name__ == "__main__":
    main()
