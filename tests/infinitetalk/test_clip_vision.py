"""The CLIP image tower, loaded from Wan's key layout, against a naive evaluation of the same ViT."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from itk_generator.infinitetalk.clip_vision import CLIP_MEAN, CLIP_STD, ClipVisionEncoder
from itk_generator.infinitetalk.weights import ModelPaths, WeightsError, read_torch_file


@pytest.fixture(scope="module")
def clip_path(tiny_model_dir):
    return ModelPaths.from_root(tiny_model_dir).clip


def naive_tower(state: dict[str, torch.Tensor], images: torch.Tensor, heads: int) -> torch.Tensor:
    """Pre-norm ViT as in wan/modules/clip.py: every block but the last, exact GELU, no final norm."""
    w = {key.removeprefix("visual."): value.float() for key, value in state.items()}
    pixels = F.interpolate(images, size=(224, 224), mode="bicubic", align_corners=False) * 0.5 + 0.5
    pixels = (pixels - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    patch = w["patch_embedding.weight"]
    x = F.conv2d(pixels, patch, stride=patch.shape[-1]).flatten(2).transpose(1, 2)
    x = torch.cat([w["cls_embedding"].expand(x.shape[0], -1, -1), x], dim=1) + w["pos_embedding"]
    width = x.shape[-1]
    x = F.layer_norm(x, (width,), w["pre_norm.weight"], w["pre_norm.bias"], 1e-5)
    blocks = len({key.split(".")[1] for key in w if key.startswith("transformer.")})
    for i in range(blocks - 1):
        p = f"transformer.{i}."
        h = F.layer_norm(x, (width,), w[p + "norm1.weight"], w[p + "norm1.bias"], 1e-5)
        q, k, v = (h @ w[p + "attn.to_qkv.weight"].T + w[p + "attn.to_qkv.bias"]).chunk(3, dim=-1)
        q, k, v = (t.unflatten(-1, (heads, -1)).transpose(1, 2) for t in (q, k, v))
        attn = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1) @ v
        x = x + attn.transpose(1, 2).flatten(2) @ w[p + "attn.proj.weight"].T + w[p + "attn.proj.bias"]
        h = F.layer_norm(x, (width,), w[p + "norm2.weight"], w[p + "norm2.bias"], 1e-5)
        h = F.gelu(h @ w[p + "mlp.0.weight"].T + w[p + "mlp.0.bias"])
        x = x + h @ w[p + "mlp.2.weight"].T + w[p + "mlp.2.bias"]
    return x


def test_matches_a_naive_evaluation(clip_path):
    encoder = ClipVisionEncoder.load(clip_path)
    torch.manual_seed(0)
    images = torch.rand(2, 3, 96, 64) * 2 - 1
    out = encoder.encode(images)
    assert out.shape == (2, 257, 80)
    expected = naive_tower(read_torch_file(clip_path), images, heads=1)
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)


def test_visual_tensors_load_strictly_and_text_ones_are_ignored(clip_path, tmp_path):
    state = read_torch_file(clip_path)
    assert "log_scale" in state  # a text-side tensor in the tiny file
    state["visual.transformer.0.attn.qkv.weight"] = state.pop("visual.transformer.0.attn.to_qkv.weight")
    torch.save(state, tmp_path / "renamed.pth")
    with pytest.raises(WeightsError) as caught:
        ClipVisionEncoder.load(tmp_path / "renamed.pth")
    assert "transformer.0.attn.to_qkv.weight" in str(caught.value)
    assert "transformer.0.attn.qkv.weight" in str(caught.value)


def test_half_precision_output(clip_path):
    encoder = ClipVisionEncoder.load(clip_path, dtype=torch.bfloat16)
    assert encoder.encode(torch.zeros(1, 3, 32, 32)).dtype == torch.bfloat16
