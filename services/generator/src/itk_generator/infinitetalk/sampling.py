"""Flow-matching sampling as InfiniteTalk runs it: shifted schedule, Euler steps, 2- or 3-way guidance.

Schedule: `steps` timesteps spaced linearly from 1000 down to 1, then 0, each shifted by
t' = s*t / (1 + (s-1)*t) on t in [0, 1]. The DiT returns the reference's "noise_pred" n (the
negative velocity); guidance combines the branches and each step is
x <- x - n * (t_i - t_{i+1}) / 1000.

Guidance, as in the reference:
- text scale != 1: three forwards, cond / no-text / no-text-no-audio,
  n = uncond + text * (cond - no_text) + audio * (no_text - uncond)
- text scale == 1 (step-distilled LoRAs): two forwards, cond / no-audio,
  n = no_audio + audio * (cond - no_audio)
- text and audio scales both 1 (step- and guidance-distilled weights, the `turbo` preset): one
  forward, n = cond.

The `turbo` schedule is the one LightX2V's 4-step Wan2.1 I2V weights were distilled on: the
timesteps 1000, 750, 500, 250 (then 0) shifted by 5, i.e. `linear_to_zero`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

from itk_common import catalogue

from .dit import ResidualCache

NUM_TRAIN_TIMESTEPS = 1000

COND, NO_TEXT, UNCOND, NO_AUDIO = "cond", "no_text", "uncond", "no_audio"


@dataclass(frozen=True)
class SamplingPlan:
    steps: int
    shift: float
    text_guidance: float
    audio_guidance: float
    teacache: bool = False
    teacache_threshold: float = 0.2
    # True: timesteps 1000 * (1 - i/steps) (1000, 750, 500, 250 for 4 steps), as step-distilled
    # weights were trained on; False: the reference's linspace(1000, 1, steps).
    linear_to_zero: bool = False

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if self.shift <= 0:
            raise ValueError(f"shift must be positive, got {self.shift}")

    @property
    def branches(self) -> tuple[str, ...]:
        """The forwards run per step, in the reference's order."""
        if math.isclose(self.text_guidance, 1.0) and math.isclose(self.audio_guidance, 1.0):
            return (COND,)
        if math.isclose(self.text_guidance, 1.0):
            return (COND, NO_AUDIO)
        return (COND, NO_TEXT, UNCOND)


def preset_plan(name: str, resolution: str = "480p") -> SamplingPlan:
    """The sampling plan of a catalogue preset (itk_common.catalogue) at a resolution family."""
    preset = catalogue.preset(name)
    return SamplingPlan(steps=preset.steps, shift=preset.shift[resolution], text_guidance=preset.text_guidance,
                        audio_guidance=preset.audio_guidance, linear_to_zero=preset.linear_to_zero)


def with_overrides(plan: SamplingPlan, steps: int = 0, shift: float = 0.0, text_guidance: float = 0.0,
                   audio_guidance: float = 0.0, teacache: bool = False) -> SamplingPlan:
    """Apply client overrides; zero means "keep the preset's value"."""
    return replace(
        plan,
        steps=steps or plan.steps,
        shift=shift or plan.shift,
        text_guidance=text_guidance or plan.text_guidance,
        audio_guidance=audio_guidance or plan.audio_guidance,
        teacache=teacache or plan.teacache,
    )


def shift_timesteps(timesteps: torch.Tensor, shift: float) -> torch.Tensor:
    t = timesteps / NUM_TRAIN_TIMESTEPS
    return shift * t / (1 + (shift - 1) * t) * NUM_TRAIN_TIMESTEPS


def flow_timesteps(steps: int, shift: float, linear_to_zero: bool = False) -> torch.Tensor:
    """The `steps + 1` shifted timesteps on the 0..1000 scale (last one 0), float32 as in the reference."""
    last = NUM_TRAIN_TIMESTEPS / steps if linear_to_zero else 1
    linear = np.append(np.linspace(NUM_TRAIN_TIMESTEPS, last, steps, dtype=np.float32), np.float32(0.0))
    return shift_timesteps(torch.from_numpy(linear), shift)


def combine_guidance(predictions: dict[str, torch.Tensor], plan: SamplingPlan) -> torch.Tensor:
    if len(predictions) == 1:
        return predictions[COND]
    audio = plan.audio_guidance
    if NO_AUDIO in predictions:
        return predictions[NO_AUDIO] + audio * (predictions[COND] - predictions[NO_AUDIO])
    cond, no_text, uncond = predictions[COND], predictions[NO_TEXT], predictions[UNCOND]
    return uncond + plan.text_guidance * (cond - no_text) + audio * (no_text - uncond)


def euler_step(latent: torch.Tensor, noise_pred: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor) -> torch.Tensor:
    return latent - noise_pred * ((t - t_next) / NUM_TRAIN_TIMESTEPS)


def overwrite_motion_frames(latent: torch.Tensor, motion_latent: torch.Tensor) -> torch.Tensor:
    """Put the clean conditioning latents [C, M, h, w] in the first M latent frames of [C, T, h, w].

    The reference also writes a re-noised copy there after each update, but overwrites it with
    the clean latents right after, so only the clean overwrite has an effect.
    """
    latent = latent.clone()
    latent[:, : motion_latent.shape[1]] = motion_latent.to(latent.dtype)
    return latent


# TeaCache (reference values, "use_ret_steps" mode): polynomial rescaling of the relative L1
# change of the modulation input, per resolution family; the first 5 steps always compute.
TEACACHE_COEFFICIENTS = {
    "480p": [2.57151496e05, -3.54229917e04, 1.40286849e03, -1.35890334e01, 1.32517977e-01],
    "720p": [8.10705460e03, 2.13393892e03, -3.72934672e02, 1.66203073e01, -4.17769401e-02],
}
TEACACHE_WARMUP_STEPS = 5


class TeaCache(ResidualCache):
    """Skips the DiT blocks of one guidance branch while the accumulated, rescaled change of the
    timestep modulation stays under the threshold, re-using that branch's last block residual."""

    def __init__(self, coefficients: tuple[float, ...] | list[float], threshold: float,
                 warmup_steps: int = TEACACHE_WARMUP_STEPS) -> None:
        self.rescale = np.poly1d(coefficients)
        self.threshold = threshold
        self.warmup_steps = warmup_steps
        self.calls = 0
        self.accumulated = 0.0
        self.previous: torch.Tensor | None = None
        self.residual: torch.Tensor | None = None
        self.skipped = 0

    def should_compute(self, modulation_input: torch.Tensor) -> bool:
        compute = True
        if self.calls < self.warmup_steps or self.previous is None or self.residual is None:
            self.accumulated = 0.0
        else:
            change = ((modulation_input - self.previous).abs().mean() / self.previous.abs().mean()).item()
            self.accumulated += float(self.rescale(change))
            if self.accumulated < self.threshold:
                compute = False
                self.skipped += 1
            else:
                self.accumulated = 0.0
        self.previous = modulation_input.clone()
        self.calls += 1
        return compute


# predict(latent [C, T, h, w], timestep [1], branch, cache) -> noise_pred [C, T, h, w]
Predictor = Callable[[torch.Tensor, torch.Tensor, str, ResidualCache | None], torch.Tensor]
# predict_batch(latent, timestep, branches) -> {branch: noise_pred}: all guidance branches of a
# step in one batched forward (not with TeaCache, whose caches are per branch).
BatchPredictor = Callable[[torch.Tensor, torch.Tensor, tuple[str, ...]], dict[str, torch.Tensor]]
# evaluate(predict, latent, timestep, branches, caches, predict_batch) -> noise_pred per branch: how
# one step's guidance forwards are run (on this device here; spread over devices by parallel/).
BranchEvaluator = Callable[
    [Predictor, torch.Tensor, torch.Tensor, tuple[str, ...], dict[str, ResidualCache | None], BatchPredictor | None],
    dict[str, torch.Tensor]]


def evaluate_branches(predict: Predictor, latent: torch.Tensor, t: torch.Tensor, branches: tuple[str, ...],
                      caches: dict[str, ResidualCache | None], predict_batch: BatchPredictor | None = None
                      ) -> dict[str, torch.Tensor]:
    """The step's forwards on this process's device: one batched forward with `predict_batch` (not
    with TeaCache, whose caches are per branch), else one after the other."""
    if predict_batch is not None and len(branches) > 1 and all(caches[branch] is None for branch in branches):
        return predict_batch(latent, t, branches)
    return {branch: predict(latent, t, branch, caches[branch]) for branch in branches}


def denoise_clip(
    noise: torch.Tensor,
    motion_latent: torch.Tensor,
    plan: SamplingPlan,
    predict: Predictor,
    on_step: Callable[[int], None] = lambda _step: None,
    teacache_coefficients: tuple[float, ...] | list[float] | None = None,
    predict_batch: BatchPredictor | None = None,
    evaluate: BranchEvaluator = evaluate_branches,
) -> torch.Tensor:
    """Run the whole schedule for one clip, keeping the motion latents clean; returns the final latent.

    With `predict_batch` (and no TeaCache) the guidance branches of each step run as one batched
    forward; otherwise one `predict` call per branch."""
    timesteps = flow_timesteps(plan.steps, plan.shift, plan.linear_to_zero).to(noise.device)
    caches: dict[str, ResidualCache | None] = {
        branch: TeaCache(teacache_coefficients or TEACACHE_COEFFICIENTS["480p"], plan.teacache_threshold)
        if plan.teacache else None
        for branch in plan.branches
    }
    latent = noise
    for index in range(plan.steps):
        t, t_next = timesteps[index], timesteps[index + 1]
        latent = overwrite_motion_frames(latent, motion_latent)
        predictions = evaluate(predict, latent, t.reshape(1), plan.branches, caches, predict_batch)
        latent = euler_step(latent, combine_guidance(predictions, plan), t, t_next)
        latent = overwrite_motion_frames(latent, motion_latent)
        on_step(index)
    return latent
