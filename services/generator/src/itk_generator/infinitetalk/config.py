"""Configuration of the InfiniteTalk DiT: Wan2.1's `config.json` plus the audio adapter's sizes."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DiTConfig:
    """Sizes of the Wan2.1 I2V transformer and of InfiniteTalk's audio adapter.

    The first group mirrors the keys of Wan's `config.json` (defaults: the 14B model); the
    audio group is fixed by the published adapter weights and not part of that file.
    """

    dim: int = 5120
    ffn_dim: int = 13824
    freq_dim: int = 256
    in_dim: int = 36
    out_dim: int = 16
    num_heads: int = 40
    num_layers: int = 40
    patch_size: tuple[int, int, int] = (1, 2, 2)
    text_len: int = 512
    text_dim: int = 4096
    eps: float = 1e-6
    qk_norm: bool = True
    cross_attn_norm: bool = True
    model_type: str = "i2v"

    # CLIP ViT-H/14 token width (image cross-attention context).
    clip_dim: int = 1280
    # The 257 CLIP tokens come first in the cross-attention context, then the text tokens.
    clip_tokens: int = 257

    # Audio adapter: wav2vec2 features are `audio_layers` hidden states of `audio_channels`.
    audio_window: int = 5
    audio_layers: int = 12
    audio_channels: int = 768
    audio_intermediate_dim: int = 512
    audio_output_dim: int = 768
    audio_context_tokens: int = 32
    # Video frames per latent frame (the VAE's temporal stride).
    vae_scale: int = 4
    rope_theta: float = 10000.0

    def __post_init__(self) -> None:
        if self.model_type != "i2v":
            raise ValueError(f"InfiniteTalk needs an i2v Wan model, config says model_type={self.model_type!r}")
        if self.dim % self.num_heads:
            raise ValueError(f"dim {self.dim} is not divisible by num_heads {self.num_heads}")
        if self.head_dim % 2 or self.head_dim < 6:
            raise ValueError(f"head_dim {self.head_dim} must be even and at least 6 for the 3-axis RoPE")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def audio_window_latent(self) -> int:
        """Feature windows gathered for every latent frame after the first (5 + 4 - 1 = 8)."""
        return self.audio_window + self.vae_scale - 1

    @classmethod
    def from_json(cls, path: Path | str) -> DiTConfig:
        """Read Wan's `config.json`; keys we do not model (`_class_name`, ...) are ignored."""
        raw = json.loads(Path(path).read_text())
        known = {f.name for f in dataclasses.fields(cls)}
        values = {key: value for key, value in raw.items() if key in known}
        if "patch_size" in values:
            values["patch_size"] = tuple(values["patch_size"])
        return cls(**values)
