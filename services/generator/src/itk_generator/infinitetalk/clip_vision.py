"""The CLIP ViT-H/14 image tower (open-clip XLM-RoBERTa-large ViT-H-14) as Wan2.1 I2V uses it.

Wan's checkpoint stores its own module names; the visual tower is a standard pre-norm ViT with
exact GELU, so it maps one to one onto transformers' CLIPVisionModel. Wan takes the output of
every block but the last, without the final norm: the model is built one block short and the
last block's tensors are checked and dropped.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import CLIPVisionConfig, CLIPVisionModel

from .weights import WeightsError, check_state_dict, read_torch_file

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# ViT-H/14 has 16 heads of 80 channels; the checkpoint does not record the head count.
HEAD_DIM = 80
_PREFIX = "visual."

_BLOCK_NAMES = {
    "norm1": "layer_norm1", "norm2": "layer_norm2", "attn.proj": "self_attn.out_proj",
    "mlp.0": "mlp.fc1", "mlp.2": "mlp.fc2",
}


def _visual_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The visual tower's tensors with the `visual.` prefix removed (the text tower is not used)."""
    return {key[len(_PREFIX):]: value for key, value in state.items() if key.startswith(_PREFIX)}


def infer_config(visual: dict[str, torch.Tensor]) -> CLIPVisionConfig:
    try:
        patch = visual["patch_embedding.weight"]
        tokens = visual["pos_embedding"].shape[1]
        mlp_dim = visual["transformer.0.mlp.0.weight"].shape[0]
    except KeyError as err:
        raise WeightsError(f"not a Wan CLIP checkpoint: no visual.{err.args[0]}") from err
    width, patch_size = patch.shape[0], patch.shape[-1]
    layers = len({key.split(".")[1] for key in visual if key.startswith("transformer.")})
    if width % HEAD_DIM:
        raise WeightsError(f"CLIP width {width} is not a multiple of the {HEAD_DIM}-wide heads")
    return CLIPVisionConfig(
        hidden_size=width, intermediate_size=mlp_dim, num_hidden_layers=layers - 1,
        num_attention_heads=width // HEAD_DIM, image_size=math.isqrt(tokens - 1) * patch_size,
        patch_size=patch_size, hidden_act="gelu", layer_norm_eps=1e-5,
    )


def to_hf_keys(visual: dict[str, torch.Tensor], num_layers: int) -> dict[str, torch.Tensor]:
    """Wan's visual names -> CLIPVisionModel names for the first `num_layers` blocks."""
    out = {
        "embeddings.patch_embedding.weight": visual["patch_embedding.weight"],
        "embeddings.class_embedding": visual["cls_embedding"].reshape(-1),
        "embeddings.position_embedding.weight": visual["pos_embedding"].reshape(-1, visual["pos_embedding"].shape[-1]),
    }
    for part in ("weight", "bias"):
        out[f"pre_layrnorm.{part}"] = visual[f"pre_norm.{part}"]
        out[f"post_layernorm.{part}"] = visual[f"post_norm.{part}"]
        for layer in range(num_layers):
            src, dst = f"transformer.{layer}.", f"encoder.layers.{layer}."
            q, k, v = visual[f"{src}attn.to_qkv.{part}"].chunk(3, dim=0)
            out.update({f"{dst}self_attn.q_proj.{part}": q, f"{dst}self_attn.k_proj.{part}": k,
                        f"{dst}self_attn.v_proj.{part}": v})
            for old, new in _BLOCK_NAMES.items():
                out[f"{dst}{new}.{part}"] = visual[f"{src}{old}.{part}"]
    return out


def to_wan_keys(hf_state: dict[str, torch.Tensor], num_layers: int, head_dim: int) -> dict[str, torch.Tensor]:
    """CLIPVisionModel names (all `num_layers` blocks) -> Wan's `visual.*` names, the inverse of
    `to_hf_keys`; `head_dim` sizes the projection head Wan stores but this tower never uses."""
    width = hf_state["pre_layrnorm.weight"].shape[0]
    visual = {
        "patch_embedding.weight": hf_state["embeddings.patch_embedding.weight"],
        "cls_embedding": hf_state["embeddings.class_embedding"].view(1, 1, width),
        "pos_embedding": hf_state["embeddings.position_embedding.weight"].unsqueeze(0),
        "head": torch.zeros(width, head_dim, dtype=hf_state["pre_layrnorm.weight"].dtype),
    }
    for part in ("weight", "bias"):
        visual[f"pre_norm.{part}"] = hf_state[f"pre_layrnorm.{part}"]
        visual[f"post_norm.{part}"] = hf_state[f"post_layernorm.{part}"]
        for layer in range(num_layers):
            src, dst = f"encoder.layers.{layer}.", f"transformer.{layer}."
            qkv = [hf_state[f"{src}self_attn.{name}_proj.{part}"] for name in "qkv"]
            visual[f"{dst}attn.to_qkv.{part}"] = torch.cat(qkv)
            for old, new in _BLOCK_NAMES.items():
                visual[f"{dst}{old}.{part}"] = hf_state[f"{src}{new}.{part}"]
    return {_PREFIX + key: value for key, value in visual.items()}


def _expected_visual_keys(num_blocks: int) -> set[str]:
    keys = {"patch_embedding.weight", "cls_embedding", "pos_embedding", "head"}
    for part in ("weight", "bias"):
        keys |= {f"pre_norm.{part}", f"post_norm.{part}"}
        for layer in range(num_blocks):
            keys.add(f"transformer.{layer}.attn.to_qkv.{part}")
            keys |= {f"transformer.{layer}.{name}.{part}" for name in _BLOCK_NAMES}
    return keys


class ClipVisionEncoder:
    """Images in [-1, 1] -> CLIP tokens [B, 257, 1280] (penultimate block, no final norm)."""

    def __init__(self, model: CLIPVisionModel, device: torch.device, dtype: torch.dtype) -> None:
        self.model = model.eval().requires_grad_(False)
        self.device, self.dtype = device, dtype
        self.image_size = model.config.image_size
        self.mean = torch.tensor(CLIP_MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(CLIP_STD, device=device).view(1, 3, 1, 1)

    @classmethod
    def load(cls, path: Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
             ) -> ClipVisionEncoder:
        visual = _visual_state(read_torch_file(Path(path)))
        config = infer_config(visual)
        check_state_dict(_expected_visual_keys(config.num_hidden_layers + 1),
                         set(visual), what=f"{path} (visual tower)")
        with torch.device("meta"):  # no random init: every parameter comes from the file
            model = CLIPVisionModel(config)
        try:
            model.load_state_dict(to_hf_keys(visual, config.num_hidden_layers), strict=True, assign=True)
        except RuntimeError as err:
            raise WeightsError(f"{path} does not fit the inferred CLIP tower: {err}") from err
        positions = torch.arange(model.embeddings.num_positions).unsqueeze(0)
        model.embeddings.register_buffer("position_ids", positions, persistent=False)
        device = torch.device(device)
        return cls(model.to(device=device, dtype=dtype), device, dtype)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [-1, 1] -> [B, tokens, width] in the encoder's dtype."""
        size = (self.image_size, self.image_size)
        pixels = F.interpolate(images.to(self.device, torch.float32), size=size, mode="bicubic", align_corners=False)
        pixels = (pixels * 0.5 + 0.5 - self.mean) / self.std
        return self.model(pixel_values=pixels.to(self.dtype)).last_hidden_state
