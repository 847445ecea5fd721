"""The fast paths of bench/gpu_infinitetalk.py: FP8, batched guidance and whole clips per preset.

- `fp8_forward_stage`: the DiT forward with FP8 linears (per-token activation scales) and FP8
  self-attention, blocks compiled, against the bf16 forward on the same weights and inputs
  (relative error of the output; FP8 linears alone too); whether a new timestep and new latents
  recompile anything.
- `batching_stage`: two guidance forwards as one batch-2 forward against two batch-1 forwards.
- `clip_stage`: whole clips through the generator's own pipeline (full-size random encoders and
  VAE) for the turbo, fast and quality presets, timed end to end; a quality clip is timed over its
  first `quality_steps` steps and extrapolated (said so in the keys); with `compare_latents` the
  turbo clip's final latents in FP8 against bf16 from the same noise.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from itk_generator.infinitetalk import dit as dit_module
from itk_generator.infinitetalk.dit import InfiniteTalkDiT, use_fp8_linears
from itk_generator.infinitetalk.fp8 import compile_quantizers

GIB = 1024**3


def rel_err(value: torch.Tensor, reference: torch.Tensor) -> float:
    return ((value.float() - reference.float()).norm() / reference.float().norm()).item()


def _timed(fn: Callable[[], torch.Tensor], repeats: int) -> tuple[float, float, torch.Tensor]:
    """First-call seconds (compilation included), mean seconds of `repeats` more calls, last output."""
    torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
    first = time.perf_counter() - start
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    torch.cuda.synchronize()
    return first, (time.perf_counter() - start) / repeats, out


def dynamo_graph_count() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def kernel_profile(fn: Callable[[], object]) -> dict[str, float]:
    """Seconds of CUDA kernel time of one call, by kind: attention, GEMM, everything else."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    kinds = {"attention": 0.0, "gemm": 0.0, "other": 0.0}
    top: dict[str, float] = {}
    for event in prof.key_averages():
        seconds = event.device_time_total / 1e6
        if seconds <= 0:
            continue
        name = event.key.lower()
        # Inductor's fused kernels are named after the ops they absorb ("..._scaled_mm_...",
        # "..._fp8_attention_..."), but they are the elementwise and quantization work around them.
        if name.startswith("triton_"):
            kinds["other"] += seconds
        elif any(word in name for word in ("sdpa", "fmha", "flash", "attention", "fprop")):
            kinds["attention"] += seconds
        elif any(word in name for word in ("gemm", "nvjet", "xmma", "cutlass", "scaled_mm", "matmul")):
            kinds["gemm"] += seconds
        else:
            kinds["other"] += seconds
        top[event.key[:90]] = seconds
    result = {f"kernel_s_{kind}": round(value, 3) for kind, value in kinds.items()}
    result["kernel_s_total"] = round(sum(kinds.values()), 3)
    for name, seconds in sorted(top.items(), key=lambda item: -item[1])[:8]:
        result[f"top_kernel {name}"] = round(seconds, 3)
    return result


def fp8_forward_stage(model: InfiniteTalkDiT, inputs: dict[str, torch.Tensor], bf16_out: torch.Tensor,
                      repeats: int, report: dict[str, object]) -> None:
    """Converts `model` to FP8 in place (its bf16 weights are freed) and times it."""
    def forward() -> torch.Tensor:
        return model(**inputs)

    with torch.no_grad():
        use_fp8_linears(model, "token")
        torch.cuda.empty_cache()
        report["fp8_weights_gib"] = round(sum(t.numel() * t.element_size() for t in model.state_dict().values())
                                          / GIB, 2)
        compile_quantizers()
        dit_module.compile_blocks(model)
        model.attention.fp8_self_attention = False
        first, seconds, out = _timed(forward, repeats)
        report["fp8_linears_only_blocks_compiled_s_per_forward"] = round(seconds, 3)
        report["fp8_linears_only_rel_err_vs_bf16"] = round(rel_err(out, bf16_out), 5)
        model.attention.fp8_self_attention = True
        first, seconds, out = _timed(forward, repeats)
        report["fp8_blocks_compiled_first_call_s"] = round(first, 1)
        report["fp8_blocks_compiled_s_per_forward"] = round(seconds, 3)
        report["fp8_blocks_compiled_peak_gib"] = round(torch.cuda.max_memory_allocated() / GIB, 2)
        report["fp8_rel_err_vs_bf16"] = round(rel_err(out, bf16_out), 5)
        report["fp8_max_abs_err_vs_bf16"] = round((out.float() - bf16_out.float()).abs().max().item(), 4)
        report["fp8_nonfinite"] = int((~torch.isfinite(out)).sum().item())
        # a clip's later steps and later clips: other timesteps, other latents, the same shapes
        graphs = dynamo_graph_count()
        changed = dict(inputs, timesteps=torch.tensor([333.0], device=bf16_out.device),
                       latents=torch.randn_like(inputs["latents"]))
        model(**changed)
        torch.cuda.synchronize()
        report["fp8_recompiles_on_new_timestep_and_latents"] = dynamo_graph_count() - graphs
        report.update({f"fp8_profile_{key}": value for key, value in kernel_profile(forward).items()})
        from itk_generator.infinitetalk.fp8_attention import plan_timings

        report["fp8_attention_cudnn_plan_ms"] = {shape: {index: round(ms, 2) for index, ms in timings.items()}
                                                 for shape, timings in plan_timings().items()}


def batching_stage(model: InfiniteTalkDiT, inputs: dict[str, torch.Tensor], repeats: int,
                   report: dict[str, object], label: str) -> None:
    """Two guidance branches (text vs no text) as one batch-2 forward against two forwards."""
    negative = torch.randn_like(inputs["text"])
    batched = {
        "latents": inputs["latents"].expand(2, *inputs["latents"].shape[1:]),
        "timesteps": inputs["timesteps"].expand(2),
        "text": torch.cat([inputs["text"], negative]),
        "clip_features": inputs["clip_features"].expand(2, *inputs["clip_features"].shape[1:]),
        "condition": inputs["condition"].expand(2, *inputs["condition"].shape[1:]),
        "audio": inputs["audio"].expand(2, *inputs["audio"].shape[1:]),
    }
    second = dict(inputs, text=negative)
    with torch.no_grad():
        _, pair, (out_a, out_b) = _timed(lambda: (model(**inputs), model(**second)), repeats)  # type: ignore[arg-type]
        first, together, both = _timed(lambda: model(**batched), repeats)
    report[f"{label}_two_forwards_s"] = round(pair, 3)
    report[f"{label}_one_batch2_forward_s"] = round(together, 3)
    report[f"{label}_batch2_first_call_s"] = round(first, 1)
    report[f"{label}_batch2_peak_gib"] = round(torch.cuda.max_memory_allocated() / GIB, 2)
    report[f"{label}_batch2_rel_diff"] = round(max(rel_err(both[0], out_a), rel_err(both[1], out_b)), 5)


class LatentRecorder:
    """Wraps a VAE; keeps the latents each decode was given (the clip's final latents)."""

    def __init__(self, vae) -> None:
        self.vae = vae
        self.latents: list[torch.Tensor] = []

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        return self.vae.encode(video)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        self.latents.append(latents.detach().float().cpu())
        return self.vae.decode(latents)


def run_chunk(pipeline, plan, clips: int, height: int, width: int, seed: int = 0) -> dict[str, object]:
    """One chunk of `clips` clips (81 frames, then 72 new ones each), timed clip by clip."""
    from itk_common.constants import FPS, SAMPLES_PER_FRAME
    from itk_generator.infinitetalk.pipeline import ChunkRequest

    motion_frames = 9
    frame_count = pipeline.clip_frames + (pipeline.clip_frames - motion_frames) * (clips - 1)
    rng = np.random.default_rng(seed)
    request = ChunkRequest(
        image=rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
        audio=(rng.standard_normal(frame_count * SAMPLES_PER_FRAME) * 0.1).astype(np.float32),
        frame_count=frame_count, prompt="A woman is talking.", seed=seed, plan=plan, motion_frames=motion_frames,
    )
    steps = []
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    ends = [0.0]
    frames = 0
    for piece in pipeline.generate(request, on_step=steps.append):
        frames += len(piece)
        ends.append(time.perf_counter() - start)
    return {"frames": frames, "total_s": round(ends[-1], 2), "clip_s": [round(float(s), 2) for s in np.diff(ends)],
            "steps": len(steps), "peak_gib": round(torch.cuda.max_memory_allocated() / GIB, 2),
            "video_s": frames / FPS}


def clip_stage(pipeline, presets: list[str], clips: int, quality_steps: int, height: int, width: int,
               label: str, report: dict[str, object]) -> None:
    """Whole clips per preset; GPU seconds per second of video from the clips' own frame counts."""
    from itk_generator.infinitetalk.sampling import preset_plan, with_overrides

    for preset in presets:
        plan = preset_plan(preset)
        extrapolate = preset == "quality" and quality_steps < plan.steps
        try:
            if extrapolate:
                # time the fixed parts (encodes, decode) and `quality_steps` steps, then scale the steps
                short = run_chunk(pipeline, with_overrides(plan, steps=quality_steps), 1, height, width)
                shorter = run_chunk(pipeline, with_overrides(plan, steps=1), 1, height, width)
                per_step = (short["total_s"] - shorter["total_s"]) / (quality_steps - 1)
                fixed = shorter["total_s"] - per_step
                total = fixed + per_step * plan.steps
                key = f"{label}_{preset}_EXTRAPOLATED_clip"
                report[f"{key}_s"] = round(total, 1)
                report[f"{key}_s_per_step_measured"] = round(per_step, 2)
                report[f"{key}_fixed_s_measured"] = round(fixed, 2)
                report[f"{key}_gpu_s_per_video_s"] = round(total / (short["frames"] / 25), 1)
                report[f"{key}_peak_gib"] = short["peak_gib"]
                continue
            result = run_chunk(pipeline, plan, clips, height, width)
            key = f"{label}_{preset}_{clips}clips"
            report[f"{key}_total_s"] = result["total_s"]
            report[f"{key}_clip_s"] = result["clip_s"]
            report[f"{key}_frames"] = result["frames"]
            report[f"{key}_peak_gib"] = result["peak_gib"]
            report[f"{key}_gpu_s_per_video_s"] = round(result["total_s"] / result["video_s"], 2)
            if clips > 1:  # a later clip adds 72 frames (2.88 s): the steady state of a long chunk
                report[f"{key}_later_clip_gpu_s_per_video_s"] = round(result["clip_s"][-1] / 2.88, 2)
        except Exception as err:
            report[f"{label}_{preset}_error"] = repr(err)[:300]


def turbo_latents(pipeline, height: int, width: int) -> torch.Tensor:
    """The final latents of one turbo clip (seed 0)."""
    from itk_generator.infinitetalk.sampling import preset_plan

    recorder = LatentRecorder(pipeline.vae)
    pipeline.vae = recorder
    try:
        run_chunk(pipeline, preset_plan("turbo"), 1, height, width)
    finally:
        pipeline.vae = recorder.vae
    return recorder.latents[-1]
