"""GPU benchmark of the InfiniteTalk DiT at full size (14B config, random bf16 weights).

Measures, for one 81-frame clip at 480x832 (21 x 30 x 52 = 32,760 tokens):
- seconds per DiT forward, resident (all weights on the GPU) and with block offload
  (blocks streamed from pinned CPU memory), eager and with the elementwise work compiled;
- with --reference-dir: the public reference implementation's forward on the same weights and
  inputs (its flash-attention call and xformers replaced by torch SDPA, as in the facts sheet's
  5.05 s figure), and how far apart the two outputs are;
- VAE decode of one clip, VAE encodes, CLIP / wav2vec2 / umT5 encodes (random weights);
- peak GPU memory of each mode.
Per-clip times for the 40-step (3 forwards a step) and 8-step (2 forwards) presets are
EXTRAPOLATED: measured seconds per forward x forwards per clip + measured VAE decode + motion-
frame VAE encode. The output says so. With --chunk-clips N, a chunk of N clips also runs through
the generator's own pipeline with full-size random encoders, and that is timed end to end.

Run: python bench/gpu_infinitetalk.py [--reference-dir PATH] [--chunk-clips N] [--json OUT.json]
(PATH: a folder holding the reference's `wan` package and stand-ins for xformers / xfuser.)
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "services/generator/src"),
                str(Path(__file__).resolve().parents[1] / "common/src"), str(Path(__file__).resolve().parents[1])]

from bench.gpu_fast_paths import (  # noqa: E402
    batching_stage,
    clip_stage,
    dynamo_graph_count,
    fp8_forward_stage,
    rel_err,
    turbo_latents,
)
from itk_generator.infinitetalk import dit as dit_module  # noqa: E402
from itk_generator.infinitetalk.attention import Attention  # noqa: E402
from itk_generator.infinitetalk.config import DiTConfig  # noqa: E402
from itk_generator.infinitetalk.dit import InfiniteTalkDiT, use_fp8_linears  # noqa: E402
from itk_generator.infinitetalk.fp8 import compile_quantizers  # noqa: E402
from itk_generator.infinitetalk.offload import enable_block_offload  # noqa: E402

GIB = 1024**3
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
ON_GPU = DEVICE.type == "cuda"


def sync() -> None:
    if ON_GPU:
        torch.cuda.synchronize()


def reset_peak() -> None:
    if ON_GPU:
        torch.cuda.reset_peak_memory_stats()


def empty_cache() -> None:
    if ON_GPU:
        torch.cuda.empty_cache()


def synced(fn: Callable[[], object]) -> tuple[float, object]:
    sync()
    start = time.perf_counter()
    result = fn()
    sync()
    return time.perf_counter() - start, result


def timed(fn: Callable[[], object], warmup: int, repeats: int) -> tuple[float, object]:
    """Mean seconds over `repeats` calls after `warmup` calls; returns the last result."""
    result = None
    for _ in range(warmup):
        _, result = synced(fn)
    total = 0.0
    for _ in range(repeats):
        seconds, result = synced(fn)
        total += seconds
    return total / repeats, result


def peak_gib() -> float:
    return torch.cuda.max_memory_allocated() / GIB if ON_GPU else 0.0


def random_dit(config: DiTConfig, attention: str, device: torch.device = DEVICE) -> InfiniteTalkDiT:
    """The full-size model straight on the GPU in bf16, filled with random values of sane scale
    (the same values on every device: one seed, the same sequence of draws)."""
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("meta"):
            model = InfiniteTalkDiT(config, Attention(attention))
    finally:
        torch.set_default_dtype(previous)
    model = model.to_empty(device=device).eval().requires_grad_(False)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("modulation"):
                tensor.normal_(0, 1 / math.sqrt(config.dim))
            elif tensor.ndim == 1 and "norm" in name and name.endswith("weight"):
                tensor.fill_(1.0)
            elif tensor.ndim == 1:
                tensor.normal_(0, 0.02)
            else:
                fan_in = math.prod(tensor.shape[1:])
                tensor.normal_(0, 1 / math.sqrt(fan_in))
    return model


def clip_inputs(config: DiTConfig, frames: int, height: int, width: int) -> dict[str, torch.Tensor]:
    g = torch.Generator(device=DEVICE).manual_seed(1)
    latent_frames, latent_h, latent_w = (frames - 1) // 4 + 1, height // 8, width // 8
    bf16 = torch.bfloat16
    return {
        "latents": torch.randn(1, 16, latent_frames, latent_h, latent_w, generator=g, device=DEVICE),
        "timesteps": torch.tensor([987.5], device=DEVICE),
        "text": torch.randn(1, config.text_len, config.text_dim, generator=g, device=DEVICE).to(bf16),
        "clip_features": torch.randn(1, 257, config.clip_dim, generator=g, device=DEVICE).to(bf16),
        "condition": torch.randn(1, 20, latent_frames, latent_h, latent_w, generator=g, device=DEVICE).to(bf16),
        "audio": torch.randn(1, frames, 5, 12, 768, generator=g, device=DEVICE).to(bf16),
    }


def reference_forward(reference_dir: Path, model: InfiniteTalkDiT, inputs: dict, warmup: int, repeats: int,
                      kernel: str = "sdpa") -> tuple[float, float, torch.Tensor]:
    """The reference WanModel on the same weights (shared tensors) and inputs."""
    import torch.nn.functional as F

    sys.path.insert(0, str(reference_dir))
    import wan.modules.multitalk_model as reference

    def sdpa_flash_attention(q, k, v, q_lens=None, k_lens=None, dropout_p=0.0, softmax_scale=None, q_scale=None,
                             causal=False, window_size=(-1, -1), deterministic=False, dtype=torch.bfloat16,
                             version=None):
        # the reference's flash_attention, with torch SDPA as the kernel: same casts, same layout
        out_dtype = q.dtype
        half = (torch.float16, torch.bfloat16)
        q, k, v = (x if x.dtype in half else x.to(dtype) for x in (q, k, v))
        q, k = q.to(v.dtype), k.to(v.dtype)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return out.transpose(1, 2).type(out_dtype)

    reference.flash_attention = sdpa_flash_attention
    if not ON_GPU:  # the multi-speaker attention map calls CUDA-only cleanup; the CPU check leaves it out
        reference.get_attn_map_with_target = lambda *args, **kwargs: None
    c = model.config
    with torch.device("meta"):
        ref_model = reference.WanModel(model_type="i2v", patch_size=c.patch_size, text_len=c.text_len,
                                       in_dim=c.in_dim, dim=c.dim, ffn_dim=c.ffn_dim, freq_dim=c.freq_dim,
                                       text_dim=c.text_dim, out_dim=c.out_dim, num_heads=c.num_heads,
                                       num_layers=c.num_layers, eps=c.eps, weight_init=False)
    ref_model.load_state_dict(model.state_dict(), strict=True, assign=True)
    ref_model.init_freqs()  # built on the meta device above; the reference keeps this table on the CPU
    ref_model.eval().requires_grad_(False)
    ref_model.disable_teacache()
    latent_h, latent_w = inputs["latents"].shape[-2:]
    args = dict(
        t=inputs["timesteps"], context=[inputs["text"][0]], seq_len=math.prod(inputs["latents"].shape[2:]) // 4,
        clip_fea=inputs["clip_features"], y=inputs["condition"], audio=inputs["audio"],
        ref_target_masks=torch.ones(3, latent_h, latent_w, device=DEVICE),
    )
    from torch.nn.attention import SDPBackend, sdpa_kernel

    restriction = {"sdpa-cudnn": SDPBackend.CUDNN_ATTENTION, "sdpa-flash": SDPBackend.FLASH_ATTENTION}.get(kernel)

    def run() -> torch.Tensor:
        if restriction is None or not ON_GPU:
            return ref_model([inputs["latents"][0].clone()], **args)[0]
        with sdpa_kernel(restriction):
            return ref_model([inputs["latents"][0].clone()], **args)[0]

    reset_peak()
    with torch.no_grad():
        seconds, out = timed(run, warmup, repeats)
    peak = peak_gib()
    ref_model = None  # drop the reference's references to the shared weights
    return seconds, peak, out


def random_vae():
    from diffusers import AutoencoderKLWan

    from itk_generator.infinitetalk.vae import WanVAE

    return WanVAE(AutoencoderKLWan().to(DEVICE), DEVICE, torch.float32)


def random_clip(tiny: bool):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    from itk_generator.infinitetalk.clip_vision import ClipVisionEncoder

    config = CLIPVisionConfig(hidden_size=1280, intermediate_size=5120, num_hidden_layers=2 if tiny else 31,
                              num_attention_heads=16, image_size=224, patch_size=14, hidden_act="gelu")
    dtype = torch.float16 if ON_GPU else torch.float32
    return ClipVisionEncoder(CLIPVisionModel(config).to(DEVICE, dtype), DEVICE, dtype)


def random_wav2vec():
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    from itk_generator.infinitetalk.audio_features import AudioFeatureExtractor

    return AudioFeatureExtractor(Wav2Vec2Model(Wav2Vec2Config()).to(DEVICE), Wav2Vec2FeatureExtractor(),
                                 DEVICE, torch.float32)


def random_umt5(tiny: bool):
    """umT5-XXL's encoder (24 layers of 4096) in bf16, built straight on the device."""
    from transformers import UMT5Config, UMT5EncoderModel

    config = UMT5Config(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=1 if tiny else 24,
                        num_heads=64, feed_forward_proj="gated-gelu")
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("meta"):
            t5 = UMT5EncoderModel(config)
    finally:
        torch.set_default_dtype(previous)
    t5 = t5.to_empty(device=DEVICE).eval()
    with torch.no_grad():
        for tensor in t5.state_dict().values():
            tensor.normal_(0, 0.02)
    return t5


def encoder_timings(frames: int, height: int, width: int, tiny: bool) -> dict[str, float]:
    """VAE, CLIP, wav2vec2 and umT5 (random weights) as the pipeline runs them, one at a time."""
    import numpy as np

    results: dict[str, float] = {}
    vae = random_vae()
    latent = torch.randn(1, 16, (frames - 1) // 4 + 1, height // 8, width // 8, device=DEVICE)
    with torch.no_grad():
        vae.decode(latent[:, :, :2, :8, :8])
        reset_peak()
        results["vae_decode_clip_s"], _ = synced(lambda: vae.decode(latent))
        results["vae_decode_peak_gib"] = peak_gib()
        video = torch.rand(1, 3, frames, height, width, device=DEVICE) * 2 - 1
        results["vae_encode_clip_s"], _ = synced(lambda: vae.encode(video))
        results["vae_encode_motion9_s"], _ = synced(lambda: vae.encode(video[:, :, :9]))
    vae = video = None
    empty_cache()

    clip = random_clip(tiny)
    image = torch.rand(1, 3, height, width, device=DEVICE) * 2 - 1
    with torch.no_grad():
        results["clip_encode_s"], _ = timed(lambda: clip.encode(image), 1, 3)
    clip = None

    wav2vec = random_wav2vec()
    samples = np.random.default_rng(0).standard_normal(frames * 640).astype(np.float32) * 0.1
    results["wav2vec2_embed_clip_audio_s"], _ = timed(lambda: wav2vec.embed(samples, frames), 1, 3)
    wav2vec = None

    t5 = random_umt5(tiny)
    ids = torch.randint(0, 256384, (2, 512), device=DEVICE)
    mask = torch.ones_like(ids)
    with torch.no_grad():
        results["umt5_encode_2_prompts_s"], _ = timed(lambda: t5(input_ids=ids, attention_mask=mask), 1, 3)
    t5 = None
    empty_cache()
    return results


def chunk_timing(model: InfiniteTalkDiT, clips: int, preset: str, height: int, width: int,
                 tiny: bool) -> dict[str, object]:
    """One chunk of `clips` clips through the generator's own pipeline, timed end to end (not extrapolated):
    prompt, CLIP and VAE conditioning, wav2vec2 features, every sampling step, VAE encodes and decodes."""
    import numpy as np

    from itk_common.constants import FPS, SAMPLES_PER_FRAME
    from itk_generator.infinitetalk.pipeline import ChunkRequest, InfiniteTalkPipeline, StepReport
    from itk_generator.infinitetalk.sampling import preset_plan
    from itk_generator.infinitetalk.text_encoder import TextEncoder
    from itk_generator.infinitetalk.tiny import unigram_tokenizer

    pipeline = InfiniteTalkPipeline(model, random_vae(), random_clip(tiny),
                                    TextEncoder(random_umt5(tiny), unigram_tokenizer(), DEVICE), random_wav2vec(),
                                    DEVICE)
    # The first clip gives all its frames, each later one all but the motion frames it starts from.
    motion_frames = 9
    frame_count = pipeline.clip_frames + (pipeline.clip_frames - motion_frames) * (clips - 1)
    rng = np.random.default_rng(0)
    request = ChunkRequest(
        image=rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
        audio=(rng.standard_normal(frame_count * SAMPLES_PER_FRAME) * 0.1).astype(np.float32),
        frame_count=frame_count, prompt="A woman is talking.", seed=0, plan=preset_plan(preset),
        motion_frames=motion_frames,
    )
    steps: list[StepReport] = []
    clip_ends = [0.0]
    frames = 0
    reset_peak()
    sync()
    start = time.perf_counter()
    for piece in pipeline.generate(request, on_step=steps.append):
        frames += len(piece)
        clip_ends.append(time.perf_counter() - start)
    total = clip_ends[-1]
    return {
        f"chunk_{preset}_clips": clips, f"chunk_{preset}_frames": frames,
        f"chunk_{preset}_total_s": round(total, 1),
        f"chunk_{preset}_clip_s": [round(float(s), 1) for s in np.diff(clip_ends)],
        f"chunk_{preset}_steps": len(steps),
        f"chunk_{preset}_peak_gib": round(peak_gib(), 2),
        f"chunk_{preset}_s_per_video_s": round(total / (frames / FPS), 1),
    }


def clips_only(model: InfiniteTalkDiT, args: argparse.Namespace, report: dict[str, object],
               save: Callable[[], None]) -> None:
    """Whole clips per preset through the pipeline: bf16 (blocks compiled) for turbo, then the same
    model in FP8 for every preset; the turbo clip's final latents FP8 against bf16 (same noise)."""
    from itk_generator.infinitetalk.pipeline import InfiniteTalkPipeline
    from itk_generator.infinitetalk.text_encoder import TextEncoder
    from itk_generator.infinitetalk.tiny import unigram_tokenizer
    from itk_generator.infinitetalk.vae import WanVAE

    presets = [p for p in args.clips.split(",") if p]
    vae_dtype = torch.bfloat16 if args.vae_dtype == "bf16" else torch.float32
    random = random_vae()
    vae = WanVAE(random.model.to(vae_dtype), DEVICE, vae_dtype)
    pipeline = InfiniteTalkPipeline(model, vae, random_clip(args.tiny),
                                    TextEncoder(random_umt5(args.tiny), unigram_tokenizer(), DEVICE),
                                    random_wav2vec(), DEVICE)
    report["clips_vae_dtype"] = args.vae_dtype
    dit_module.compile_blocks(model)
    with torch.no_grad():
        bf16_latents = turbo_latents(pipeline, args.height, args.width)  # also compiles
        clip_stage(pipeline, ["turbo"], 1, args.quality_steps, args.height, args.width, "bf16", report)
        print(json.dumps(report, default=str), flush=True)
        save()
        use_fp8_linears(model, "token")
        model.attention.fp8_self_attention = True
        compile_quantizers()
        dit_module.compile_blocks(model)
        empty_cache()
        fp8_latents = turbo_latents(pipeline, args.height, args.width)
        report["turbo_clip_latents_fp8_rel_err_vs_bf16"] = round(rel_err(fp8_latents, bf16_latents), 5)
        other_seed = torch.randn_like(bf16_latents)
        report["turbo_clip_latents_bf16_vs_unit_noise_rel"] = round(rel_err(other_seed, bf16_latents), 3)
        save()
        graphs = dynamo_graph_count()
        clip_stage(pipeline, presets, args.clip_count, args.quality_steps, args.height, args.width, "fp8", report)
        report["fp8_clips_recompiles_after_first_clip"] = dynamo_graph_count() - graphs
    width = max(len(k) for k in report)
    print("\n" + "\n".join(f"{k:<{width}}  {v}" for k, v in report.items()))
    save()


def default_sdpa_kernel(inputs_shape: tuple[int, int, int, int]) -> str:
    """Name the CUDA kernels torch's SDPA picks by default for the self-attention shape."""
    from torch.profiler import ProfilerActivity, profile

    q = torch.randn(*inputs_shape, device=DEVICE, dtype=torch.bfloat16)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        torch.nn.functional.scaled_dot_product_attention(q, q, q)
        sync()
    names = {event.name for event in prof.events() if event.device_type.name == "CUDA"}
    return "; ".join(sorted(name[:80] for name in names))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference-dir", type=Path, default=None)
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=832)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--kernels", default="sdpa,sdpa-cudnn,sdpa-flash",
                        help="attention backends to time ours and the reference with")
    parser.add_argument("--skip-compile", action="store_true")
    parser.add_argument("--skip-compile-blocks", action="store_true")
    parser.add_argument("--skip-offload", action="store_true")
    parser.add_argument("--skip-encoders", action="store_true")
    parser.add_argument("--chunk-clips", type=int, default=0,
                        help="also time a chunk of this many clips end to end through the pipeline (0: skip)")
    parser.add_argument("--chunk-preset", default="fast", choices=["fast", "quality"])
    parser.add_argument("--fp8", action="store_true",
                        help="after the bf16 timings, convert the model to FP8 (linears + self-attention), time it "
                             "blocks-compiled with its error against bf16, and time batched guidance forwards "
                             "(replaces the chunk and offload stages)")
    parser.add_argument("--clips", default="",
                        help="comma-separated presets (turbo,fast,quality): ONLY time whole clips through the "
                             "pipeline, bf16 and FP8, with the turbo clip's FP8-vs-bf16 latent error")
    parser.add_argument("--clip-count", type=int, default=2, help="clips per chunk for --clips (turbo, fast)")
    parser.add_argument("--quality-steps", type=int, default=3,
                        help="quality clips: steps timed before extrapolating to 40")
    parser.add_argument("--vae-dtype", default="bf16", choices=["bf16", "fp32"], help="VAE precision for --clips")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--tiny", action="store_true", help="a 2-layer narrow model: a quick check of this script")
    args = parser.parse_args()
    kernels = [k for k in args.kernels.split(",") if k]

    props = torch.cuda.get_device_properties(DEVICE) if ON_GPU else None
    report: dict[str, object] = {
        "gpu": props.name if props else "cpu", "gpu_memory_gib": round(props.total_memory / GIB, 1) if props else 0,
        "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
        "clip": f"{args.frames} frames {args.width}x{args.height}",
    }

    def save() -> None:  # after every stage, so a run cut short still leaves its numbers
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=2, default=str))

    def show(prefix: str) -> None:
        print(json.dumps({k: v for k, v in report.items() if k.startswith(prefix)}, default=str), flush=True)
        save()

    print(json.dumps(report), flush=True)
    config = DiTConfig(dim=128, ffn_dim=256, num_heads=2, num_layers=2) if args.tiny else DiTConfig()
    model = random_dit(config, "sdpa")
    if args.clips:
        clips_only(model, args, report, save)
        return
    report["dit_parameters_billion"] = round(sum(p.numel() for p in model.parameters()) / 1e9, 2)
    report["dit_weights_gib"] = round(sum(p.numel() * p.element_size() for p in model.parameters()) / GIB, 2)
    inputs = clip_inputs(config, args.frames, args.height, args.width)
    tokens = math.prod(inputs["latents"].shape[2:]) // 4
    report["tokens"] = tokens
    if ON_GPU:
        try:
            report["sdpa_default_kernels"] = default_sdpa_kernel((1, config.num_heads, tokens, config.head_dim))
        except Exception as err:
            report["sdpa_default_kernels"] = repr(err)

    def forward() -> torch.Tensor:
        return model(**inputs)

    reset_peak()
    with torch.no_grad():
        seconds, ours = timed(forward, 1, args.repeats)
    report["ours_output_max_abs"] = ours.abs().max().item()
    report["ours_output_nonfinite"] = int((~torch.isfinite(ours)).sum().item())
    report["ours_eager_sdpa_s_per_forward"] = round(seconds, 3)
    report["ours_eager_peak_gib"] = round(peak_gib(), 2)
    show("ours")

    if args.reference_dir is not None:
        for kernel in kernels:
            try:
                ref_seconds, ref_peak, ref_out = reference_forward(args.reference_dir, model, inputs, 1,
                                                                   args.repeats, kernel)
                report[f"reference_{kernel}_s_per_forward"] = round(ref_seconds, 3)
                report[f"reference_{kernel}_peak_gib"] = round(ref_peak, 2)
                if kernel == "sdpa":
                    report["output_max_abs_diff_vs_reference"] = (ours.float() - ref_out.float()).abs().max().item()
                    report["output_mean_abs_diff_vs_reference"] = (ours.float() - ref_out.float()).abs().mean().item()
                    report["reference_output_max_abs"] = ref_out.abs().max().item()
                    report["reference_output_mean_abs"] = ref_out.abs().mean().item()
                ref_out = None
            except Exception as err:  # keep the rest of the run
                report[f"reference_{kernel}_error"] = repr(err)[:300]
            gc.collect()
            empty_cache()
            show("reference")
        show("output")

    def time_kernels(mode: str) -> None:
        for kernel in kernels:
            try:
                model.attention.select(kernel)
                with torch.no_grad():
                    first, _ = synced(forward)
                    reset_peak()
                    seconds, out = timed(forward, 0, args.repeats)
                report[f"ours_{mode}_{kernel}_first_call_s"] = round(first, 1)
                report[f"ours_{mode}_{kernel}_s_per_forward"] = round(seconds, 3)
                report[f"ours_{mode}_{kernel}_peak_gib"] = round(peak_gib(), 2)
                report[f"ours_{mode}_{kernel}_max_abs_diff_vs_eager"] = (out.float() - ours.float()).abs().max().item()
                report[f"ours_{mode}_{kernel}_rel_diff_vs_eager"] = rel_err(out, ours)
                reference = report.get(f"reference_{kernel}_s_per_forward")
                if reference:
                    report[f"SPEEDUP_{mode}_{kernel}_vs_reference_{kernel}"] = round(reference / seconds, 3)
            except Exception as err:
                report[f"ours_{mode}_{kernel}_error"] = repr(err)[:300]
            show(f"ours_{mode}")
        model.attention.select("sdpa")

    if not args.skip_compile:
        dit_module.compile_elementwise()
        time_kernels("compiled")
    if not args.skip_compile_blocks:
        try:
            dit_module.compile_blocks(model)
            time_kernels("blocks_compiled")
        except Exception as err:
            report["blocks_compiled_error"] = repr(err)[:300]
    show("SPEEDUP")

    if args.fp8:
        try:
            fp8_forward_stage(model, inputs, ours, args.repeats, report)
            show("fp8")
            batching_stage(model, inputs, args.repeats, report, "fp8_guidance")
        except Exception as err:
            report["fp8_error"] = repr(err)[:600]
        show("fp8")
        for key in ("fp8_blocks_compiled_s_per_forward", "fp8_linears_only_blocks_compiled_s_per_forward"):
            if report.get(key) and report.get("reference_sdpa_s_per_forward"):
                report[f"SPEEDUP_{key.removesuffix('_s_per_forward')}_vs_reference_sdpa"] = round(
                    float(report["reference_sdpa_s_per_forward"]) / float(report[key]), 3)
        args.chunk_clips, args.skip_offload = 0, True  # the model now holds FP8 weights

    if args.chunk_clips:
        mode = ("blocks compiled" if not args.skip_compile_blocks else
                "elementwise compiled" if not args.skip_compile else "eager")
        try:
            report["chunk_dit_mode"] = mode
            report.update(chunk_timing(model, args.chunk_clips, args.chunk_preset, args.height, args.width,
                                       args.tiny))
        except Exception as err:
            report["chunk_error"] = repr(err)[:300]
        gc.collect()
        empty_cache()
        show("chunk")

    if not args.skip_offload:
        try:
            move_seconds, _ = synced(lambda: enable_block_offload(model, DEVICE))
            gc.collect()
            empty_cache()
            reset_peak()
            with torch.no_grad():
                seconds_o, streamed = timed(forward, 1, 1)
            report["offload_setup_s"] = round(move_seconds, 1)
            report["ours_offload_s_per_forward"] = round(seconds_o, 3)
            report["ours_offload_peak_gib"] = round(peak_gib(), 2)
            report["offload_vs_resident_max_abs_diff"] = (streamed.float() - ours.float()).abs().max().item()
            streamed = None
        except Exception as err:
            report["offload_error"] = repr(err)[:300]
        show("ours_offload")
    model = ours = None
    gc.collect()
    empty_cache()

    if not args.skip_encoders:
        try:
            timings = encoder_timings(args.frames, args.height, args.width, args.tiny)
            report.update({k: round(v, 3) for k, v in timings.items()})
        except Exception as err:
            report["encoders_error"] = repr(err)

    per_clip_fixed = float(report.get("vae_decode_clip_s", 0.0)) + float(report.get("vae_encode_motion9_s", 0.0))
    for key in [k for k in report if k.endswith("_s_per_forward")]:
        forward_seconds = float(report[key])
        for preset, forwards in (("quality_40x3", 120), ("fast_8x2", 16)):
            name = key.removesuffix("_s_per_forward")
            report[f"EXTRAPOLATED_{name}_{preset}_s_per_clip"] = round(forward_seconds * forwards + per_clip_fixed, 1)
    report["note"] = ("EXTRAPOLATED_* = measured s/forward x forwards per clip (120 or 16) + measured VAE decode of "
                      "one clip + VAE encode of 9 motion frames (0 where not measured in this run); "
                      "not a timed end-to-end clip")

    width = max(len(k) for k in report)
    print("\n" + "\n".join(f"{k:<{width}}  {v}" for k, v in report.items()))
    save()


if __name__ == "__main__":
    main()
