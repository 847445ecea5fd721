"""Denoising one clip: what its guidance forwards are conditioned on, and who runs the schedule.

The pipeline hands a `ClipDenoising` to its denoiser. `LocalDenoiser` runs the whole schedule on
this process's DiT; `parallel.ParallelDenoiser` spreads the same schedule over several devices
and returns the same latent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch

from .dit import InfiniteTalkDiT, ResidualCache
from .sampling import COND, NO_AUDIO, NO_TEXT, UNCOND, BatchPredictor, Predictor, SamplingPlan, denoise_clip


@dataclass
class ClipConditioning:
    """The DiT inputs of one clip besides the latent and the timestep, all batched [1, ...]."""

    text: torch.Tensor  # the prompt's umT5 states [1, text_len, text_dim]
    negative: torch.Tensor  # the negative prompt's
    clip_features: torch.Tensor  # [1, 257, clip_dim]
    condition: torch.Tensor  # mask and conditioning latent [1, 20, T, h, w]
    # audio windows [1, frames, window, layers, channels], or [1, persons, frames, ...] for several
    audio: torch.Tensor
    # Several persons: their regions then the background on the latent grid [persons + 1, h, w].
    person_masks: torch.Tensor | None = None
    _silence: torch.Tensor | None = field(default=None, repr=False)

    def branch_inputs(self, branch: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(prompt, audio) of a guidance branch, as the reference pairs them. The branches without
        audio get one person's silence also in a multi-person chunk (the reference's
        `zeros_like(audio)[-1:]`), so they run the one-person audio attention."""
        if self._silence is None:
            self._silence = torch.zeros_like(self.audio[:, 0] if self.audio.dim() == 6 else self.audio)
        return {COND: (self.text, self.audio), NO_TEXT: (self.negative, self.audio),
                UNCOND: (self.negative, self._silence), NO_AUDIO: (self.text, self._silence)}[branch]

    def tensors(self) -> dict[str, torch.Tensor]:
        tensors = {"text": self.text, "negative": self.negative, "clip_features": self.clip_features,
                   "condition": self.condition, "audio": self.audio}
        if self.person_masks is not None:
            tensors["person_masks"] = self.person_masks
        return tensors


def conditioned_predictor(dit: InfiniteTalkDiT, conditioning: ClipConditioning) -> Predictor:
    """predict(latent [C, T, h, w], t [1], branch, cache) for the sampler, on `dit`."""

    def predict(latent: torch.Tensor, t: torch.Tensor, branch: str, cache: ResidualCache | None) -> torch.Tensor:
        prompt, sound = conditioning.branch_inputs(branch)
        return dit(latent[None], t, prompt, conditioning.clip_features, conditioning.condition, sound, cache=cache,
                   person_masks=conditioning.person_masks)[0]

    return predict


def conditioned_batch_predictor(dit: InfiniteTalkDiT, conditioning: ClipConditioning) -> BatchPredictor:
    """predict_batch(latent, t, branches): the branches' forwards as one batched forward (per person
    count: in a multi-person chunk the branches without audio have one person's silence)."""

    def predict_group(latent: torch.Tensor, t: torch.Tensor, branches: list[str]) -> dict[str, torch.Tensor]:
        count = len(branches)
        inputs = [conditioning.branch_inputs(branch) for branch in branches]
        prompts = torch.cat([prompt for prompt, _sound in inputs])
        sounds = torch.cat([sound for _prompt, sound in inputs])
        clip_features, condition = conditioning.clip_features, conditioning.condition
        out = dit(latent[None].expand(count, *latent.shape), t.expand(count), prompts,
                  clip_features.expand(count, *clip_features.shape[1:]), condition.expand(count, *condition.shape[1:]),
                  sounds, person_masks=conditioning.person_masks)
        return dict(zip(branches, out, strict=True))

    def predict_batch(latent: torch.Tensor, t: torch.Tensor, branches: tuple[str, ...]) -> dict[str, torch.Tensor]:
        groups: dict[tuple[int, ...], list[str]] = {}
        for branch in branches:
            groups.setdefault(tuple(conditioning.branch_inputs(branch)[1].shape), []).append(branch)
        predictions: dict[str, torch.Tensor] = {}
        for group in groups.values():
            predictions.update(predict_group(latent, t, group))
        return {branch: predictions[branch] for branch in branches}

    return predict_batch


@dataclass
class ClipDenoising:
    """Everything one clip's sampling needs."""

    conditioning: ClipConditioning
    noise: torch.Tensor  # [C, T, h, w]
    motion_latent: torch.Tensor  # clean latents of the motion frames [C, M, h, w]
    plan: SamplingPlan
    teacache_coefficients: tuple[float, ...] | None = None
    batch_guidance: bool = False  # a step's guidance forwards as one batched forward (GUIDANCE_BATCH)

    def predictors(self, dit: InfiniteTalkDiT) -> tuple[Predictor, BatchPredictor | None]:
        batch = conditioned_batch_predictor(dit, self.conditioning) if self.batch_guidance else None
        return conditioned_predictor(dit, self.conditioning), batch


class Denoiser(Protocol):
    def __call__(self, clip: ClipDenoising, on_step: Callable[[int], None]) -> torch.Tensor:
        """The clip's final latent [C, T, h, w]; `on_step(index)` after every step."""
        ...


class LocalDenoiser:
    """Every forward of every step on this process's DiT."""

    def __init__(self, dit: InfiniteTalkDiT) -> None:
        self.dit = dit

    def __call__(self, clip: ClipDenoising, on_step: Callable[[int], None]) -> torch.Tensor:
        predict, predict_batch = clip.predictors(self.dit)
        return denoise_clip(clip.noise, clip.motion_latent, clip.plan, predict, on_step, clip.teacache_coefficients,
                            predict_batch)
