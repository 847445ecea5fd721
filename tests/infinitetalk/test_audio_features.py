"""wav2vec2 features with InfiniteTalk's recipe: CNN features interpolated to 25 fps BEFORE the encoder."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from itk_generator.infinitetalk.audio_features import AudioFeatureExtractor, frame_windows, frames_for
from itk_generator.infinitetalk.weights import ModelPaths, WeightsError


@pytest.fixture(scope="module")
def extractor(tiny_model_dir):
    return AudioFeatureExtractor.load(ModelPaths.from_root(tiny_model_dir).wav2vec_dir)


@pytest.fixture(scope="module")
def speech():
    rng = np.random.default_rng(0)
    t = np.arange(16000 * 2 + 700) / 16000
    return (0.3 * np.sin(2 * np.pi * 220 * t) * np.sin(2 * np.pi * 3 * t) + 0.05 * rng.standard_normal(t.size)
            ).astype(np.float32)


def naive_features(extractor, speech, frames, interpolate_first=True):
    """The recipe spelled out with transformers' submodules (the 4.x encoder's hidden states 1..N)."""
    model = extractor.model
    values = torch.from_numpy((speech - speech.mean()) / np.sqrt(speech.var() + 1e-7))[None]
    with torch.no_grad():
        conv = model.feature_extractor(values)
        if interpolate_first:
            conv = F.interpolate(conv, size=frames, mode="linear", align_corners=True)
        hidden, _ = model.feature_projection(conv.transpose(1, 2))
        encoder = model.encoder
        hidden = encoder.layer_norm(hidden + encoder.pos_conv_embed(hidden))
        outputs = []
        for layer in encoder.layers:
            result = layer(hidden)
            hidden = result[0] if isinstance(result, tuple) else result
            outputs.append(hidden)
        stacked = torch.stack(outputs, dim=2)[0]
    if not interpolate_first:  # the wrong order: encoder at 50 steps per second, then resample
        steps, layers, width = stacked.shape
        series = stacked.permute(1, 2, 0).reshape(1, layers * width, steps)
        series = F.interpolate(series, size=frames, mode="linear", align_corners=True)
        stacked = series.reshape(layers, width, frames).permute(2, 0, 1)
    return stacked


def test_frame_count_follows_the_reference():
    assert frames_for(16000) == 25
    assert frames_for(16000 * 2 + 700) == 51  # int(seconds * 25), truncated
    assert frames_for(639) == 0


def test_shape_and_recipe(extractor, speech):
    features = extractor.embed(speech)
    assert features.shape == (51, 12, 32) and features.dtype == torch.float32
    torch.testing.assert_close(features, naive_features(extractor, speech, 51), atol=1e-5, rtol=1e-5)


def test_interpolation_happens_before_the_encoder(extractor, speech):
    features = extractor.embed(speech, num_frames=40)
    assert features.shape == (40, 12, 32)
    after = naive_features(extractor, speech, 40, interpolate_first=False)
    assert after.shape == features.shape
    assert (features - after).abs().max() > 1e-3


def test_input_level_is_normalised_by_the_feature_extractor(extractor, speech):
    torch.testing.assert_close(extractor.embed(speech * 4.0), extractor.embed(speech), atol=1e-4, rtol=1e-4)


def test_too_short_audio_is_rejected(extractor):
    with pytest.raises(ValueError, match="no video frame"):
        extractor.embed(np.zeros(100, dtype=np.float32))


def test_frame_windows_clamp_at_the_ends():
    features = torch.arange(6.0).view(6, 1, 1).expand(6, 2, 3)
    windows = frame_windows(features)
    assert windows.shape == (6, 5, 2, 3)
    assert windows[:, :, 0, 0].tolist() == [
        [0, 0, 0, 1, 2], [0, 0, 1, 2, 3], [0, 1, 2, 3, 4], [1, 2, 3, 4, 5], [2, 3, 4, 5, 5], [3, 4, 5, 5, 5]]
    # a clip's windows look into the audio around it, clamped to the whole recording only
    assert frame_windows(features, start=2, stop=4)[:, :, 0, 0].tolist() == [[0, 1, 2, 3, 4], [1, 2, 3, 4, 5]]


def pretraining_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The published checkpoint's naming: a `wav2vec2.` prefix, weight-norm g/v, pretraining heads."""
    legacy = {}
    for name, tensor in state.items():
        name = name.replace("parametrizations.weight.original0", "weight_g")
        legacy["wav2vec2." + name.replace("parametrizations.weight.original1", "weight_v")] = tensor
    legacy |= {"quantizer.codevectors": torch.zeros(1, 4, 8), "project_hid.weight": torch.zeros(4, 32),
               "project_q.weight": torch.zeros(4, 8)}
    return legacy


@pytest.fixture
def wav2vec_copy(tiny_model_dir, tmp_path):
    return shutil.copytree(ModelPaths.from_root(tiny_model_dir).wav2vec_dir, tmp_path / "wav2vec")


def test_pretraining_checkpoint_layout_loads_to_the_same_features(extractor, speech, wav2vec_copy):
    weights = wav2vec_copy / "model.safetensors"
    save_file(pretraining_layout(load_file(weights)), weights)
    torch.testing.assert_close(AudioFeatureExtractor.load(wav2vec_copy).embed(speech), extractor.embed(speech))


def test_unknown_or_missing_tensors_are_named(wav2vec_copy):
    weights = wav2vec_copy / "model.safetensors"
    state = load_file(weights)
    state["encoder.layers.0.attention.q_proj.weight"] = state.pop("encoder.layers.0.attention.k_proj.weight")
    state["encoder.extra.weight"] = torch.zeros(2)
    save_file(state, weights)
    with pytest.raises(WeightsError) as caught:
        AudioFeatureExtractor.load(wav2vec_copy)
    assert "encoder.layers.0.attention.k_proj.weight" in str(caught.value)
    assert "encoder.extra.weight" in str(caught.value)
