"""The DiT forward against a deliberately naive fp32 evaluation of the same equations.

The naive version reads the weights from the state dict by their checkpoint names and spells
every step out (explicit patch gathering, per-pair rotations, softmax attention by einsum,
hand-written norms and activations) without touching the module's own helpers.
"""

from __future__ import annotations

import math
import os
import sys
import types
from pathlib import Path

import pytest
import torch

from itk_generator.infinitetalk import DiTConfig, InfiniteTalkDiT
from itk_generator.infinitetalk.attention import Attention
from itk_generator.infinitetalk.dit import load_strict
from itk_generator.infinitetalk.offload import BlockStreamer

TINY = DiTConfig(dim=32, ffn_dim=48, freq_dim=16, text_dim=24, text_len=10, num_heads=2, num_layers=2,
                 clip_dim=20, audio_layers=3, audio_channels=4, audio_intermediate_dim=16,
                 audio_output_dim=12, audio_context_tokens=3)
GRID = (3, 4, 6)  # latent frames, latent height, latent width


def randomised_model(config: DiTConfig = TINY, seed: int = 0) -> InfiniteTalkDiT:
    torch.manual_seed(seed)
    model = InfiniteTalkDiT(config, Attention("sdpa")).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            fan_in = parameter.shape[-1] if parameter.ndim > 1 else 1
            parameter.copy_(torch.randn_like(parameter) / math.sqrt(fan_in) + (1.0 if parameter.ndim == 1 else 0.0)
                            * torch.rand_like(parameter))
    return model


def random_inputs(config: DiTConfig = TINY, grid: tuple[int, int, int] = GRID, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    frames, rows, cols = grid
    video_frames = 1 + config.vae_scale * (frames - 1)
    return {
        "latents": torch.randn(1, 16, frames, 2 * rows, 2 * cols, generator=g),
        "timesteps": torch.tensor([612.25]),
        "text": torch.randn(1, config.text_len, config.text_dim, generator=g),
        "clip_features": torch.randn(1, 257, config.clip_dim, generator=g),
        "condition": torch.randn(1, config.in_dim - 16, frames, 2 * rows, 2 * cols, generator=g),
        "audio": torch.randn(1, video_frames, config.audio_window, config.audio_layers, config.audio_channels,
                             generator=g),
    }


# ---------------------------------------------------------------- the naive reference


def linear(w: dict, name: str, x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("...i,oi->...o", x, w[f"{name}.weight"]) + w[f"{name}.bias"]


def norm(x: torch.Tensor, eps: float, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None):
    mean = x.mean(-1, keepdim=True)
    variance = ((x - mean) ** 2).mean(-1, keepdim=True)
    out = (x - mean) / torch.sqrt(variance + eps)
    if weight is not None:
        out = out * weight + bias
    return out


def rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * weight


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def gelu_erf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def silu(x: torch.Tensor) -> torch.Tensor:
    return x / (1 + torch.exp(-x))


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """q [Lq, D], k/v [Lk, D] -> [Lq, D], heads split along D."""
    d = q.shape[-1] // heads
    outputs = []
    for h in range(heads):
        qh, kh, vh = (t[:, h * d:(h + 1) * d] for t in (q, k, v))
        scores = torch.einsum("qd,kd->qk", qh, kh) / math.sqrt(d)
        weights = torch.exp(scores - scores.max(-1, keepdim=True).values)
        outputs.append(torch.einsum("qk,kd->qd", weights / weights.sum(-1, keepdim=True), vh))
    return torch.cat(outputs, dim=-1)


def rotate(x: torch.Tensor, positions: list[tuple[int, int, int]], heads: int, theta: float = 10000.0):
    """Per token and head, rotate channel pairs (2i, 2i+1) by position * frequency, axis by axis."""
    d = x.shape[-1] // heads
    pairs = d // 2
    axis_pairs = [pairs - 2 * (pairs // 3), pairs // 3, pairs // 3]
    angles_per_token = []
    for position in positions:
        angles = []
        for axis, count in enumerate(axis_pairs):
            for i in range(count):
                angles.append(position[axis] * theta ** (-(2 * i) / (2 * count)))
        angles_per_token.append(angles)
    angles = torch.tensor(angles_per_token, dtype=torch.float64).float()  # [L, pairs]
    out = x.clone()
    for h in range(heads):
        for p in range(pairs):
            a, b = h * d + 2 * p, h * d + 2 * p + 1
            cos, sin = torch.cos(angles[:, p]), torch.sin(angles[:, p])
            out[:, a] = x[:, a] * cos - x[:, b] * sin
            out[:, b] = x[:, a] * sin + x[:, b] * cos
    return out


def naive_forward(w: dict, c: DiTConfig, latents, timesteps, text, clip_features, condition, audio):
    x_in = torch.cat([latents, condition], dim=1)[0]  # [C, T, H, W]
    frames, height, width = x_in.shape[1:]
    rows, cols = height // 2, width // 2
    tokens, positions = [], []
    for f in range(frames):
        for r in range(rows):
            for s in range(cols):
                patch = x_in[:, f, 2 * r:2 * r + 2, 2 * s:2 * s + 2]
                tokens.append(torch.einsum("cpq,ocpq->o", patch, w["patch_embedding.weight"][:, :, 0])
                              + w["patch_embedding.bias"])
                positions.append((f, r, s))
    x = torch.stack(tokens)  # [L, dim]

    half = c.freq_dim // 2
    t = float(timesteps[0])
    sinusoid = torch.tensor([math.cos(t * 10000 ** (-i / half)) for i in range(half)]
                            + [math.sin(t * 10000 ** (-i / half)) for i in range(half)])
    e = linear(w, "time_embedding.2", silu(linear(w, "time_embedding.0", sinusoid)))
    e6 = linear(w, "time_projection.1", silu(e)).view(6, c.dim)

    context = linear(w, "text_embedding.2", gelu_tanh(linear(w, "text_embedding.0", text[0])))
    img = clip_features[0]
    img = norm(img, 1e-5, w["img_emb.proj.0.weight"], w["img_emb.proj.0.bias"])
    img = linear(w, "img_emb.proj.3", gelu_erf(linear(w, "img_emb.proj.1", img)))
    img = norm(img, 1e-5, w["img_emb.proj.4.weight"], w["img_emb.proj.4.bias"])

    a = audio[0]  # [frames, 5, layers, channels]
    per_latent = [torch.relu(linear(w, "audio_proj.proj1", a[0].reshape(-1)))]
    for j in range(1, frames):
        first, last = 4 * (j - 1) + 1, 4 * j
        windows = [a[first, 0], a[first, 1], a[first, 2], a[first + 1, 2], a[first + 2, 2],
                   a[last, 2], a[last, 3], a[last, 4]]
        per_latent.append(torch.relu(linear(w, "audio_proj.proj1_vf", torch.stack(windows).reshape(-1))))
    hidden = torch.relu(linear(w, "audio_proj.proj2", torch.stack(per_latent)))
    audio_tokens = linear(w, "audio_proj.proj3", hidden).view(frames, c.audio_context_tokens, c.audio_output_dim)
    audio_tokens = norm(audio_tokens, 1e-5, w["audio_proj.norm.weight"], w["audio_proj.norm.bias"])

    per_frame = rows * cols
    for n in range(c.num_layers):
        b = f"blocks.{n}"
        m = w[f"{b}.modulation"][0] + e6  # [6, dim]
        h = norm(x, c.eps) * (1 + m[1]) + m[0]
        q = rotate(rms(linear(w, f"{b}.self_attn.q", h), w[f"{b}.self_attn.norm_q.weight"], c.eps), positions,
                   c.num_heads)
        k = rotate(rms(linear(w, f"{b}.self_attn.k", h), w[f"{b}.self_attn.norm_k.weight"], c.eps), positions,
                   c.num_heads)
        v = linear(w, f"{b}.self_attn.v", h)
        x = x + linear(w, f"{b}.self_attn.o", attend(q, k, v, c.num_heads)) * m[2]

        h = norm(x, c.eps, w[f"{b}.norm3.weight"], w[f"{b}.norm3.bias"])
        q = rms(linear(w, f"{b}.cross_attn.q", h), w[f"{b}.cross_attn.norm_q.weight"], c.eps)
        k_text = rms(linear(w, f"{b}.cross_attn.k", context), w[f"{b}.cross_attn.norm_k.weight"], c.eps)
        k_img = rms(linear(w, f"{b}.cross_attn.k_img", img), w[f"{b}.cross_attn.norm_k_img.weight"], c.eps)
        both = (attend(q, k_text, linear(w, f"{b}.cross_attn.v", context), c.num_heads)
                + attend(q, k_img, linear(w, f"{b}.cross_attn.v_img", img), c.num_heads))
        x = x + linear(w, f"{b}.cross_attn.o", both)

        h = norm(x, c.eps, w[f"{b}.norm_x.weight"], w[f"{b}.norm_x.bias"])
        kv = linear(w, f"{b}.audio_cross_attn.kv_linear", audio_tokens)  # [frames, tokens, 2*dim]
        kv = kv.view(frames, c.audio_context_tokens, 2, c.num_heads, c.head_dim)
        k_audio = kv[:, :, 0].reshape(frames, c.audio_context_tokens, c.dim)
        v_audio = kv[:, :, 1].reshape(frames, c.audio_context_tokens, c.dim)
        q = linear(w, f"{b}.audio_cross_attn.q_linear", h)
        out = torch.cat([attend(q[f * per_frame:(f + 1) * per_frame], k_audio[f], v_audio[f], c.num_heads)
                         for f in range(frames)])
        x = x + linear(w, f"{b}.audio_cross_attn.proj", out)

        h = norm(x, c.eps) * (1 + m[4]) + m[3]
        x = x + linear(w, f"{b}.ffn.2", gelu_tanh(linear(w, f"{b}.ffn.0", h))) * m[5]

    hm = w["head.modulation"][0] + e
    out = linear(w, "head.head", norm(x, c.eps) * (1 + hm[1]) + hm[0])  # [L, 4 * out_dim]
    video = torch.zeros(c.out_dim, frames, height, width)
    for index, (f, r, s) in enumerate(positions):
        patch = out[index].view(2, 2, c.out_dim)  # (p_h, p_w, channel), p_t = 1
        for dy in range(2):
            for dx in range(2):
                video[:, f, 2 * r + dy, 2 * s + dx] = patch[dy, dx]
    return video[None]


# ---------------------------------------------------------------- tests


def test_forward_matches_naive_equations() -> None:
    model = randomised_model()
    inputs = random_inputs()
    with torch.no_grad():
        ours = model(**inputs)
        naive = naive_forward(dict(model.state_dict()), TINY, **inputs)
    assert ours.shape == naive.shape == inputs["latents"].shape
    scale = naive.abs().max().item()
    assert scale > 0.1
    assert (ours - naive).abs().max().item() <= 1e-4 * scale


def test_silent_audio_changes_the_output() -> None:
    model = randomised_model()
    inputs = random_inputs()
    with torch.no_grad():
        speaking = model(**inputs)
        silent = model(**{**inputs, "audio": torch.zeros_like(inputs["audio"])})
    assert (speaking - silent).abs().max().item() > 1e-3


def test_parameter_names_are_the_checkpoint_keys() -> None:
    names = set(randomised_model().state_dict())
    for key in ("patch_embedding.weight", "text_embedding.0.weight", "text_embedding.2.bias",
                "time_embedding.0.weight", "time_projection.1.weight", "head.head.weight", "head.modulation",
                "img_emb.proj.0.weight", "img_emb.proj.4.bias", "blocks.1.modulation",
                "blocks.1.self_attn.norm_q.weight", "blocks.1.cross_attn.norm_k_img.weight",
                "blocks.1.cross_attn.k_img.weight", "blocks.1.norm3.bias", "blocks.1.ffn.2.weight",
                "audio_proj.proj1.weight", "audio_proj.proj1_vf.weight", "audio_proj.proj3.bias",
                "audio_proj.norm.weight", "blocks.1.audio_cross_attn.q_linear.bias",
                "blocks.1.audio_cross_attn.kv_linear.weight", "blocks.1.audio_cross_attn.proj.weight",
                "blocks.1.norm_x.weight"):
        assert key in names
    # 40 tensors per block + 33 outside the blocks; nothing else (no buffers, no RoPE tables)
    assert len(names) == 2 * 40 + 33


def test_strict_loading_names_what_is_wrong() -> None:
    model = randomised_model()
    state = dict(model.state_dict())
    state.pop("blocks.0.norm_x.weight")
    state["blocks.0.audio_cross_attn.k_norm.weight"] = torch.ones(16)
    state["head.head.bias"] = torch.zeros(3)
    with pytest.raises(ValueError) as err:
        load_strict(randomised_model(seed=1), state)
    message = str(err.value)
    assert "missing: blocks.0.norm_x.weight" in message
    assert "unexpected: blocks.0.audio_cross_attn.k_norm.weight" in message
    assert "head.head.bias" in message


def test_block_streaming_gives_the_same_output() -> None:
    model = randomised_model()
    inputs = random_inputs()
    with torch.no_grad():
        resident = model(**inputs)
        model.block_runner = BlockStreamer(model.blocks, torch.device("cpu"))
        streamed = model(**inputs)
    assert torch.equal(resident, streamed)


def test_config_reads_wan_config_json(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"_class_name": "WanModel", "_diffusers_version": "0.30.0", "dim": 5120, "eps": 1e-06, '
                    '"ffn_dim": 13824, "freq_dim": 256, "in_dim": 36, "model_type": "i2v", "num_heads": 40, '
                    '"num_layers": 40, "out_dim": 16, "text_len": 512}')
    config = DiTConfig.from_json(path)
    assert (config.dim, config.head_dim, config.num_layers, config.patch_size) == (5120, 128, 40, (1, 2, 2))
    assert DiTConfig.from_json(path) == DiTConfig()


# ---------------------------------------------------------------- optional: the public reference

REFERENCE_DIR = os.environ.get("INFINITETALK_REFERENCE_DIR", "")


def _import_reference(root: Path) -> types.ModuleType:
    """Load wan/modules/multitalk_model.py from a checkout without its package's heavy imports.

    Optional dependencies it imports (xformers, xfuser, ...) get stand-ins for the import only;
    they are removed from sys.modules again afterwards.
    """
    import importlib.machinery
    import importlib.util

    import diffusers.configuration_utils  # noqa: F401 - imported before any stand-in exists
    import torch.nn.functional as F

    added: list[str] = []

    def stub(name: str, **attrs: object) -> None:
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        module.__path__ = []  # type: ignore[attr-defined]
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)
        sys.modules[name] = module
        added.append(name)

    def memory_efficient_attention(q, k, v, attn_bias=None, op=None):
        return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)

    def load(name: str, relative: str) -> types.ModuleType:
        spec = importlib.util.spec_from_file_location(name, root / relative)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        added.append(name)
        spec.loader.exec_module(module)
        return module

    try:
        for name in ("xfuser", "xfuser.core"):
            stub(name)
        stub("xfuser.core.distributed", get_sequence_parallel_rank=lambda: 0,
             get_sequence_parallel_world_size=lambda: 1, get_sp_group=lambda: None)
        stub("xformers.ops", memory_efficient_attention=memory_efficient_attention)
        stub("xformers", ops=sys.modules["xformers.ops"])
        for name in ("wan", "wan.modules", "wan.utils"):
            stub(name)
        for optional in ("imageio", "soundfile", "torchvision", "skimage"):
            if importlib.util.find_spec(optional) is None:
                stub(optional, color=None)
        load("wan.utils.multitalk_utils", "wan/utils/multitalk_utils.py")
        load("wan.modules.attention", "wan/modules/attention.py")
        return load("wan.modules.multitalk_model", "wan/modules/multitalk_model.py")
    finally:
        for name in added:
            sys.modules.pop(name, None)


@pytest.mark.skipif(not REFERENCE_DIR, reason="set INFINITETALK_REFERENCE_DIR to a MeiGen-AI/InfiniteTalk checkout")
def test_matches_the_reference_implementation() -> None:
    pytest.importorskip("einops")
    reference = _import_reference(Path(REFERENCE_DIR))

    def full_attention(q, k, v, **_ignored):
        return torch.nn.functional.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)

    reference.flash_attention = full_attention
    reference.get_attn_map_with_target = lambda *args, **kwargs: None  # multi-speaker only; CUDA-only code
    # The reference's audio projection is fixed to 12 layers x 768 channels and CLIP width 1280.
    config = DiTConfig(dim=64, ffn_dim=128, freq_dim=32, text_dim=48, text_len=16, num_heads=4, num_layers=2,
                       audio_intermediate_dim=32, audio_output_dim=24, audio_context_tokens=4)
    ref_model = reference.WanModel(model_type="i2v", in_dim=36, dim=64, ffn_dim=128, freq_dim=32, text_dim=48,
                                   text_len=16, out_dim=16, num_heads=4, num_layers=2, intermediate_dim=32,
                                   output_dim=24, context_tokens=4).eval()
    ref_model.disable_teacache()
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in ref_model.parameters():
            parameter.copy_(torch.randn_like(parameter) / math.sqrt(parameter.shape[-1]))
    ours = InfiniteTalkDiT(config, Attention("sdpa")).eval()
    load_strict(ours, dict(ref_model.state_dict()))
    inputs = random_inputs(config, grid=(3, 4, 6))
    text_len = 11
    with torch.no_grad():
        expected = ref_model([inputs["latents"][0].clone()], t=inputs["timesteps"],
                             context=[inputs["text"][0, :text_len]], seq_len=3 * 4 * 6,
                             clip_fea=inputs["clip_features"], y=inputs["condition"], audio=inputs["audio"],
                             ref_target_masks=torch.ones(3, 4, 6))[0]
        text = torch.cat([inputs["text"][:, :text_len], torch.zeros(1, 16 - text_len, 48)], dim=1)
        got = ours(**{**inputs, "text": text})[0]
    assert (got - expected).abs().max().item() <= 1e-4 * expected.abs().max().item()
