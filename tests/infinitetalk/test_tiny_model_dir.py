"""The tiny model directory: the full real layout, small, reproducible, loadable by every component."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from itk_generator.infinitetalk.config import DiTConfig
from itk_generator.infinitetalk.dit import InfiniteTalkDiT, load_strict
from itk_generator.infinitetalk.download import ADAPTERS, REQUIRED_FILES
from itk_generator.infinitetalk.tiny import TINY_DIT, build_tiny_model_dir, main
from itk_generator.infinitetalk.weights import ModelPaths, load_dit_state_dict


def test_every_file_of_the_layout_is_there_and_small(tiny_model_dir):
    ModelPaths.from_root(tiny_model_dir)
    for item in REQUIRED_FILES.values():
        if not item.filename.endswith("*"):
            assert (tiny_model_dir / item.local_path).is_file(), item.local_path
    total = sum(path.stat().st_size for path in tiny_model_dir.rglob("*") if path.is_file())
    assert total < 10 * 2**20


def test_config_json_describes_the_shards(tiny_model_dir):
    paths = ModelPaths.from_root(tiny_model_dir)
    config = DiTConfig.from_json(paths.dit_config)
    assert config == TINY_DIT
    raw = json.loads(paths.dit_config.read_text())
    assert raw["_class_name"] == "WanModel" and raw["model_type"] == "i2v" and raw["in_dim"] == 36
    index = json.loads(paths.dit_index.read_text())
    assert set(index["weight_map"].values()) == {path.name for path in paths.dit_shards}
    listed = set(index["weight_map"])
    assert listed == {name for path in paths.dit_shards for name in load_file(path)}
    assert not listed & set(load_file(paths.adapters["single"]))  # adapter tensors live only in the adapter file


def test_dit_loads_strictly_and_runs(tiny_model_dir):
    paths = ModelPaths.from_root(tiny_model_dir)
    config = DiTConfig.from_json(paths.dit_config)
    model = InfiniteTalkDiT(config).eval()
    load_strict(model, load_dit_state_dict(paths))
    latents = torch.randn(1, 16, 2, 4, 4)
    audio = torch.randn(1, 5, config.audio_window, config.audio_layers, config.audio_channels)
    with torch.no_grad():
        out = model(latents, torch.tensor([500.0]), torch.randn(1, config.text_len, config.text_dim),
                    torch.randn(1, config.clip_tokens, config.clip_dim), torch.randn(1, 20, 2, 4, 4), audio)
    assert out.shape == latents.shape and torch.isfinite(out).all()


def test_same_seed_same_weights_other_seed_other_weights(tmp_path):
    first = build_tiny_model_dir(tmp_path / "a", seed=3)
    again = build_tiny_model_dir(tmp_path / "b", seed=3)
    other = build_tiny_model_dir(tmp_path / "c", seed=4)
    adapter = ADAPTERS["single"].local_path
    a, b, c = (load_file(root / adapter) for root in (first, again, other))
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert not all(torch.equal(a[name], c[name]) for name in a)


def test_command_line_entry(tmp_path, capsys):
    assert main([str(tmp_path / "cli")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "cli")
    ModelPaths.from_root(tmp_path / "cli")
    assert main([]) == 2
