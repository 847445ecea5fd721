"""Finding and loading the model files: strict, local only, with errors that say how to fix them.

The DiT weights are the seven Wan2.1 shards (as listed by their index json) plus an
InfiniteTalk adapter file (the single- or the multi-person one), merged into one state dict the
way the reference does, with optional step-distillation LoRAs folded into the weights. A model
directory holds one adapter or both.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from .download import (
    ADAPTERS,
    DIT_SHARDS,
    REQUIRED_FILES,
    TOKENIZER_DIR,
    WAN_DIR,
    WAV2VEC_DIR,
    RemoteFile,
    download_command,
)
from .fp8 import FP8_DTYPE, dequantize_state, is_fp8_state

log = logging.getLogger(__name__)

_LISTED_NAMES = 40
_LORA_PREFIX = "diffusion_model."


class WeightsError(RuntimeError):
    """A model file is missing, malformed, or does not match the model."""


def _listing(title: str, names: Iterable[str]) -> str:
    names = sorted(names)
    shown = ", ".join(names[:_LISTED_NAMES])
    more = f" ... and {len(names) - _LISTED_NAMES} more" if len(names) > _LISTED_NAMES else ""
    return f"{title} ({len(names)}): {shown}{more}"


def check_state_dict(expected: set[str], got: set[str], what: str = "weights") -> None:
    """Raise WeightsError naming every missing and unexpected tensor."""
    missing, unexpected = expected - got, got - expected
    if not missing and not unexpected:
        return
    parts = [f"{what} do not match the model"]
    if missing:
        parts.append(_listing("missing tensors", missing))
    if unexpected:
        parts.append(_listing("unexpected tensors", unexpected))
    raise WeightsError("; ".join(parts))


def _missing_file_error(root: Path, missing: Sequence[RemoteFile]) -> WeightsError:
    lines = [f"model files missing under {root}:"]
    lines += [f"  {item.local_path}  (fetch it: {item.command(root)})" for item in missing]
    lines.append(f"or fetch the whole layout: {download_command(root)}")
    return WeightsError("\n".join(lines))


def _present(root: Path, item: RemoteFile) -> bool:
    if item.filename.endswith("/*"):
        folder = root / item.local_path[: -len("/*")]
        has_vocab = (folder / "spiece.model").is_file() or (folder / "tokenizer.json").is_file()
        return (folder / "tokenizer_config.json").is_file() and has_vocab
    return (root / item.local_path).is_file()


@dataclass(frozen=True)
class ModelPaths:
    """Every file the InfiniteTalk backend reads, inside one model directory."""

    root: Path
    dit_config: Path
    dit_index: Path
    dit_shards: tuple[Path, ...]
    adapters: dict[str, Path]  # kind ("single", "multi") -> file, for the adapters present
    vae: Path
    t5: Path
    clip: Path
    tokenizer_dir: Path
    wav2vec_dir: Path

    @classmethod
    def from_root(cls, model_dir: Path | str) -> ModelPaths:
        """Locate every file of the layout; raise WeightsError listing each missing one and its command."""
        root = Path(model_dir)
        missing = [item for item in REQUIRED_FILES.values() if not _present(root, item)]
        adapters = {kind: root / item.local_path for kind, item in ADAPTERS.items() if _present(root, item)}
        if not adapters:
            missing.append(ADAPTERS["single"])
        if missing:
            error = _missing_file_error(root, missing)
            if not adapters:
                error = WeightsError(f"{error}\nfor two-person chunks fetch the multi-person adapter instead or too: "
                                     f"{ADAPTERS['multi'].command(root)}")
            raise error
        wan = root / WAN_DIR
        return cls(
            root=root,
            dit_config=wan / "config.json",
            dit_index=root / REQUIRED_FILES["dit_index"].local_path,
            dit_shards=tuple(wan / name for name in DIT_SHARDS),
            adapters=adapters,
            vae=root / REQUIRED_FILES["vae"].local_path,
            t5=root / REQUIRED_FILES["t5"].local_path,
            clip=root / REQUIRED_FILES["clip"].local_path,
            tokenizer_dir=wan / TOKENIZER_DIR,
            wav2vec_dir=root / WAV2VEC_DIR,
        )


def read_safetensors(path: Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as handle:
            return {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118 (not a dict)
    except FileNotFoundError as err:
        raise WeightsError(f"model file missing: {path}") from err
    except Exception as err:
        raise WeightsError(f"cannot read {path}: {err}") from err


def read_torch_file(path: Path) -> dict[str, torch.Tensor]:
    """A plain `torch.save`d state dict (Wan's .pth files), read without running pickled code."""
    if not path.is_file():
        raise WeightsError(f"model file missing: {path}")
    try:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # files in the legacy (non-zip) format cannot be memory-mapped
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise WeightsError(f"cannot read {path}: {err}") from err
    if not isinstance(state, dict):
        raise WeightsError(f"{path} holds a {type(state).__name__}, expected a state dict")
    return state


def _index_shards(paths: ModelPaths) -> dict[str, list[str]]:
    """Tensor names per shard file as the index lists them; the shards must be the published seven."""
    try:
        weight_map: dict[str, str] = json.loads(paths.dit_index.read_text())["weight_map"]
    except (OSError, ValueError, KeyError) as err:
        raise WeightsError(f"cannot read the shard index {paths.dit_index}: {err}") from err
    by_shard: dict[str, list[str]] = {}
    for name, shard in weight_map.items():
        by_shard.setdefault(shard, []).append(name)
    known = {path.name for path in paths.dit_shards}
    if set(by_shard) - known:
        raise WeightsError(f"{paths.dit_index} names unknown shard files {sorted(set(by_shard) - known)}")
    return by_shard


_SINGLE_FILE_PREFIXES = ("model.diffusion_model.", "diffusion_model.")


def _is_quantized(name: str, tensor: torch.Tensor) -> bool:
    return tensor.dtype == FP8_DTYPE or name.endswith(".weight_scale")


def read_single_file_dit(path: Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """A whole Wan2.1 DiT in one safetensors file (LightX2V's distilled models, bf16 or scaled FP8),
    its keys in the shards' names (a common `diffusion_model.` prefix is removed)."""
    state = read_safetensors(path, device)
    for prefix in _SINGLE_FILE_PREFIXES:
        if state and all(name.startswith(prefix) for name in state):
            state = {name.removeprefix(prefix): tensor for name, tensor in state.items()}
            break
    return state


def load_dit_state_dict(
    paths: ModelPaths,
    loras: Sequence[tuple[Path, float]] = (),
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
    dit_file: Path | None = None,
    keep_fp8: bool = False,
    adapter: str = "single",
) -> dict[str, torch.Tensor]:
    """The Wan2.1 shards listed in the index (or `dit_file`, a whole DiT in one file) plus the
    InfiniteTalk adapter of kind `adapter`, as one state dict.

    Every shard must hold exactly the tensors its index lists, and the adapter must not
    redefine a base tensor. LoRAs (path, scale) are merged after the cast to `dtype`. A
    pre-quantized `dit_file` (e4m3 weights with `weight_scale`s) keeps its FP8 tensors when
    `keep_fp8` and no LoRA is given; otherwise it is dequantized to `dtype`, so LoRAs always merge
    into full-precision weights before any (re-)quantization.
    """
    def cast(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # Per file, so that peak memory is one fp32 shard on top of the converted model.
        if dtype is None:
            return tensors
        return {name: tensor if _is_quantized(name, tensor) else tensor.to(dtype) for name, tensor in tensors.items()}

    state: dict[str, torch.Tensor] = {}
    if dit_file is not None:
        base = read_single_file_dit(dit_file, device)
        if is_fp8_state(base) and (loras or not keep_fp8):
            base = dequantize_state(base, dtype or torch.bfloat16)
        state.update(cast(base))
    else:
        for shard_name, names in _index_shards(paths).items():
            shard_path = paths.dit_index.parent / shard_name
            shard = read_safetensors(shard_path, device)
            check_state_dict(set(names), set(shard), what=f"{shard_path.name} (against {paths.dit_index.name})")
            state.update(cast(shard))
    adapter_path = adapter_file(paths, adapter)
    adapter_state = read_safetensors(adapter_path, device)
    overlap = set(adapter_state) & set(state)
    if overlap:
        raise WeightsError(_listing(f"{adapter_path} redefines base tensors", overlap))
    state.update(cast(adapter_state))
    for lora_path, scale in loras:
        merge_lora(state, read_safetensors(lora_path, device), scale, source=str(lora_path))
    return state


def adapter_file(paths: ModelPaths, kind: str) -> Path:
    if kind not in paths.adapters:
        raise WeightsError(f"the {kind}-person InfiniteTalk adapter is missing under {paths.root} "
                           f"(fetch it: {ADAPTERS[kind].command(paths.root)})")
    return paths.adapters[kind]


def load_adapter_state(
    paths: ModelPaths,
    kind: str,
    loras: Sequence[tuple[Path, float]] = (),
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, torch.Tensor]:
    """The adapter of kind `kind` alone (a second adapter next to a loaded DiT), cast to `dtype`,
    with the parts of the LoRAs that update adapter tensors merged in."""
    adapter_path = adapter_file(paths, kind)
    state = {name: tensor.to(dtype) if dtype is not None else tensor
             for name, tensor in read_safetensors(adapter_path, device).items()}
    for lora_path, scale in loras:
        lora = read_safetensors(lora_path, device)
        keys = [key for target, keys in lora_targets(lora).items() if target in state for key in keys]
        if keys:
            merge_lora(state, {key: lora[key] for key in keys}, scale, source=str(lora_path))
    return state


def lora_targets(lora: dict[str, torch.Tensor]) -> dict[str, tuple[str, ...]]:
    """Model tensor name -> the LoRA tensors that update it, in the reference's key format.

    `diffusion_model.<name>.lora_down.weight` / `.lora_up.weight` give a low-rank update of
    `<name>.weight`; `diffusion_model.<name>.diff` / `.diff_b` are full updates of `<name>.weight`
    / `<name>.bias`. Other keys (`.alpha`, ...) are not used by the reference and are skipped.
    """
    targets: dict[str, tuple[str, ...]] = {}
    skipped = []
    for key in lora:
        base = key.removeprefix(_LORA_PREFIX)
        if base == key:
            skipped.append(key)
        elif base.endswith(".lora_down.weight"):
            up_key = key.removesuffix("lora_down.weight") + "lora_up.weight"
            if up_key not in lora:
                raise WeightsError(f"LoRA tensor {key} has no matching {up_key}")
            targets[base.removesuffix("lora_down.weight") + "weight"] = (key, up_key)
        elif base.endswith(".diff_b"):
            targets[base.removesuffix("diff_b") + "bias"] = (key,)
        elif base.endswith(".diff"):
            targets[base.removesuffix("diff") + "weight"] = (key,)
        elif not base.endswith((".lora_up.weight", ".alpha")):
            skipped.append(key)
    if skipped:
        log.warning("%s", _listing("LoRA tensors in no known format, skipped", skipped))
    return targets


@torch.no_grad()
def merge_lora(
    state: dict[str, torch.Tensor], lora: dict[str, torch.Tensor], scale: float, source: str = "LoRA"
) -> None:
    """Fold a LoRA into `state` in place: W += scale * up @ down (and W += scale * diff).

    As in the reference (wan/wan_lora.py) the update is not multiplied by alpha/rank: the
    `.alpha` tensors some files carry are ignored. The product is taken in fp32.
    """
    targets = lora_targets(lora)
    if not targets:
        raise WeightsError(f"{source} holds no LoRA tensors in the expected 'diffusion_model.*' format")
    unknown = set(targets) - set(state)
    if unknown:
        raise WeightsError(_listing(f"{source} updates tensors the model does not have", unknown))
    for name, keys in targets.items():
        weight = state[name]
        if len(keys) == 2:
            down, up = (lora[key].to(weight.device, torch.float32) for key in keys)
            delta = (up.flatten(1) @ down.flatten(1)).reshape(weight.shape)
        else:
            delta = lora[keys[0]].to(weight.device, torch.float32)
        if delta.shape != weight.shape:
            raise WeightsError(f"{source}: update of {name} has shape {tuple(delta.shape)}, "
                               f"the model's is {tuple(weight.shape)}")
        state[name] = (weight.float() + scale * delta).to(weight.dtype)


__all__ = [
    "ModelPaths",
    "WeightsError",
    "adapter_file",
    "check_state_dict",
    "load_adapter_state",
    "load_dit_state_dict",
    "lora_targets",
    "merge_lora",
    "read_safetensors",
    "read_single_file_dit",
    "read_torch_file",
]
