"""umT5 encoder from Wan's key layout against a naive evaluation; tokenizer and prompt cleaning."""

from __future__ import annotations

import math

import pytest
import torch

from itk_generator.infinitetalk.text_encoder import TextEncoder, clean_prompt
from itk_generator.infinitetalk.weights import ModelPaths, WeightsError, read_torch_file


@pytest.fixture(scope="module")
def paths(tiny_model_dir):
    return ModelPaths.from_root(tiny_model_dir)


@pytest.fixture(scope="module")
def encoder(paths):
    return TextEncoder.load(paths.t5, paths.tokenizer_dir, "cpu", torch.float32)


def relative_bucket(distance: torch.Tensor, buckets: int = 32, max_distance: int = 128) -> torch.Tensor:
    half = buckets // 2
    bucket = (distance > 0).long() * half
    distance = distance.abs()
    exact = half // 2
    large = exact + (torch.log(distance.float().clamp(min=1) / exact) / math.log(max_distance / exact)
                     * (half - exact)).long()
    return bucket + torch.where(distance < exact, distance, large.clamp(max=half - 1))


def naive_t5(state: dict[str, torch.Tensor], ids: torch.Tensor) -> torch.Tensor:
    """Wan's T5 encoder equations (wan/modules/t5.py) for one unpadded sequence."""
    w = {key: value.float() for key, value in state.items()}

    def rms(x, weight):
        return weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)

    x = w["token_embedding.weight"][ids]
    length = ids.shape[0]
    distance = torch.arange(length)[None, :] - torch.arange(length)[:, None]
    for i in range(len({key.split(".")[1] for key in w if key.startswith("blocks.")})):
        p = f"blocks.{i}."
        heads = w[p + "pos_embedding.embedding.weight"].shape[1]
        bias = w[p + "pos_embedding.embedding.weight"][relative_bucket(distance)].permute(2, 0, 1)
        h = rms(x, w[p + "norm1.weight"])
        q, k, v = ((h @ w[p + f"attn.{n}.weight"].T).unflatten(-1, (heads, -1)).transpose(0, 1) for n in "qkv")
        attn = torch.softmax(q @ k.transpose(-1, -2) + bias, dim=-1) @ v  # T5: no 1/sqrt(d)
        x = x + attn.transpose(0, 1).flatten(1) @ w[p + "attn.o.weight"].T
        h = rms(x, w[p + "norm2.weight"])
        gate = torch.nn.functional.gelu(h @ w[p + "ffn.gate.0.weight"].T, approximate="tanh")
        x = x + ((h @ w[p + "ffn.fc1.weight"].T) * gate) @ w[p + "ffn.fc2.weight"].T
    return rms(x, w["norm.weight"])


def test_matches_a_naive_evaluation_per_prompt(paths, encoder):
    prompts = ["a person is talking to the camera", "hi"]
    states = encoder.encode(prompts)
    state = read_torch_file(paths.t5)
    for prompt, got in zip(prompts, states, strict=True):
        ids = encoder.tokenizer(prompt, return_tensors="pt").input_ids[0]
        assert ids[-1] == 1  # </s>
        assert got.shape == (len(ids), 32)
        torch.testing.assert_close(got, naive_t5(state, ids), atol=1e-4, rtol=1e-4)


def test_padding_does_not_change_a_prompt(encoder):
    alone = encoder.encode(["the man"])[0]
    batched = encoder.encode(["the man", "a woman is speaking to camera, talking"])[0]
    torch.testing.assert_close(alone, batched)


def test_long_prompts_are_cut_to_512_tokens(encoder):
    assert encoder.encode(["a " * 600])[0].shape[0] == 512


def test_prompt_cleaning():
    assert clean_prompt("  a &amp;amp; b \n\t c  ") == "a & b c"
    assert clean_prompt("cafÃ©") == "café"  # ftfy repairs mojibake


def test_renamed_tensor_is_named(paths, tmp_path):
    state = read_torch_file(paths.t5)
    state["blocks.1.ffn.gate.weight"] = state.pop("blocks.1.ffn.gate.0.weight")
    torch.save(state, tmp_path / "t5.pth")
    with pytest.raises(WeightsError, match=r"blocks\.1\.ffn\.gate\.0\.weight.*blocks\.1\.ffn\.gate\.weight"):
        TextEncoder.load(tmp_path / "t5.pth", paths.tokenizer_dir)
