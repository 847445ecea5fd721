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


def _with_uneven_norms(vae_path, dtype=torch.float32, **options) -> WanVAE:
    """The tiny VAE with every norm's gamma moved off 1 (a fresh file's are all ones), so a fused
    norm that dropped gamma or the scale would show."""
    loaded = WanVAE.load(vae_path)
    g = torch.Generator().manual_seed(3)
    for name, parameter in loaded.model.named_parameters():
        if name.endswith("gamma"):
            parameter.data = 1 + 0.3 * torch.randn(parameter.shape, generator=g)
    model = loaded.model if dtype == torch.float32 else loaded.model.to(dtype)
    return WanVAE(model, torch.device("cpu"), dtype, **options)


@pytest.mark.parametrize("time_chunk", [2, 3, 8])
@pytest.mark.parametrize("fused_norms", [False, True])
def test_fast_paths_decode_and_encode_the_same(vae_path, time_chunk, fused_norms):
    """VAE_TIME_CHUNK latent frames' worth per decoder and encoder call and VAE_FUSED_NORMS change how
    the VAE runs, not what it gives: the same frames and latents as diffusers' loops (one latent
    frame, 4 video frames per call) to float rounding, for chunks that divide the frames and chunks
    that do not."""
    plain = _with_uneven_norms(vae_path)
    fast = _with_uneven_norms(vae_path, time_chunk=time_chunk, fused_norms=fused_norms)
    assert fast.time_chunk == time_chunk
    if fused_norms:
        assert not any(type(m).__name__ == "WanRMS_norm" for m in fast.model.modules())
    g = torch.Generator().manual_seed(4)
    latents = torch.randn(1, 16, 7, 4, 6, generator=g)
    torch.testing.assert_close(fast.decode(latents), plain.decode(latents), atol=2e-5, rtol=1e-4)
    frames = torch.rand(1, 3, 17, 32, 48, generator=g) * 2 - 1
    torch.testing.assert_close(fast.encode(frames), plain.encode(frames), atol=2e-5, rtol=1e-4)


def test_fused_norms_in_bf16_round_no_worse_than_the_model(vae_path):
    """In bf16 the fused norm computes in fp32 and rounds once where the model rounds three times;
    against the fp32 decode it is at least as close as the model's own bf16 decode."""
    g = torch.Generator().manual_seed(5)
    latents = torch.randn(1, 16, 3, 4, 6, generator=g)
    reference = _with_uneven_norms(vae_path).decode(latents)
    plain = _with_uneven_norms(vae_path, torch.bfloat16).decode(latents)
    fused = _with_uneven_norms(vae_path, torch.bfloat16, fused_norms=True).decode(latents)

    def error(video):
        return ((video - reference).norm() / reference.norm()).item()

    assert error(fused) <= error(plain) * 1.05 + 1e-4


def test_compiled_fused_norms_match_and_stay_within_their_graphs(vae_path):
    """The GPU path compiles the fused norm once for every norm of the model (dynamic shapes): a
    channels-last bf16 decode and encode, as a GPU runs them, give the eager values and compile a
    handful of graphs, within the limit that fullgraph would otherwise turn into an error."""
    from torch._dynamo.utils import counters

    from itk_generator.infinitetalk import vae_fast_paths

    eager = _with_uneven_norms(vae_path, torch.bfloat16, channels_last=True, fused_norms=True, time_chunk=4)
    compiled = _with_uneven_norms(vae_path, torch.bfloat16, channels_last=True, time_chunk=4)
    assert vae_fast_paths.fuse_norms(compiled.model, compiled=True) > 0
    torch._dynamo.reset()
    counters.clear()
    g = torch.Generator().manual_seed(6)
    latents = torch.randn(1, 16, 6, 4, 6, generator=g)
    frames = torch.rand(1, 3, 5, 32, 48, generator=g) * 2 - 1
    torch.testing.assert_close(compiled.decode(latents), eager.decode(latents), atol=0.02, rtol=0.02)
    torch.testing.assert_close(compiled.encode(frames), eager.encode(frames), atol=0.05, rtol=0.05)
    assert 0 < counters["stats"]["unique_graphs"] <= vae_fast_paths.NORM_GRAPHS // 4


def test_fused_norms_fall_back_to_eager_when_the_compiler_fails(vae_path, monkeypatch, caplog):
    """A GPU whose compiler toolchain fails still decodes, with the same values, and says so once."""
    from torch._dynamo.exc import TorchDynamoException

    from itk_generator.infinitetalk import vae_fast_paths

    def broken(*args, **kwargs):
        raise TorchDynamoException("no C++ compiler here")

    monkeypatch.setattr(vae_fast_paths, "_compiled", broken)
    monkeypatch.setattr(vae_fast_paths, "_compile_failed", False)
    eager = _with_uneven_norms(vae_path, fused_norms=True)
    compiled = _with_uneven_norms(vae_path)
    vae_fast_paths.fuse_norms(compiled.model, compiled=True)
    latents = torch.randn(1, 16, 3, 4, 6, generator=torch.Generator().manual_seed(7))
    with caplog.at_level("WARNING"):
        torch.testing.assert_close(compiled.decode(latents), eager.decode(latents))
    warnings = [r.message for r in caplog.records if "VAE_FUSED_NORMS" in r.message]
    assert len(warnings) == 1 and "no C++ compiler here" in warnings[0]
    assert vae_fast_paths._compile_failed
