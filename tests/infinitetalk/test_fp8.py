"""FP8 precision on the CPU: the reference implementation of the e4m3 layers and attention, the
checkpoint formats, the tiny DiT in FP8 against fp32, and the start-up checks."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from itk_common.config import ConfigError
from itk_generator.backend import BackendError
from itk_generator.infinitetalk.attention import Attention
from itk_generator.infinitetalk.backend import InfiniteTalkBackend
from itk_generator.infinitetalk.dit import InfiniteTalkDiT, fp8_layer_names, use_fp8_linears
from itk_generator.infinitetalk.fp8 import (
    FP8_DTYPE,
    FP8_MAX,
    FP8Linear,
    FP8UnavailableError,
    dequantize,
    dequantize_state,
    quantize_per_row,
    quantize_state,
    require_fp8,
)
from itk_generator.infinitetalk.fp8_attention import fp8_attention, quantize_per_tensor_4d
from itk_generator.infinitetalk.pipeline import ChunkRequest
from itk_generator.infinitetalk.sampling import preset_plan
from itk_generator.infinitetalk.settings import InfiniteTalkSettings
from itk_generator.infinitetalk.tiny import TINY_DIT
from itk_generator.infinitetalk.weights import ModelPaths, load_dit_state_dict


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return ((value.double() - reference.double()).norm() / reference.double().norm()).item()


def test_per_row_quantization_keeps_each_row_within_e4m3_rounding() -> None:
    # rows of very different magnitudes: each gets its own scale, so none loses precision
    weight = torch.randn(64, 128) * torch.logspace(-4, 2, 64)[:, None]
    values, scale = quantize_per_row(weight)
    assert values.dtype == FP8_DTYPE and scale.shape == (64, 1)
    assert torch.allclose(values.float().abs().amax(dim=1), torch.full((64,), FP8_MAX))
    restored = dequantize(values, scale)
    per_row = ((restored - weight).norm(dim=1) / weight.norm(dim=1))
    assert per_row.max() < 0.04  # e4m3 has 3 mantissa bits: half a step is 1/16 at worst, ~2.5 % rms


@pytest.mark.parametrize("scaling", ["token", "tensor"])
def test_fp8_linear_matches_the_fp32_linear(scaling: str) -> None:
    torch.manual_seed(0)
    layer = nn.Linear(256, 128)
    x = torch.randn(4, 50, 256)
    x[0, 3] *= 100  # an outlier token
    fp8 = FP8Linear.from_linear(layer, scaling)
    out = fp8(x)
    assert out.shape == (4, 50, 128) and out.dtype == torch.float32
    error = relative_error(out, layer(x))
    assert error < 0.05
    # the same arithmetic by hand: dequantized operands multiplied in fp64
    x_q, x_scale = quantize_per_row(x.reshape(-1, 256)) if scaling == "token" else (None, None)
    if x_q is not None:
        manual = (dequantize(x_q, x_scale).double() @ fp8.dequantized_weight().double().t() + layer.bias.double())
        assert torch.allclose(out.reshape(-1, 128).double(), manual, rtol=1e-5, atol=1e-5)


def test_per_token_scales_protect_ordinary_tokens_from_an_outlier() -> None:
    torch.manual_seed(1)
    layer = nn.Linear(128, 64, bias=False)
    x = torch.randn(32, 128)
    # e4m3 is floating point: a per-tensor scale only hurts once the range exceeds its ~2^15
    # normal range, pushing ordinary tokens into the coarse subnormals
    x[0] *= 1e5
    ordinary = slice(1, None)
    token_error = relative_error(FP8Linear.from_linear(layer, "token")(x)[ordinary], layer(x)[ordinary])
    tensor_error = relative_error(FP8Linear.from_linear(layer, "tensor")(x)[ordinary], layer(x)[ordinary])
    assert token_error < 0.05 < tensor_error


def test_fp8_attention_reference_is_close_to_exact_attention() -> None:
    torch.manual_seed(2)
    q, k, v = (torch.randn(1, 300, 2, 64) for _ in range(3))
    exact = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)
    out = fp8_attention(q, k, v)
    assert out.shape == q.shape and out.dtype == q.dtype
    assert relative_error(out, exact) < 0.06
    q8, scale = quantize_per_tensor_4d(q)
    assert q8.dtype == FP8_DTYPE and scale.shape == (1, 1, 1, 1) and q8.is_contiguous()


def tiny_inputs(seed: int = 3) -> dict[str, torch.Tensor]:
    config = TINY_DIT
    g = torch.Generator().manual_seed(seed)
    frames, height, width = 5, 8, 8
    latent_frames = (frames - 1) // 4 + 1
    return {
        "latents": torch.randn(1, 16, latent_frames, height, width, generator=g),
        "timesteps": torch.tensor([700.0]),
        "text": torch.randn(1, config.text_len, config.text_dim, generator=g),
        "clip_features": torch.randn(1, 257, config.clip_dim, generator=g),
        "condition": torch.randn(1, 20, latent_frames, height, width, generator=g),
        "audio": torch.randn(1, frames, config.audio_window, config.audio_layers, config.audio_channels, generator=g),
    }


def test_tiny_dit_forward_in_fp8_stays_close_to_fp32() -> None:
    torch.manual_seed(4)
    model = InfiniteTalkDiT(TINY_DIT, Attention("sdpa")).eval()
    inputs = tiny_inputs()
    with torch.no_grad():
        exact = model(**inputs)
        use_fp8_linears(model)
        model.attention.fp8_self_attention = True
        quantized = model(**inputs)
    swapped = [name for name, module in model.named_modules() if isinstance(module, FP8Linear)]
    assert swapped == fp8_layer_names(TINY_DIT)
    assert torch.isfinite(quantized).all()
    assert relative_error(quantized, exact) < 0.08


def test_published_fp8_checkpoint_layout_loads_without_requantizing() -> None:
    torch.manual_seed(5)
    weight = torch.randn(32, 64)
    values, scale = quantize_per_row(weight)
    other, other_scale = quantize_per_row(torch.randn(16, 32))
    state = {"a.weight": values.clone(), "a.weight_scale": scale.flatten().clone(), "a.bias": torch.zeros(32),
             "b.weight": other, "b.weight_scale": other_scale}
    quantize_state(state, ["a"])
    assert torch.equal(state["a.weight"].view(torch.uint8), values.view(torch.uint8))  # kept bit for bit
    assert state["a.weight_scale"].shape == (32, 1)
    # a quantized layer the model does not run in FP8 is dequantized for it
    assert "b.weight_scale" not in state and state["b.weight"].dtype == torch.bfloat16
    plain = dequantize_state({"a.weight": values, "a.weight_scale": scale.flatten(), "a.bias": torch.ones(32)},
                             torch.float32)
    assert set(plain) == {"a.weight", "a.bias"} and relative_error(plain["a.weight"], weight) < 0.04


def test_single_file_fp8_dit_loads_quantized_or_dequantized(tiny_model_dir: Path, tmp_path: Path) -> None:
    paths = ModelPaths.from_root(tiny_model_dir)
    reference = load_dit_state_dict(paths, dtype=torch.float32)
    adapter_keys = {name for name in reference if name.startswith("audio_proj.") or ".audio_cross_attn." in name
                    or ".norm_x." in name}
    single = {}
    for name, tensor in reference.items():
        if name in adapter_keys:
            continue
        layer = name.removesuffix(".weight")
        if name.endswith(".weight") and layer in fp8_layer_names(TINY_DIT):
            single[f"model.diffusion_model.{name}"], scale = quantize_per_row(tensor)
            single[f"model.diffusion_model.{layer}.weight_scale"] = scale
        else:
            single[f"model.diffusion_model.{name}"] = tensor.to(torch.bfloat16)
    dit_file = tmp_path / "distilled_fp8.safetensors"
    save_file(single, dit_file)

    kept = load_dit_state_dict(paths, dtype=torch.bfloat16, dit_file=dit_file, keep_fp8=True)
    assert kept["blocks.0.ffn.0.weight"].dtype == FP8_DTYPE and "blocks.0.ffn.0.weight_scale" in kept
    plain = load_dit_state_dict(paths, dtype=torch.bfloat16, dit_file=dit_file)
    assert set(plain) == set(reference)
    assert plain["blocks.0.ffn.0.weight"].dtype == torch.bfloat16
    assert relative_error(plain["blocks.0.ffn.0.weight"], reference["blocks.0.ffn.0.weight"]) < 0.04


def test_fp8_backend_renders_on_the_cpu_reference(tiny_model_dir: Path) -> None:
    from tests.helpers.audio import speech_like
    from tests.infinitetalk.test_backend_service import CLIP_FRAMES

    settings = InfiniteTalkSettings(model_dir=tiny_model_dir, device="cpu", dtype="fp8", fp8_attention="on",
                                    preset="turbo", clip_frames=CLIP_FRAMES, size=(32, 32), vae_dtype="bf16",
                                    vae_tiling=True, guidance_batch=True)
    backend = InfiniteTalkBackend(settings)
    backend.load()
    pipeline = backend.pipeline
    assert pipeline is not None and pipeline.batch_guidance
    assert pipeline.vae.dtype == torch.bfloat16 and pipeline.vae.model.use_tiling
    dit = pipeline.dit
    assert dit.attention.fp8_self_attention
    block = dit.blocks[0]
    assert isinstance(block.ffn[0], FP8Linear) and isinstance(block.audio_cross_attn.proj, FP8Linear)
    assert not isinstance(block.audio_cross_attn.kv_linear, FP8Linear)
    assert not isinstance(dit.audio_proj.proj1, FP8Linear) and not isinstance(dit.head.head, FP8Linear)

    audio = speech_like(CLIP_FRAMES / 25, pause_every_sec=10.0, seed=1).astype(np.float32)
    image = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    chunk = ChunkRequest(image=image, audio=audio, frame_count=CLIP_FRAMES, prompt="a person talking", seed=3,
                         plan=preset_plan("turbo"), motion_frames=9)
    reports: list = []
    frames = np.concatenate(list(pipeline.generate(chunk, reports.append)))
    assert frames.shape == (CLIP_FRAMES, 32, 32, 3) and len(reports) == 4
    assert frames.std() > 0


def test_fp8_settings_are_checked_at_start() -> None:
    require_fp8("cpu")  # the reference implementation
    with pytest.raises(ConfigError, match="FP8_ACTIVATION_SCALING"):
        InfiniteTalkSettings(model_dir=Path("."), device="cpu", dtype="fp8", fp8_activation_scaling="channel")
    with pytest.raises(ConfigError, match="BLOCK_OFFLOAD"):
        InfiniteTalkSettings(model_dir=Path("."), device="cpu", dtype="fp8", block_offload=True)
    with pytest.raises(ConfigError, match="VAE_DTYPE"):
        InfiniteTalkSettings(model_dir=Path("."), device="cpu", vae_dtype="fp8")


def test_a_gpu_without_fp8_is_a_start_up_error_naming_the_setting(monkeypatch: pytest.MonkeyPatch,
                                                                   tiny_model_dir: Path) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA A100-SXM4-80GB")
    with pytest.raises(FP8UnavailableError, match=r"DTYPE=fp8 .* A100.*\(8\.0\)"):
        require_fp8("cuda:0")
    backend = InfiniteTalkBackend(InfiniteTalkSettings(model_dir=tiny_model_dir, device="cuda:0", dtype="fp8"))
    with pytest.raises(BackendError, match="DTYPE=fp8"):
        backend.load()
    assert math.isclose(FP8_MAX, 448.0)


def test_speed_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path) -> None:
    for name, value in {"MODEL_DIR": str(tiny_model_dir), "DEVICE": "cpu", "DTYPE": "fp8",
                        "FP8_ACTIVATION_SCALING": "tensor", "FP8_ATTENTION": "off", "VAE_DTYPE": "bf16",
                        "VAE_TILING": "true", "GUIDANCE_BATCH": "1", "DIT_PATH": "/models/distilled.safetensors",
                        "INFINITETALK_PRESET": "turbo", "VAE_FUSED_NORMS": "1", "VAE_TIME_CHUNK": "4"}.items():
        monkeypatch.setenv(name, value)
    settings = InfiniteTalkSettings.from_env()
    assert (settings.dtype, settings.fp8_activation_scaling, settings.fp8_attention) == ("fp8", "tensor", "off")
    assert (settings.vae_dtype, settings.vae_tiling, settings.guidance_batch) == ("bf16", True, True)
    assert settings.dit_path == Path("/models/distilled.safetensors") and settings.preset == "turbo"
    assert settings.torch_dtype == torch.bfloat16  # everything that is not an FP8 GEMM runs in bf16
    assert (settings.vae_fused_norms, settings.vae_time_chunk) == (True, 4)
    # Unset: the fused norms on a GPU (measured faster there), diffusers' own norms on the CPU.
    default = InfiniteTalkSettings(model_dir=tiny_model_dir, device="cpu")
    assert default.vae_fused_norms is None and not default.fused_vae_norms
    assert replace(default, device="cuda:0").fused_vae_norms
    assert not replace(default, device="cuda:0", vae_fused_norms=False).fused_vae_norms
    monkeypatch.setenv("VAE_TIME_CHUNK", "0")
    with pytest.raises(ConfigError, match="VAE_TIME_CHUNK"):
        InfiniteTalkSettings.from_env()
    monkeypatch.setenv("VAE_TIME_CHUNK", "2")
    monkeypatch.setenv("FP8_ATTENTION", "sometimes")
    with pytest.raises(ConfigError, match="FP8_ATTENTION"):
        InfiniteTalkSettings.from_env()
