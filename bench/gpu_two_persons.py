"""GPU benchmark: what a second person costs the InfiniteTalk DiT (14B config, random weights).

For one 81-frame clip at 480x832 (21 x 30 x 52 = 32,760 tokens) it times, in bf16 and in FP8
(e4m3 linears and, where cuDNN runs it, FP8 self-attention), with the elementwise work compiled
as the generator does by default:
- one DiT forward with one person's audio (the single-person path: no attention map, no labels);
- one forward with two persons' audio and the default split of the frame: per block the reference
  attention map (the self-attention's queries against the first latent frame's keys, the regions
  as values) and the L-RoPE speaker labels in the audio cross-attention, 64 audio tokens a frame;
- one guidance step of the quality preset (3 forwards): single person against two persons, whose
  no-audio branch runs one person's silence as the reference does;
- the attention map alone, summed over the 40 blocks.
The two-person overhead is (two-person - single) / single, per forward and per quality step.
Random weights change no timing: the kernels and shapes are those of the real model.

Run: python bench/gpu_two_persons.py [--repeats N] [--skip-fp8] [--json OUT.json]
     python bench/gpu_two_persons.py --tiny   (a CPU smoke run at toy sizes)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "services/generator/src"),
                str(Path(__file__).resolve().parents[1] / "common/src"), str(Path(__file__).resolve().parents[1])]

from bench.gpu_infinitetalk import DEVICE, ON_GPU, peak_gib, random_dit, reset_peak, timed  # noqa: E402
from bench.table import print_table  # noqa: E402
from itk_generator.infinitetalk import dit as dit_module  # noqa: E402
from itk_generator.infinitetalk.config import DiTConfig  # noqa: E402
from itk_generator.infinitetalk.dit import InfiniteTalkDiT, use_fp8_linears  # noqa: E402
from itk_generator.infinitetalk.person_regions import generated_person_masks, latent_masks  # noqa: E402
from itk_generator.infinitetalk.speakers import reference_attention_map, region_weights  # noqa: E402

FRAMES, HEIGHT, WIDTH = 81, 480, 832
TINY = DiTConfig(dim=64, ffn_dim=128, freq_dim=32, num_heads=4, num_layers=2, text_dim=48, text_len=16)


def inputs_for(config: DiTConfig, frames: int, height: int, width: int) -> dict[str, torch.Tensor]:
    g = torch.Generator(device=DEVICE).manual_seed(1)
    latent_frames, latent_h, latent_w = (frames - 1) // 4 + 1, height // 8, width // 8
    dtype = torch.bfloat16 if ON_GPU else torch.float32
    windows = (config.audio_window, config.audio_layers, config.audio_channels)
    return {
        "latents": torch.randn(1, 16, latent_frames, latent_h, latent_w, generator=g, device=DEVICE),
        "timesteps": torch.tensor([987.5], device=DEVICE),
        "text": torch.randn(1, config.text_len, config.text_dim, generator=g, device=DEVICE).to(dtype),
        "clip_features": torch.randn(1, 257, config.clip_dim, generator=g, device=DEVICE).to(dtype),
        "condition": torch.randn(1, 20, latent_frames, latent_h, latent_w, generator=g, device=DEVICE).to(dtype),
        "one": torch.randn(1, frames, *windows, generator=g, device=DEVICE).to(dtype),
        "two": torch.randn(1, 2, frames, *windows, generator=g, device=DEVICE).to(dtype),
        "masks": latent_masks(generated_person_masks([None, None], height, width, height, width),
                              latent_h, latent_w).to(DEVICE),
    }


def measure(model: InfiniteTalkDiT, data: dict[str, torch.Tensor], label: str, warmup: int, repeats: int
            ) -> list[dict[str, object]]:
    common = {name: data[name] for name in ("latents", "timesteps", "text", "clip_features", "condition")}
    silence = torch.zeros_like(data["one"])

    def single() -> torch.Tensor:
        return model(**common, audio=data["one"])

    def two() -> torch.Tensor:
        return model(**common, audio=data["two"], person_masks=data["masks"])

    def single_step() -> None:  # cond / no-text / uncond of a one-person chunk
        model(**common, audio=data["one"])
        model(**common, audio=data["one"])
        model(**common, audio=silence)

    def two_step() -> None:  # cond / no-text with both tracks, uncond with one person's silence
        model(**common, audio=data["two"], person_masks=data["masks"])
        model(**common, audio=data["two"], person_masks=data["masks"])
        model(**common, audio=silence, person_masks=data["masks"])

    rows = []
    with torch.no_grad():
        reset_peak()
        single_s, _ = timed(single, warmup, repeats)
        single_peak = peak_gib()
        reset_peak()
        two_s, _ = timed(two, warmup, repeats)
        two_peak = peak_gib()
        single_step_s, _ = timed(single_step, 0, repeats)
        two_step_s, _ = timed(two_step, 0, repeats)
        map_s = map_seconds(model, data, repeats)
    rows.append({"precision": label, "what": "DiT forward", "single_s": single_s, "two_persons_s": two_s,
                 "overhead_%": 100 * (two_s - single_s) / single_s, "single_peak_gib": single_peak,
                 "two_peak_gib": two_peak})
    rows.append({"precision": label, "what": "quality step (3 forwards)", "single_s": single_step_s,
                 "two_persons_s": two_step_s, "overhead_%": 100 * (two_step_s - single_step_s) / single_step_s})
    rows.append({"precision": label, "what": "attention map, all blocks", "single_s": 0.0, "two_persons_s": map_s,
                 "overhead_%": 100 * map_s / single_s})
    return rows


def map_seconds(model: InfiniteTalkDiT, data: dict[str, torch.Tensor], repeats: int) -> float:
    """The reference attention map alone, once per block, on queries / keys of the clip's shape."""
    config = model.config
    tokens = data["latents"].shape[2] * (data["latents"].shape[3] // 2) * (data["latents"].shape[4] // 2)
    dtype = model.patch_embedding.weight.dtype
    g = torch.Generator(device=DEVICE).manual_seed(2)
    q = torch.randn(1, tokens, config.num_heads, config.head_dim, generator=g, device=DEVICE).to(dtype)
    k = torch.randn(1, tokens, config.num_heads, config.head_dim, generator=g, device=DEVICE).to(dtype)
    grid = (data["latents"].shape[3] // 2, data["latents"].shape[4] // 2)
    regions = region_weights(data["masks"], grid, dtype)

    def all_blocks() -> None:
        for _ in range(config.num_layers):
            reference_attention_map(model.attention, q, k, regions)

    seconds, _ = timed(all_blocks, 1, repeats)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--attention", default="auto")
    parser.add_argument("--skip-fp8", action="store_true")
    parser.add_argument("--tiny", action="store_true", help="toy sizes (a smoke run, also on the CPU)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    config, frames, height, width = (TINY, 9, 64, 64) if args.tiny else (DiTConfig(), FRAMES, HEIGHT, WIDTH)
    model = random_dit(config, args.attention) if ON_GPU else InfiniteTalkDiT(config).eval()
    # One set of random adapter weights serves both paths here (the single- and the multi-person
    # adapters have the same shapes, so the same timing): no second copy to swap in.
    model.use_adapter = lambda _kind: None  # type: ignore[method-assign]
    if ON_GPU:
        dit_module.compile_elementwise()
    data = inputs_for(config, frames, height, width)
    device = torch.cuda.get_device_name() if ON_GPU else "cpu"
    title = (f"Two persons against one: one {frames}-frame {width}x{height} clip, {device}, torch {torch.__version__}, "
             f"{'14B' if not args.tiny else 'toy'} DiT, random weights, elementwise work compiled")

    def report(rows: list[dict[str, object]]) -> None:  # after each precision, so a cut-short run keeps some
        print_table(title, rows)
        if args.json:
            args.json.write_text(json.dumps({"device": device, "torch": torch.__version__, "rows": rows}, indent=2))

    rows = measure(model, data, "bf16" if ON_GPU else "fp32", warmup=1, repeats=args.repeats)
    report(rows)
    if ON_GPU and not args.skip_fp8:
        from itk_generator.infinitetalk.fp8_attention import FP8AttentionUnavailableError, check_cudnn_fp8_attention

        use_fp8_linears(model, "token")
        torch.cuda.empty_cache()
        try:
            check_cudnn_fp8_attention(DEVICE)
            model.attention.fp8_self_attention = True
        except FP8AttentionUnavailableError as err:
            print(f"FP8 self-attention unavailable ({err}); FP8 linears only", flush=True)
        rows += measure(model, data, "fp8", warmup=1, repeats=args.repeats)
        report(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
