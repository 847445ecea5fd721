"""Strict loading of the model directory: file checks, shard merging, adapter split, LoRA merging."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from itk_generator.infinitetalk.config import DiTConfig
from itk_generator.infinitetalk.dit import InfiniteTalkDiT
from itk_generator.infinitetalk.weights import (
    ModelPaths,
    WeightsError,
    check_state_dict,
    load_dit_state_dict,
    merge_lora,
)

WAN = "Wan2.1-I2V-14B-480P"


def model_keys(paths: ModelPaths) -> set[str]:
    with torch.device("meta"):
        return set(InfiniteTalkDiT(DiTConfig.from_json(paths.dit_config)).state_dict())


def test_paths_point_at_existing_files(tiny_model_dir):
    paths = ModelPaths.from_root(tiny_model_dir)
    files = [paths.dit_config, paths.dit_index, *paths.dit_shards, *paths.adapters.values(), paths.vae, paths.t5,
             paths.clip]
    assert list(paths.adapters) == ["single", "multi"]
    assert all(path.is_file() for path in files)
    assert [path.name for path in paths.dit_shards] == [
        f"diffusion_pytorch_model-0000{i}-of-00007.safetensors" for i in range(1, 8)]
    assert (paths.tokenizer_dir / "tokenizer_config.json").is_file()
    assert (paths.wav2vec_dir / "model.safetensors").is_file()


def test_missing_file_names_the_file_and_its_download_command(tiny_model_copy):
    (tiny_model_copy / WAN / "Wan2.1_VAE.pth").unlink()
    (tiny_model_copy / "chinese-wav2vec2-base" / "model.safetensors").unlink()
    with pytest.raises(WeightsError) as caught:
        ModelPaths.from_root(tiny_model_copy)
    message = str(caught.value)
    assert f"{WAN}/Wan2.1_VAE.pth" in message
    assert (f"huggingface-cli download Wan-AI/Wan2.1-I2V-14B-480P Wan2.1_VAE.pth "
            f"--local-dir {tiny_model_copy / WAN}") in message
    assert "chinese-wav2vec2-base/model.safetensors" in message
    assert "--revision refs/pr/1" in message
    assert f"itk-download-weights {tiny_model_copy}" in message
    assert "config.json " not in message  # only the missing files are listed


def test_missing_tokenizer_folder(tiny_model_copy):
    for file in (tiny_model_copy / WAN / "google" / "umt5-xxl").iterdir():
        file.unlink()
    with pytest.raises(WeightsError, match=r"google/umt5-xxl/\*"):
        ModelPaths.from_root(tiny_model_copy)


def test_merged_state_dict_matches_the_model_exactly(tiny_model_dir):
    paths = ModelPaths.from_root(tiny_model_dir)
    state = load_dit_state_dict(paths)
    assert set(state) == model_keys(paths)
    adapter = set(load_file(paths.adapters["single"]))
    assert adapter == {name for name in state if name.startswith("audio_proj.")
                       or ".audio_cross_attn." in name or ".norm_x." in name}
    assert all(tensor.dtype == torch.float32 for tensor in state.values())
    assert all(tensor.dtype == torch.bfloat16 for tensor in load_dit_state_dict(paths, dtype=torch.bfloat16).values())


def rename_in(path: Path, old: str, new: str) -> None:
    tensors = load_file(path)
    tensors[new] = tensors.pop(old)
    save_file(tensors, path)


def test_renamed_tensor_in_a_shard_is_named(tiny_model_copy):
    paths = ModelPaths.from_root(tiny_model_copy)
    shard = paths.dit_shards[0]
    victim = sorted(load_file(shard))[0]
    rename_in(shard, victim, "renamed.weight")
    with pytest.raises(WeightsError) as caught:
        load_dit_state_dict(paths)
    assert victim in str(caught.value) and "renamed.weight" in str(caught.value)


def test_renamed_adapter_tensor_fails_the_model_check_with_its_name(tiny_model_copy):
    paths = ModelPaths.from_root(tiny_model_copy)
    rename_in(paths.adapters["single"], "audio_proj.proj1.weight", "audio_proj.proj_one.weight")
    state = load_dit_state_dict(paths)
    with pytest.raises(WeightsError) as caught:
        check_state_dict(model_keys(paths), set(state))
    assert "missing tensors (1): audio_proj.proj1.weight" in str(caught.value)
    assert "unexpected tensors (1): audio_proj.proj_one.weight" in str(caught.value)


def test_adapter_may_not_redefine_base_tensors(tiny_model_copy):
    paths = ModelPaths.from_root(tiny_model_copy)
    tensors = load_file(paths.adapters["single"])
    tensors["patch_embedding.bias"] = torch.zeros(1)
    save_file(tensors, paths.adapters["single"])
    with pytest.raises(WeightsError, match=r"patch_embedding\.bias"):
        load_dit_state_dict(paths)


def test_index_naming_an_unknown_shard_is_an_error(tiny_model_copy):
    paths = ModelPaths.from_root(tiny_model_copy)
    index = json.loads(paths.dit_index.read_text())
    index["weight_map"]["blocks.0.ffn.0.weight"] = "elsewhere.safetensors"
    paths.dit_index.write_text(json.dumps(index))
    with pytest.raises(WeightsError, match=r"elsewhere\.safetensors"):
        load_dit_state_dict(paths)


def test_check_state_dict_passes_on_equal_sets():
    check_state_dict({"a", "b"}, {"b", "a"})


def test_lora_merge_math():
    torch.manual_seed(0)
    weight, bias, norm = torch.randn(6, 4), torch.randn(6), torch.randn(4)
    down, up = torch.randn(2, 4), torch.randn(6, 2)
    diff, diff_b = torch.randn(4), torch.randn(6)
    state = {"blocks.0.self_attn.q.weight": weight.clone(), "blocks.0.self_attn.q.bias": bias.clone(),
             "blocks.0.norm3.weight": norm.clone(), "head.head.weight": torch.ones(3)}
    lora = {
        "diffusion_model.blocks.0.self_attn.q.lora_down.weight": down,
        "diffusion_model.blocks.0.self_attn.q.lora_up.weight": up,
        "diffusion_model.blocks.0.self_attn.q.alpha": torch.tensor(8.0),  # ignored, as in the reference
        "diffusion_model.blocks.0.self_attn.q.diff_b": diff_b,
        "diffusion_model.blocks.0.norm3.diff": diff,
    }
    merge_lora(state, lora, scale=0.5)
    torch.testing.assert_close(state["blocks.0.self_attn.q.weight"], weight + 0.5 * up @ down)
    torch.testing.assert_close(state["blocks.0.self_attn.q.bias"], bias + 0.5 * diff_b)
    torch.testing.assert_close(state["blocks.0.norm3.weight"], norm + 0.5 * diff)
    assert torch.equal(state["head.head.weight"], torch.ones(3))


def test_lora_merged_through_the_loader_keeps_dtype(tiny_model_dir, tmp_path):
    paths = ModelPaths.from_root(tiny_model_dir)
    base = load_dit_state_dict(paths, dtype=torch.bfloat16)
    target = "blocks.1.cross_attn.o.weight"
    out_dim, in_dim = base[target].shape
    down, up = torch.randn(3, in_dim), torch.randn(out_dim, 3)
    lora_path = tmp_path / "lora.safetensors"
    save_file({f"diffusion_model.{target[:-len('weight')]}lora_down.weight": down,
               f"diffusion_model.{target[:-len('weight')]}lora_up.weight": up}, lora_path)
    merged = load_dit_state_dict(paths, [(lora_path, 2.0)], dtype=torch.bfloat16)
    assert merged[target].dtype == torch.bfloat16
    expected = (base[target].float() + 2.0 * up @ down).to(torch.bfloat16)
    assert torch.equal(merged[target], expected)
    assert all(torch.equal(merged[name], base[name]) for name in base if name != target)


def test_lora_for_tensors_the_model_lacks_is_named():
    lora = {"diffusion_model.blocks.9.self_attn.q.lora_down.weight": torch.ones(1, 2),
            "diffusion_model.blocks.9.self_attn.q.lora_up.weight": torch.ones(2, 1)}
    with pytest.raises(WeightsError, match=r"blocks\.9\.self_attn\.q\.weight"):
        merge_lora({"blocks.0.self_attn.q.weight": torch.zeros(2, 2)}, lora, 1.0)


def test_lora_in_an_unknown_format_is_rejected():
    with pytest.raises(WeightsError, match="diffusion_model"):
        merge_lora({"w": torch.zeros(2, 2)}, {"lora_unet_w.lora_A.weight": torch.ones(1, 2)}, 1.0)


def test_a_model_dir_needs_one_adapter_of_either_kind(tiny_model_copy):
    adapters = tiny_model_copy / "InfiniteTalk"
    (adapters / "single" / "infinitetalk.safetensors").unlink()
    paths = ModelPaths.from_root(tiny_model_copy)
    assert list(paths.adapters) == ["multi"]
    with pytest.raises(WeightsError, match=r"single-person InfiniteTalk adapter is missing.*single/infinitetalk"):
        load_dit_state_dict(paths)
    assert set(load_dit_state_dict(paths, adapter="multi")) == model_keys(paths)
    (adapters / "multi" / "infinitetalk.safetensors").unlink()
    with pytest.raises(WeightsError) as caught:
        ModelPaths.from_root(tiny_model_copy)
    assert "InfiniteTalk/single/infinitetalk.safetensors" in str(caught.value)
    assert "multi/infinitetalk.safetensors" in str(caught.value)


def test_the_spare_adapter_swaps_in_without_copies(tiny_model_dir):
    from itk_generator.infinitetalk.dit import MULTI, SINGLE, load_strict
    from itk_generator.infinitetalk.weights import load_adapter_state

    paths = ModelPaths.from_root(tiny_model_dir)
    dit = InfiniteTalkDiT(DiTConfig.from_json(paths.dit_config))
    load_strict(dit, load_dit_state_dict(paths))
    multi = load_adapter_state(paths, MULTI)
    dit.keep_spare_adapter(MULTI, multi)
    assert dit.adapters == (SINGLE, MULTI)
    name = "blocks.0.audio_cross_attn.q_linear.weight"
    single_value = dit.state_dict()[name].clone()
    dit.use_adapter(MULTI)
    assert torch.equal(dit.state_dict()[name], multi[name]) and not torch.equal(multi[name], single_value)
    dit.use_adapter(SINGLE)
    assert torch.equal(dit.state_dict()[name], single_value)
    with pytest.raises(ValueError, match="missing"):
        InfiniteTalkDiT(DiTConfig.from_json(paths.dit_config)).keep_spare_adapter(MULTI, {})
