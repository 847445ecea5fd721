"""The download plan: which Hub file lands where (no network here), and the CLI surface."""

from __future__ import annotations

import subprocess
import sys

import pytest

from itk_generator.infinitetalk import download
from itk_generator.infinitetalk.download import DISTILLED_DITS, LORAS, REQUIRED_FILES, grouped, main, plan


def test_plan_covers_the_layout_the_loaders_read():
    local = {item.local_path for item in plan()}
    wan = "Wan2.1-I2V-14B-480P"
    expected = {
        f"{wan}/config.json",
        f"{wan}/diffusion_pytorch_model.safetensors.index.json",
        *(f"{wan}/diffusion_pytorch_model-0000{i}-of-00007.safetensors" for i in range(1, 8)),
        f"{wan}/Wan2.1_VAE.pth",
        f"{wan}/models_t5_umt5-xxl-enc-bf16.pth",
        f"{wan}/models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth",
        f"{wan}/google/umt5-xxl/*",
        "InfiniteTalk/single/infinitetalk.safetensors",
        "chinese-wav2vec2-base/config.json",
        "chinese-wav2vec2-base/preprocessor_config.json",
        "chinese-wav2vec2-base/model.safetensors",
    }
    assert local == expected


def test_wav2vec_weights_come_from_the_pr_branch_and_the_rest_from_main():
    revisions = {item.local_path: item.revision for item in plan()}
    assert revisions.pop("chinese-wav2vec2-base/model.safetensors") == "refs/pr/1"
    assert set(revisions.values()) == {None}


def test_grouping_makes_one_snapshot_call_per_repo_revision_and_folder():
    groups = grouped(plan(["fusionx", "lightx2v"]))
    assert set(groups) == {
        ("Wan-AI/Wan2.1-I2V-14B-480P", None, "Wan2.1-I2V-14B-480P"),
        ("MeiGen-AI/InfiniteTalk", None, "InfiniteTalk"),
        ("TencentGameMate/chinese-wav2vec2-base", None, "chinese-wav2vec2-base"),
        ("TencentGameMate/chinese-wav2vec2-base", "refs/pr/1", "chinese-wav2vec2-base"),
        ("vrgamedevgirl84/Wan14BT2VFusioniX", None, "loras"),
        ("Kijai/WanVideo_comfy", None, "loras"),
    }
    assert groups[("MeiGen-AI/InfiniteTalk", None, "InfiniteTalk")] == ["single/infinitetalk.safetensors"]
    assert sum(len(files) for files in groups.values()) == len(REQUIRED_FILES) + 1 + 2  # the adapter, the LoRAs


def test_lora_files_and_unknown_names():
    assert LORAS["fusionx"].local_path == "loras/FusionX_LoRa/Wan2.1_I2V_14B_FusionX_LoRA.safetensors"
    assert LORAS["lightx2v"].filename == "Wan21_T2V_14B_lightx2v_cfg_step_distill_lora_rank32.safetensors"
    with pytest.raises(ValueError, match="nope"):
        plan(["nope"])


def test_single_file_commands(tmp_path):
    wav2vec = REQUIRED_FILES["wav2vec_weights"].command(tmp_path)
    assert wav2vec == (f"huggingface-cli download TencentGameMate/chinese-wav2vec2-base model.safetensors "
                       f"--revision refs/pr/1 --local-dir {tmp_path / 'chinese-wav2vec2-base'}")
    tokenizer = REQUIRED_FILES["tokenizer"].command(tmp_path)
    assert '--include "google/umt5-xxl/*"' in tokenizer


def test_dry_run_lists_every_file(capsys, tmp_path):
    assert download.main([str(tmp_path), "--dry-run", "--lora", "fusionx"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(REQUIRED_FILES) + 2  # the single-person adapter and the LoRA
    assert "loras/FusionX_LoRa/Wan2.1_I2V_14B_FusionX_LoRA.safetensors\t<- vrgamedevgirl84/Wan14BT2VFusioniX" in lines
    assert not any(tmp_path.iterdir())


def test_help_runs_as_a_module():
    result = subprocess.run([sys.executable, "-m", "itk_generator.infinitetalk.download", "--help"],
                            capture_output=True, text=True, timeout=60, check=True)
    assert "itk-download-weights" in result.stdout
    assert "--lora" in result.stdout


def test_turbo_fetches_lightx2v_distilled_weights(capsys, tmp_path):
    assert main([str(tmp_path), "--turbo", "--lora", "lightx2v-i2v", "--dry-run"]) == 0
    listing = capsys.readouterr().out
    assert ("lightx2v/wan2.1_i2v_480p_scaled_fp8_e4m3_lightx2v_4step.safetensors\t<- lightx2v/Wan2.1-Distill-Models"
            in listing)
    assert "loras/wan2.1_i2v_lora_rank64_lightx2v_4step.safetensors\t<- lightx2v/Wan2.1-Distill-Loras" in listing
    assert DISTILLED_DITS["lightx2v-4step"].filename == "wan2.1_i2v_480p_lightx2v_4step.safetensors"
    with pytest.raises(ValueError, match="distilled DiT"):
        plan(dits=["lightx2v-8step"])


def test_multi_fetches_the_multi_person_adapter(capsys, tmp_path):
    def adapters(*args: str) -> list[str]:
        assert main([str(tmp_path), "--dry-run", *args]) == 0
        lines = capsys.readouterr().out.splitlines()
        return [line.split("\t")[0] for line in lines if line.startswith("InfiniteTalk/")]

    assert adapters() == ["InfiniteTalk/single/infinitetalk.safetensors"]
    assert adapters("--multi") == ["InfiniteTalk/single/infinitetalk.safetensors",
                                   "InfiniteTalk/multi/infinitetalk.safetensors"]
    assert adapters("--multi-only") == ["InfiniteTalk/multi/infinitetalk.safetensors"]
    with pytest.raises(ValueError, match="adapter kinds"):
        plan(adapters=["trio"])
