"""The Wan2.1 VAE loads from the original key layout into diffusers' AutoencoderKLWan exactly."""

from __future__ import annotations

import pytest
import torch

from itk_generator.infinitetalk.tiny import TINY_VAE
from itk_generator.infinitetalk.vae import (
    LATENT_MEAN,
    LATENT_STD,
    VAEShape,
    WanVAE,
    to_diffusers_keys,
    to_original_keys,
)
from itk_generator.infinitetalk.weights import ModelPaths, WeightsError, read_torch_file


@pytest.fixture(scope="module")
def vae_path(tiny_model_dir):
    return ModelPaths.from_root(tiny_model_dir).vae


@pytest.fixture(scope="module")
def vae(vae_path):
    return WanVAE.load(vae_path)


def test_file_is_in_the_original_layout(vae_path):
    """Names and shapes as wan/modules/vae.py lays them out (flat Sequentials, CausalConv3d, RMS_norm)."""
    state = read_torch_file(vae_path)
    base = TINY_VAE.base_dim
    assert state["encoder.conv1.weight"].shape == (base, 3, 3, 3, 3)
    assert state["encoder.downsamples.0.residual.0.gamma"].shape == (base, 1, 1, 1)
    assert "encoder.downsamples.2.resample.1.weight" in state  # spatial-only downsample
    assert "encoder.downsamples.2.time_conv.weight" not in state
    assert state["encoder.downsamples.5.time_conv.weight"].shape == (2 * base, 2 * base, 3, 1, 1)
    assert "encoder.middle.1.to_qkv.weight" in state and "encoder.head.2.weight" in state
    assert state["conv1.weight"].shape == (32, 32, 1, 1, 1) and state["conv2.weight"].shape == (16, 16, 1, 1, 1)
    # decoder: 3 residual blocks then an upsampler per stage; the first two stages upsample in time
    assert state["decoder.upsamples.3.time_conv.weight"].shape == (8 * base, 4 * base, 3, 1, 1)
    assert "decoder.upsamples.7.time_conv.weight" in state
    assert "decoder.upsamples.11.resample.1.weight" in state
    assert "decoder.upsamples.11.time_conv.weight" not in state
    assert state["decoder.upsamples.4.shortcut.weight"].shape == (4 * base, 2 * base, 1, 1, 1)
    assert "decoder.upsamples.14.residual.6.weight" in state and "decoder.upsamples.15.residual.0.gamma" not in state


def test_sizes_are_inferred_from_the_tensors(vae_path):
    assert VAEShape.infer(read_torch_file(vae_path)) == TINY_VAE


def test_loads_with_every_tensor_used(vae_path, vae):
    original = read_torch_file(vae_path)
    loaded = vae.model.state_dict()
    renamed = to_diffusers_keys(original, TINY_VAE)
    assert set(renamed) == set(loaded)
    assert all(torch.equal(loaded[name], renamed[name]) for name in loaded)
    assert set(to_original_keys(renamed, TINY_VAE)) == set(original)


def test_unexpected_or_missing_tensor_is_named(vae_path, tmp_path):
    state = read_torch_file(vae_path)
    state["encoder.middle.3.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "extra.pth")
    with pytest.raises(WeightsError, match=r"encoder\.middle\.3\.weight"):
        WanVAE.load(tmp_path / "extra.pth")
    del state["encoder.middle.3.weight"]
    del state["decoder.head.2.bias"]
    torch.save(state, tmp_path / "short.pth")
    with pytest.raises(WeightsError, match=r"decoder\.conv_out\.bias"):
        WanVAE.load(tmp_path / "short.pth")


def test_encode_decode_shapes_and_range(vae):
    torch.manual_seed(0)
    video = torch.rand(1, 3, 9, 32, 48) * 2 - 1
    latents = vae.encode(video)
    assert latents.shape == (1, 16, 3, 4, 6)
    decoded = vae.decode(latents)
    assert decoded.shape == (1, 3, 9, 32, 48)
    assert decoded.min() >= -1 and decoded.max() <= 1


def test_latents_are_normalised_per_channel(vae):
    torch.manual_seed(1)
    video = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    with torch.no_grad():
        raw = vae.model.encode(video).latent_dist.mean  # the posterior mean, before normalisation
        mean = torch.tensor(LATENT_MEAN).view(1, 16, 1, 1, 1)
        std = torch.tensor(LATENT_STD).view(1, 16, 1, 1, 1)
        torch.testing.assert_close(vae.encode(video), (raw - mean) / std)
        latents = torch.randn(1, 16, 2, 2, 2)
        torch.testing.assert_close(vae.decode(latents), vae.model.decode(latents * std + mean).sample.clamp(-1, 1))


def test_bf16_vae_stays_close_to_fp32(vae_path, vae):
    """VAE_DTYPE=bf16: the same weights in bf16 decode and encode within bf16 rounding of fp32."""
    half = WanVAE.load(vae_path, "cpu", torch.bfloat16)
    assert next(half.model.parameters()).dtype == torch.bfloat16
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 16, 3, 4, 4, generator=g)
    video32, video16 = vae.decode(latents), half.decode(latents)
    assert video16.dtype == torch.float32 and video16.shape == video32.shape
    assert (video16 - video32).norm() / video32.norm() < 0.05
    frames = torch.rand(1, 3, 5, 32, 32, generator=g) * 2 - 1
    encoded32, encoded16 = vae.encode(frames), half.encode(frames)
    assert (encoded16 - encoded32).norm() / encoded32.norm() < 0.05


def test_channels_last_layout_gives_the_same_video(vae_path, vae):
    """The GPU default (channels-last 3-D kernels and activations) changes the memory layout, not the
    values: decode and encode agree with the contiguous model to float rounding."""
    channels_last = WanVAE(WanVAE.load(vae_path).model, torch.device("cpu"), torch.float32, channels_last=True)
    kernels = [p for p in channels_last.model.parameters() if p.ndim == 5]
    assert kernels and all(p.is_contiguous(memory_format=torch.channels_last_3d) for p in kernels)
    assert all(p.is_contiguous() for p in vae.model.parameters())  # the CPU default stays contiguous
    g = torch.Generator().manual_seed(2)
    latents = torch.randn(1, 16, 3, 4, 6, generator=g)
    torch.testing.assert_close(channels_last.decode(latents), vae.decode(latents), atol=1e-5, rtol=1e-4)
    frames = torch.rand(1, 3, 5, 32, 48, generator=g) * 2 - 1
    torch.testing.assert_close(channels_last.encode(frames), vae.encode(frames), atol=1e-5, rtol=1e-4)
