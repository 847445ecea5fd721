"""Schedule values, guidance arithmetic, Euler steps, motion-frame conditioning and TeaCache."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from itk_generator.infinitetalk.sampling import (
    COND,
    NO_AUDIO,
    NO_TEXT,
    TEACACHE_COEFFICIENTS,
    UNCOND,
    SamplingPlan,
    TeaCache,
    combine_guidance,
    denoise_clip,
    flow_timesteps,
    preset_plan,
    with_overrides,
)


def test_quality_schedule_values() -> None:
    timesteps = flow_timesteps(40, 7.0).tolist()
    assert len(timesteps) == 41
    assert timesteps[0] == pytest.approx(1000.0)
    assert timesteps[-1] == 0.0
    # step 20: linear t = 1000 - 20 * 999 / 39, shifted by 7t / (1 + 6t) on [0, 1]
    t = (1000 - 20 * 999 / 39) / 1000
    assert timesteps[20] == pytest.approx(7 * t / (1 + 6 * t) * 1000, rel=1e-6)
    assert all(a > b for a, b in itertools.pairwise(timesteps))


def test_fast_schedule_values() -> None:
    expected = [1000.0, 923.1597, 833.5277, 727.6197, 600.5598, 445.3081, 251.3115, 1.998, 0.0]
    assert flow_timesteps(8, 2.0).tolist() == pytest.approx(expected, abs=1e-3)


def test_presets_follow_the_reference_defaults() -> None:
    quality = preset_plan("quality", "480p")
    assert (quality.steps, quality.shift, quality.text_guidance, quality.audio_guidance) == (40, 7.0, 5.0, 4.0)
    assert quality.branches == (COND, NO_TEXT, UNCOND)
    assert preset_plan("quality", "720p").shift == 11.0
    fast = preset_plan("fast")
    assert (fast.steps, fast.shift, fast.text_guidance, fast.audio_guidance) == (8, 2.0, 1.0, 2.0)
    assert fast.branches == (COND, NO_AUDIO)
    assert with_overrides(fast, steps=4, audio_guidance=6.0) == SamplingPlan(4, 2.0, 1.0, 6.0)
    with pytest.raises(ValueError, match="unknown preset"):
        preset_plan("lightning")


def test_guidance_arithmetic() -> None:
    cond, no_text, uncond = torch.tensor([3.0]), torch.tensor([2.0]), torch.tensor([0.5])
    three_way = combine_guidance({COND: cond, NO_TEXT: no_text, UNCOND: uncond}, preset_plan("quality"))
    assert three_way.item() == pytest.approx(0.5 + 5 * (3 - 2) + 4 * (2 - 0.5))
    two_way = combine_guidance({COND: cond, NO_AUDIO: uncond}, preset_plan("fast"))
    assert two_way.item() == pytest.approx(0.5 + 2 * (3 - 0.5))


def test_euler_on_the_shifted_schedule_recovers_a_straight_flow() -> None:
    """With the exact flow of x_t = (1 - s) x0 + s * noise, Euler lands on x0; motion frames stay clean."""
    g = torch.Generator().manual_seed(0)
    target = torch.randn(16, 5, 4, 6, generator=g)
    noise = torch.randn(16, 5, 4, 6, generator=g)
    motion = target[:, :2]
    seen: list[tuple[str, float]] = []

    def predict(latent, t, branch, cache):
        assert torch.equal(latent[:, :2], motion)
        seen.append((branch, float(t)))
        return (latent - target) / (float(t) / 1000)  # the velocity noise - x0 along the straight path

    plan = SamplingPlan(steps=6, shift=3.0, text_guidance=1.0, audio_guidance=2.0)
    steps: list[int] = []
    out = denoise_clip(noise, motion, plan, predict, steps.append)
    assert torch.allclose(out, target, atol=1e-4)
    assert torch.equal(out[:, :2], motion)
    assert steps == list(range(6))
    assert [branch for branch, _ in seen] == [COND, NO_AUDIO] * 6
    assert seen[0][1] == pytest.approx(1000.0)


def test_motion_frames_overwrite_the_first_latents_at_every_step() -> None:
    noise = torch.randn(4, 6, 2, 2)
    motion = torch.full((4, 3, 2, 2), 7.0)
    calls = []

    def predict(latent, t, branch, cache):
        calls.append(latent.clone())
        return torch.ones_like(latent)

    out = denoise_clip(noise, motion, SamplingPlan(3, 5.0, 5.0, 4.0), predict)
    assert len(calls) == 9
    assert all(torch.equal(call[:, :3], motion) for call in calls)
    # the rest moved by the guided prediction (uncond + 5*0 + 4*0 = 1) times the summed step sizes
    assert torch.allclose(out[:, 3:], noise[:, 3:] - 1.0, atol=1e-5)
    assert torch.equal(out[:, :3], motion)


def test_teacache_skips_only_after_warmup_and_under_threshold() -> None:
    cache = TeaCache(TEACACHE_COEFFICIENTS["480p"], threshold=1e9, warmup_steps=2)
    cache.residual = torch.zeros(1)
    decisions = [cache.should_compute(torch.full((1, 6, 4), 1.0 + i / 100)) for i in range(5)]
    assert decisions == [True, True, False, False, False]
    never = TeaCache([0.0, 0.0, 0.0, 0.0, 1.0], threshold=0.5, warmup_steps=1)
    never.residual = torch.zeros(1)
    assert all(never.should_compute(torch.ones(1, 6, 4) * (1 + i)) for i in range(4))
    assert np.poly1d(TEACACHE_COEFFICIENTS["480p"])(0.0) == pytest.approx(0.132517977)


def test_teacache_reuses_the_block_residual() -> None:
    from itk_generator.infinitetalk.dit import InfiniteTalkDiT

    from .test_dit import TINY, random_inputs

    torch.manual_seed(0)
    model = InfiniteTalkDiT(TINY).eval()
    inputs = random_inputs()
    cache = TeaCache(TEACACHE_COEFFICIENTS["480p"], threshold=1e9, warmup_steps=1)
    with torch.no_grad():
        computed = model(**inputs, cache=cache)
        reused = model(**inputs, cache=cache)
    assert cache.skipped == 1
    assert torch.allclose(computed, reused, atol=1e-5)
