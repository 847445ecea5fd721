"""The `turbo` preset (4 steps, one forward each) and batched guidance forwards."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from itk_generator.infinitetalk.model_factory import build_pipeline
from itk_generator.infinitetalk.pipeline import ChunkRequest
from itk_generator.infinitetalk.sampling import (
    COND,
    NO_AUDIO,
    SamplingPlan,
    denoise_clip,
    flow_timesteps,
    preset_plan,
    with_overrides,
)
from itk_generator.infinitetalk.settings import InfiniteTalkSettings
from tests.helpers.audio import speech_like


def test_turbo_is_four_single_forward_steps_on_the_distilled_schedule() -> None:
    plan = preset_plan("turbo")
    assert (plan.steps, plan.branches) == (4, (COND,))
    # LightX2V's distillation schedule: 1000, 750, 500, 250 shifted by 5, then 0
    raw = torch.tensor([1000.0, 750.0, 500.0, 250.0])
    t = raw / 1000
    expected = torch.cat([5 * t / (1 + 4 * t) * 1000, torch.zeros(1)])
    assert torch.allclose(flow_timesteps(plan.steps, plan.shift, plan.linear_to_zero), expected)
    # an audio guidance override brings back the no-audio branch
    assert with_overrides(plan, audio_guidance=2.0).branches == (COND, NO_AUDIO)


def test_single_forward_steps_call_the_model_once_per_step() -> None:
    calls: list[str] = []

    def predict(latent, t, branch, cache):
        calls.append(branch)
        return torch.full_like(latent, 0.5)

    out = denoise_clip(torch.zeros(2, 3, 2, 2), torch.zeros(2, 1, 2, 2), preset_plan("turbo"), predict)
    assert calls == [COND] * 4
    # every step moves by -0.5 * dt; the timesteps run from 1000 to 0, so the total move is -0.5
    assert torch.allclose(out[:, 1:], torch.full_like(out[:, 1:], -0.5))


def test_batched_guidance_gives_the_same_steps_as_one_forward_per_branch() -> None:
    plan = SamplingPlan(steps=3, shift=3.0, text_guidance=5.0, audio_guidance=4.0)
    weights = {branch: index + 1.0 for index, branch in enumerate(plan.branches)}
    batches: list[tuple[str, ...]] = []

    def predict(latent, t, branch, cache):
        return latent * weights[branch] + t / 1000

    def predict_batch(latent, t, branches):
        batches.append(branches)
        return {branch: predict(latent, t, branch, None) for branch in branches}

    noise = torch.randn(2, 3, 2, 2)
    motion = torch.randn(2, 1, 2, 2)
    one_by_one = denoise_clip(noise, motion, plan, predict)
    batched = denoise_clip(noise, motion, plan, predict, predict_batch=predict_batch)
    assert batches == [plan.branches] * 3
    assert torch.equal(one_by_one, batched)


@pytest.mark.parametrize("preset", ["fast", "quality"])
def test_pipeline_batched_guidance_matches_separate_forwards(tiny_model_dir: Path, preset: str) -> None:
    size, clip_frames = 32, 13
    settings = InfiniteTalkSettings(model_dir=tiny_model_dir, device="cpu", dtype="fp32", clip_frames=clip_frames,
                                    size=(size, size))
    pipeline = build_pipeline(settings)
    audio = speech_like(clip_frames / 25, pause_every_sec=10.0, seed=1).astype(np.float32)
    image = np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)
    plan = with_overrides(preset_plan(preset), steps=2)
    chunk = ChunkRequest(image=image, audio=audio, frame_count=clip_frames, prompt="a person talking", seed=3,
                         plan=plan, motion_frames=9)
    separate = np.concatenate(list(pipeline.generate(chunk)))
    pipeline.batch_guidance = True
    batched = np.concatenate(list(pipeline.generate(chunk)))
    # the same arithmetic, batched: fp32 GEMMs over a different batch may round differently
    assert np.abs(separate.astype(int) - batched.astype(int)).max() <= 1


def test_pipeline_with_the_vae_fast_paths_renders_the_same_frames(tiny_model_dir: Path) -> None:
    """VAE_FUSED_NORMS and VAE_TIME_CHUNK reach the pipeline's VAE and leave a two-clip chunk's frames
    (decoded clips and the motion frames encoded between them) as they were, to a grey level."""
    size, clip_frames = 32, 13
    base = InfiniteTalkSettings(model_dir=tiny_model_dir, device="cpu", dtype="fp32", clip_frames=clip_frames,
                                size=(size, size))
    fast = replace(base, vae_fused_norms=True, vae_time_chunk=2)
    audio = speech_like(2 * clip_frames / 25, pause_every_sec=10.0, seed=1).astype(np.float32)
    image = np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)
    chunk = ChunkRequest(image=image, audio=audio, frame_count=2 * clip_frames - 4, prompt="a person talking",
                         seed=3, plan=with_overrides(preset_plan("turbo"), steps=2), motion_frames=9)
    videos = []
    for settings in (base, fast):
        pipeline = build_pipeline(settings)
        assert pipeline.vae.time_chunk == settings.vae_time_chunk
        videos.append(np.concatenate(list(pipeline.generate(chunk))))
    assert videos[0].shape == videos[1].shape
    assert np.abs(videos[0].astype(int) - videos[1].astype(int)).max() <= 1
