"""Optional: our VAE / CLIP / umT5 / wav2vec2 paths against the reference implementation's modules.

Runs only when INFINITETALK_REFERENCE_DIR points at a local checkout of github.com/MeiGen-AI/InfiniteTalk
(and einops is importable); the reference code is imported from there, never copied here. Its
heavy optional imports (flash-attn, optimum-quanto, torchvision, CUDA) are replaced by stand-ins
that do the same math on the CPU.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

REFERENCE = Path(os.environ.get("INFINITETALK_REFERENCE_DIR", "/nonexistent"))
pytestmark = pytest.mark.skipif(
    not (REFERENCE / "wan" / "modules" / "vae.py").is_file() or importlib.util.find_spec("einops") is None,
    reason="set INFINITETALK_REFERENCE_DIR to a MeiGen-AI/InfiniteTalk checkout (and install einops)",
)


def _package(patch: pytest.MonkeyPatch, name: str) -> None:
    module = types.ModuleType(name)
    module.__path__ = []
    patch.setitem(sys.modules, name, module)


def _load(patch: pytest.MonkeyPatch, name: str, relative: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, REFERENCE / relative)
    module = importlib.util.module_from_spec(spec)
    patch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def reference(monkeypatch_module):
    import diffusers  # noqa: F401  (imported before the stand-ins below shadow optional packages)
    import transformers  # noqa: F401

    patch = monkeypatch_module
    for name in ("wan", "wan.modules", "src", "src.audio_analysis", "optimum", "torchvision"):
        _package(patch, name)
    attention = types.ModuleType("wan.modules.attention")

    def flash_attention(q, k, v, dropout_p=0.0, causal=False, **_):
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                             is_causal=causal)
        return out.transpose(1, 2)

    attention.flash_attention = flash_attention
    quanto = types.ModuleType("optimum.quanto")
    quanto.quantize = quanto.freeze = quanto.qint8 = quanto.requantize = None
    patch.setitem(sys.modules, "wan.modules.attention", attention)
    patch.setitem(sys.modules, "optimum.quanto", quanto)
    patch.setitem(sys.modules, "torchvision.transforms", types.ModuleType("torchvision.transforms"))
    patch.setattr(torch.cuda, "current_device", lambda: "cpu")
    _load(patch, "wan.modules.tokenizers", "wan/modules/tokenizers.py")
    _load(patch, "wan.modules.xlm_roberta", "wan/modules/xlm_roberta.py")
    _load(patch, "src.audio_analysis.torch_utils", "src/audio_analysis/torch_utils.py")
    return types.SimpleNamespace(
        vae=_load(patch, "wan.modules.vae", "wan/modules/vae.py"),
        clip=_load(patch, "wan.modules.clip", "wan/modules/clip.py"),
        t5=_load(patch, "wan.modules.t5", "wan/modules/t5.py"),
        wav2vec2=_load(patch, "src.audio_analysis.wav2vec2", "src/audio_analysis/wav2vec2.py"),
    )


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def _randomise(module: torch.nn.Module, scale: float = 0.2) -> None:
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(torch.randn_like(parameter) * scale)


def test_vae(reference, tmp_path):
    from itk_generator.infinitetalk.vae import LATENT_MEAN, LATENT_STD, WanVAE

    model = reference.vae.WanVAE_(dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                                  temperal_downsample=[False, True, True]).eval()
    _randomise(model)
    torch.save(model.state_dict(), tmp_path / "vae.pth")
    scale = [torch.tensor(LATENT_MEAN), 1.0 / torch.tensor(LATENT_STD)]
    video = torch.rand(1, 3, 9, 32, 48) * 2 - 1
    ours = WanVAE.load(tmp_path / "vae.pth")
    with torch.no_grad():
        expected = model.encode(video, scale)
        torch.testing.assert_close(ours.encode(video), expected, atol=1e-5, rtol=1e-5)
        decoded = model.decode(expected, scale).clamp(-1, 1)
    torch.testing.assert_close(ours.decode(expected), decoded, atol=1e-4, rtol=1e-4)


def test_clip_visual(reference, tmp_path):
    from itk_generator.infinitetalk.clip_vision import CLIP_MEAN, CLIP_STD, ClipVisionEncoder

    tower = reference.clip.VisionTransformer(image_size=224, patch_size=14, dim=160, mlp_ratio=4, out_dim=32,
                                             num_heads=2, num_layers=3, activation="gelu").eval()
    _randomise(tower, 0.1)
    torch.save({f"visual.{k}": v for k, v in tower.state_dict().items()}, tmp_path / "clip.pth")
    mean, std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    wrapper = types.SimpleNamespace(
        model=types.SimpleNamespace(image_size=224, visual=tower), dtype=torch.float32,
        transforms=types.SimpleNamespace(transforms=[lambda x: (x - mean) / std]),
    )
    video = torch.rand(1, 3, 1, 120, 90) * 2 - 1
    with torch.no_grad():
        expected = reference.clip.CLIPModel.visual(wrapper, video)
    got = ClipVisionEncoder.load(tmp_path / "clip.pth").encode(video[:, :, 0])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_umt5(reference):
    from transformers import UMT5EncoderModel

    from itk_generator.infinitetalk.text_encoder import infer_config, to_hf_keys

    encoder = reference.t5.T5Encoder(vocab=300, dim=64, dim_attn=64, dim_ffn=96, num_heads=4, num_layers=3,
                                     num_buckets=32, shared_pos=False, dropout=0.0).eval()
    _randomise(encoder, 0.1)
    state = encoder.state_dict()
    config = infer_config(state)
    model = UMT5EncoderModel(config).eval()
    model.load_state_dict(to_hf_keys(state, config.num_layers), strict=True)
    ids = torch.randint(0, 300, (1, 200))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids, attention_mask=mask).last_hidden_state,
                                   encoder(ids, mask), atol=1e-5, rtol=1e-5)


def test_wav2vec2_recipe(reference, tiny_model_dir):
    """The reference's feature_extract (CNN + interpolation) followed by the encoder's layers."""
    from itk_generator.infinitetalk.audio_features import AudioFeatureExtractor
    from itk_generator.infinitetalk.weights import ModelPaths

    folder = ModelPaths.from_root(tiny_model_dir).wav2vec_dir
    ours = AudioFeatureExtractor.load(folder)
    model = reference.wav2vec2.Wav2Vec2Model.from_pretrained(str(folder), attn_implementation="eager").eval()
    speech = (np.random.default_rng(0).standard_normal(16000 * 3 + 1234) * 0.1).astype(np.float32)
    values = torch.from_numpy(np.squeeze(ours.feature_extractor(speech, sampling_rate=16000).input_values))
    frames = int(len(speech) / 16000 * 25)
    with torch.no_grad():
        hidden, _ = model.feature_projection(model.feature_extract(values.float()[None], seq_len=frames))
        hidden = model.encoder.layer_norm(hidden + model.encoder.pos_conv_embed(hidden))
        layers = []
        for layer in model.encoder.layers:
            result = layer(hidden)
            hidden = result[0] if isinstance(result, tuple) else result
            layers.append(hidden)
    torch.testing.assert_close(ours.embed(speech), torch.stack(layers, dim=2)[0], atol=1e-5, rtol=1e-5)
