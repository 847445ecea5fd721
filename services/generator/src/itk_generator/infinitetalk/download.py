"""`itk-download-weights`: fetch the model directory layout from the Hugging Face Hub.

The layout is the one the reference implementation's README downloads into `weights/`; every
file the loaders read is listed in `REQUIRED_FILES` or `ADAPTERS`, so a missing file can name the
exact command that fetches it. The InfiniteTalk adapter comes in two kinds: `single` (one person,
fetched by default) and `multi` (two people, `--multi`); a model directory needs at least one, and
a generator serves the person counts of the adapters it finds. Downloads go through
`huggingface_hub.snapshot_download` with `allow_patterns`, which skips files already complete and
resumes partial ones.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

WAN_DIR = "Wan2.1-I2V-14B-480P"
ADAPTER_DIR = "InfiniteTalk"
WAV2VEC_DIR = "chinese-wav2vec2-base"
LORA_DIR = "loras"
DISTILLED_DIR = "lightx2v"
DIT_SHARD_COUNT = 7


@dataclass(frozen=True)
class RemoteFile:
    """One file of the layout: where it lives on the Hub and where it goes under the model dir."""

    repo_id: str
    filename: str  # path (or glob, for a whole folder) inside the repository, kept as is under `local_dir`
    local_dir: str  # folder under the model dir that mirrors the repository
    revision: str | None = None

    @property
    def local_path(self) -> str:
        return f"{self.local_dir}/{self.filename}"

    def command(self, model_dir: Path | str) -> str:
        """The single-file command that fetches this file into `model_dir`."""
        revision = f" --revision {self.revision}" if self.revision else ""
        target = Path(model_dir) / self.local_dir
        what = f'--include "{self.filename}"' if "*" in self.filename else self.filename
        return f"huggingface-cli download {self.repo_id} {what}{revision} --local-dir {target}"


def _wan(filename: str) -> RemoteFile:
    return RemoteFile("Wan-AI/Wan2.1-I2V-14B-480P", filename, WAN_DIR)


DIT_SHARDS = tuple(
    f"diffusion_pytorch_model-{i:05d}-of-{DIT_SHARD_COUNT:05d}.safetensors" for i in range(1, DIT_SHARD_COUNT + 1)
)
DIT_INDEX = "diffusion_pytorch_model.safetensors.index.json"
VAE_FILE = "Wan2.1_VAE.pth"
T5_FILE = "models_t5_umt5-xxl-enc-bf16.pth"
CLIP_FILE = "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"
TOKENIZER_DIR = "google/umt5-xxl"
ADAPTER_FILES = {"single": "single/infinitetalk.safetensors", "multi": "multi/infinitetalk.safetensors"}

WAN_FILES = {
    "dit_config": _wan("config.json"),
    "dit_index": _wan(DIT_INDEX),
    **{f"dit_shard_{i}": _wan(name) for i, name in enumerate(DIT_SHARDS, start=1)},
    "vae": _wan(VAE_FILE),
    "t5": _wan(T5_FILE),
    "clip": _wan(CLIP_FILE),
    # The whole folder: AutoTokenizer reads whichever of spiece.model / tokenizer.json is there.
    "tokenizer": _wan(f"{TOKENIZER_DIR}/*"),
}
# The InfiniteTalk audio adapters, by kind: one person, or two.
ADAPTERS: dict[str, RemoteFile] = {
    kind: RemoteFile("MeiGen-AI/InfiniteTalk", filename, ADAPTER_DIR) for kind, filename in ADAPTER_FILES.items()
}
OTHER_FILES = {
    "wav2vec_config": RemoteFile("TencentGameMate/chinese-wav2vec2-base", "config.json", WAV2VEC_DIR),
    "wav2vec_preprocessor": RemoteFile(
        "TencentGameMate/chinese-wav2vec2-base", "preprocessor_config.json", WAV2VEC_DIR
    ),
    # The safetensors conversion only exists on the PR branch; the reference README fetches it from there.
    "wav2vec_weights": RemoteFile(
        "TencentGameMate/chinese-wav2vec2-base", "model.safetensors", WAV2VEC_DIR, revision="refs/pr/1"
    ),
}
REQUIRED_FILES: dict[str, RemoteFile] = {**WAN_FILES, **OTHER_FILES}

# Optional step-distillation LoRAs, by the short names the CLI and the backend use.
LORAS: dict[str, RemoteFile] = {
    "fusionx": RemoteFile(
        "vrgamedevgirl84/Wan14BT2VFusioniX", "FusionX_LoRa/Wan2.1_I2V_14B_FusionX_LoRA.safetensors", LORA_DIR
    ),
    "lightx2v": RemoteFile(
        "Kijai/WanVideo_comfy", "Wan21_T2V_14B_lightx2v_cfg_step_distill_lora_rank32.safetensors", LORA_DIR
    ),
    # LightX2V's step- and guidance-distilled Wan2.1 I2V 480P weights as a LoRA (4 steps, no CFG):
    # the `turbo` preset's weights merged into the base shards at load.
    "lightx2v-i2v": RemoteFile(
        "lightx2v/Wan2.1-Distill-Loras", "wan2.1_i2v_lora_rank64_lightx2v_4step.safetensors", LORA_DIR
    ),
}

# LightX2V's step- and guidance-distilled Wan2.1 I2V 480P DiT as one file (DIT_PATH), for `turbo`:
# bf16, or pre-quantized e4m3 with per-output-channel scales that DTYPE=fp8 loads as they are.
DISTILLED_DITS: dict[str, RemoteFile] = {
    "lightx2v-4step": RemoteFile(
        "lightx2v/Wan2.1-Distill-Models", "wan2.1_i2v_480p_lightx2v_4step.safetensors", DISTILLED_DIR
    ),
    "lightx2v-4step-fp8": RemoteFile(
        "lightx2v/Wan2.1-Distill-Models", "wan2.1_i2v_480p_scaled_fp8_e4m3_lightx2v_4step.safetensors", DISTILLED_DIR
    ),
}


def download_command(model_dir: Path | str, multi: bool = False) -> str:
    """The command that fetches the whole required layout into `model_dir`."""
    return f"itk-download-weights {model_dir}{' --multi' if multi else ''}"


def plan(loras: Iterable[str] = (), dits: Iterable[str] = (), adapters: Iterable[str] = ("single",)
         ) -> list[RemoteFile]:
    """Every file to fetch: the required layout, the adapters of the named kinds and the named
    optional LoRAs and distilled DiTs."""
    adapters = list(adapters)
    unknown = sorted(set(adapters) - set(ADAPTERS))
    if unknown or not adapters:
        raise ValueError(f"adapter kinds must be some of {sorted(ADAPTERS)}, got {adapters}")
    unknown = sorted(set(loras) - set(LORAS))
    if unknown:
        raise ValueError(f"unknown LoRA name(s) {unknown}; known: {sorted(LORAS)}")
    unknown = sorted(set(dits) - set(DISTILLED_DITS))
    if unknown:
        raise ValueError(f"unknown distilled DiT name(s) {unknown}; known: {sorted(DISTILLED_DITS)}")
    return (list(REQUIRED_FILES.values()) + [ADAPTERS[kind] for kind in ADAPTERS if kind in adapters]
            + [LORAS[name] for name in loras] + [DISTILLED_DITS[name] for name in dits])


def grouped(files: Iterable[RemoteFile]) -> dict[tuple[str, str | None, str], list[str]]:
    """Files grouped into one snapshot call per (repository, revision, local folder)."""
    groups: dict[tuple[str, str | None, str], list[str]] = {}
    for item in files:
        groups.setdefault((item.repo_id, item.revision, item.local_dir), []).append(item.filename)
    return groups


def download(model_dir: Path, loras: Iterable[str] = (), dits: Iterable[str] = (),
             adapters: Iterable[str] = ("single",)) -> None:
    from huggingface_hub import snapshot_download

    for (repo_id, revision, local_dir), filenames in grouped(plan(loras, dits, adapters)).items():
        print(f"{repo_id}{'@' + revision if revision else ''}: {len(filenames)} file(s) -> {model_dir / local_dir}")
        snapshot_download(
            repo_id, revision=revision, local_dir=model_dir / local_dir, allow_patterns=filenames
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="itk-download-weights",
        description="Download the InfiniteTalk model directory (Wan2.1-I2V-14B-480P, InfiniteTalk adapter, "
        "chinese-wav2vec2-base, optional LoRAs) from the Hugging Face Hub. Re-running resumes.",
    )
    parser.add_argument("model_dir", type=Path, help="target folder (the generator's model dir)")
    parser.add_argument(
        "--lora", action="append", default=[], choices=sorted(LORAS),
        help="also fetch this step-distillation LoRA (repeatable)",
    )
    parser.add_argument(
        "--dit", action="append", default=[], choices=sorted(DISTILLED_DITS),
        help="also fetch this step- and guidance-distilled DiT (one file, for DIT_PATH and the turbo preset)",
    )
    parser.add_argument("--turbo", action="store_true",
                        help="everything the turbo preset needs on an FP8 GPU: same as --dit lightx2v-4step-fp8")
    parser.add_argument("--multi", action="store_true",
                        help="also fetch the multi-person (two speakers) InfiniteTalk adapter, "
                             f"{ADAPTERS['multi'].local_path}")
    parser.add_argument("--multi-only", action="store_true",
                        help="fetch the multi-person adapter instead of the single-person one (a generator "
                             "that renders two-person chunks only)")
    parser.add_argument("--dry-run", action="store_true", help="list what would be fetched and exit")
    args = parser.parse_args(argv)
    dits = sorted(set(args.dit) | ({"lightx2v-4step-fp8"} if args.turbo else set()))
    adapters = ["multi"] if args.multi_only else ["single", "multi"] if args.multi else ["single"]
    if args.dry_run:
        for item in plan(args.lora, dits, adapters):
            print(f"{item.local_path}\t<- {item.repo_id}{'@' + item.revision if item.revision else ''}")
        return 0
    download(args.model_dir, args.lora, dits, adapters)
    return 0


if __name__ == "__main__":
    sys.exit(main())
