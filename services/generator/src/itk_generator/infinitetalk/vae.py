"""The Wan2.1 causal 3-D VAE: the original `Wan2.1_VAE.pth` loaded into diffusers' AutoencoderKLWan.

diffusers implements the same network (causal convs, RMS norms, single-head mid attention,
1-4-4-... temporal chunking with feature caches) under other module names, so the original
checkpoint is renamed key by key and loaded strictly. The sizes are read from the tensor
shapes, so the published file and the tiny test file go through the same code.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKLWan

from .vae_fast_paths import decode_in_time_chunks, encode_in_time_chunks, fuse_norms
from .weights import WeightsError, check_state_dict, read_torch_file

# Per-channel statistics of Wan2.1 latents (wan/modules/vae.py): latents are (mu - mean) / std.
LATENT_MEAN = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)
LATENT_STD = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)

# Inside a residual block: original Sequential index -> diffusers attribute.
_RESIDUAL_PARTS = {"residual.0.": "norm1.", "residual.2.": "conv1.", "residual.3.": "norm2.",
                   "residual.6.": "conv2.", "shortcut.": "conv_shortcut."}


@dataclass(frozen=True)
class VAEShape:
    """The sizes that define a Wan2.1 VAE, as read from its original state dict."""

    base_dim: int
    z_dim: int
    dim_mult: tuple[int, ...]
    num_res_blocks: int
    temporal_downsample: tuple[bool, ...]

    @classmethod
    def infer(cls, state: dict[str, torch.Tensor]) -> VAEShape:
        try:
            base_dim = state["encoder.conv1.weight"].shape[0]
            z_dim = state["conv2.weight"].shape[0]
        except KeyError as err:
            raise WeightsError(f"not a Wan2.1 VAE state dict: no {err}") from err
        # Walk the encoder's flat list: residual blocks of a stage, then a resample between stages.
        widths: list[list[int]] = [[]]
        temporal: list[bool] = []
        index = 0
        while True:
            prefix = f"encoder.downsamples.{index}."
            if f"{prefix}residual.2.weight" in state:
                widths[-1].append(state[f"{prefix}residual.2.weight"].shape[0])
            elif f"{prefix}resample.1.weight" in state:
                temporal.append(f"{prefix}time_conv.weight" in state)
                widths.append([])
            elif any(key.startswith(prefix) for key in state):
                raise WeightsError(f"unsupported VAE layer {prefix[:-1]} (attention in the down path?)")
            else:
                break
            index += 1
        counts = {len(stage) for stage in widths}
        if len(counts) != 1 or 0 in counts:
            raise WeightsError(f"uneven VAE stages: residual blocks per stage {[len(s) for s in widths]}")
        return cls(
            base_dim=base_dim,
            z_dim=z_dim,
            dim_mult=tuple(stage[-1] // base_dim for stage in widths),
            num_res_blocks=counts.pop(),
            temporal_downsample=tuple(temporal),
        )

    def build(self) -> AutoencoderKLWan:
        if self.z_dim != len(LATENT_MEAN):
            raise WeightsError(f"VAE z_dim {self.z_dim}: the Wan2.1 latent statistics need {len(LATENT_MEAN)}")
        return AutoencoderKLWan(
            base_dim=self.base_dim, z_dim=self.z_dim, dim_mult=list(self.dim_mult),
            num_res_blocks=self.num_res_blocks, attn_scales=[],
            temperal_downsample=list(self.temporal_downsample),
            latents_mean=list(LATENT_MEAN), latents_std=list(LATENT_STD),
        )


def _residual_pairs(old: str, new: str) -> list[tuple[str, str]]:
    return [(old + a, new + b) for a, b in _RESIDUAL_PARTS.items()]


def module_pairs(shape: VAEShape) -> list[tuple[str, str]]:
    """(original prefix, diffusers prefix) for every module of the VAE.

    The original keeps flat Sequentials; diffusers groups the decoder's list into per-stage
    up blocks of num_res_blocks + 1 residual blocks and one upsampler.
    """
    pairs = [("conv1.", "quant_conv."), ("conv2.", "post_quant_conv.")]
    for side in ("encoder", "decoder"):
        pairs += [(f"{side}.conv1.", f"{side}.conv_in."), (f"{side}.head.0.", f"{side}.norm_out."),
                  (f"{side}.head.2.", f"{side}.conv_out."), (f"{side}.middle.1.", f"{side}.mid_block.attentions.0.")]
        pairs += _residual_pairs(f"{side}.middle.0.", f"{side}.mid_block.resnets.0.")
        pairs += _residual_pairs(f"{side}.middle.2.", f"{side}.mid_block.resnets.1.")
    stages = len(shape.dim_mult)
    down = up = 0
    for stage in range(stages):
        for _ in range(shape.num_res_blocks):
            pairs += _residual_pairs(f"encoder.downsamples.{down}.", f"encoder.down_blocks.{down}.")
            down += 1
        for block in range(shape.num_res_blocks + 1):
            pairs += _residual_pairs(f"decoder.upsamples.{up}.", f"decoder.up_blocks.{stage}.resnets.{block}.")
            up += 1
        if stage != stages - 1:
            pairs.append((f"encoder.downsamples.{down}.", f"encoder.down_blocks.{down}."))
            pairs.append((f"decoder.upsamples.{up}.", f"decoder.up_blocks.{stage}.upsamplers.0."))
            down, up = down + 1, up + 1
    return pairs


def rename(state: dict[str, torch.Tensor], pairs: list[tuple[str, str]]) -> dict[str, torch.Tensor]:
    """Replace each key's longest matching prefix; a key no prefix covers is an error."""
    renamed = {}
    for key, tensor in state.items():
        matches = [(old, new) for old, new in pairs if key.startswith(old)]
        if not matches:
            raise WeightsError(f"unexpected tensor in the VAE weights: {key}")
        old, new = max(matches, key=lambda pair: len(pair[0]))
        renamed[new + key[len(old):]] = tensor
    return renamed


def to_diffusers_keys(state: dict[str, torch.Tensor], shape: VAEShape) -> dict[str, torch.Tensor]:
    """Original Wan2.1 VAE names -> AutoencoderKLWan names."""
    return rename(state, module_pairs(shape))


def to_original_keys(state: dict[str, torch.Tensor], shape: VAEShape) -> dict[str, torch.Tensor]:
    """AutoencoderKLWan names -> the original `Wan2.1_VAE.pth` names."""
    return rename(state, [(new, old) for old, new in module_pairs(shape)])


class WanVAE:
    """Encode videos in [-1, 1] to normalised Wan2.1 latents and back."""

    temporal_stride = 4
    spatial_stride = 8

    def __init__(self, model: AutoencoderKLWan, device: torch.device, dtype: torch.dtype,
                 channels_last: bool | None = None, fused_norms: bool = False, time_chunk: int = 1) -> None:
        self.model = model.eval().requires_grad_(False)
        self.device, self.dtype = device, dtype
        # vae_fast_paths.py: the norms fused with their SiLU (compiled on a GPU), and the decoder and
        # encoder fed `time_chunk` latent frames' worth per call. Both give the same values to rounding.
        if time_chunk < 1:
            raise ValueError(f"time_chunk must be at least 1, got {time_chunk}")
        self.time_chunk = time_chunk
        if fused_norms:
            fuse_norms(self.model, compiled=torch.device(device).type == "cuda")
        # cuDNN's 3-D convolutions run fastest on NDHWC tensors with its autotuner picking the
        # kernels: on an H100 the bf16 decode of one 81-frame 480p clip took 1.72 s so against 2.07 s
        # (bench/gpu_engine.py), the same values to rounding. The activations follow the layout of
        # the kernels and the input. Default: on a GPU.
        if channels_last is None:
            channels_last = torch.device(device).type == "cuda"
        self.memory_format = torch.channels_last_3d if channels_last else torch.contiguous_format
        if channels_last:
            for parameter in self.model.parameters():
                if parameter.ndim == 5:  # the 3-D convolutions' kernels
                    parameter.data = parameter.data.contiguous(memory_format=torch.channels_last_3d)
        self.z_dim = model.config.z_dim
        self.mean = torch.tensor(LATENT_MEAN, device=device, dtype=torch.float32).view(1, -1, 1, 1, 1)
        self.std = torch.tensor(LATENT_STD, device=device, dtype=torch.float32).view(1, -1, 1, 1, 1)

    @classmethod
    def load(
        cls,
        path: Path,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        config: VAEShape | None = None,
        fused_norms: bool = False,
        time_chunk: int = 1,
    ) -> WanVAE:
        """Load the original-layout `.pth` strictly; sizes come from `config` or the tensor shapes."""
        state = read_torch_file(Path(path))
        shape = config or VAEShape.infer(state)
        model = shape.build()
        renamed = to_diffusers_keys(state, shape)
        check_state_dict(set(model.state_dict()), set(renamed), what=f"{path} (as AutoencoderKLWan)")
        try:
            model.load_state_dict(renamed, strict=True)
        except RuntimeError as err:  # shape mismatches
            raise WeightsError(f"{path} does not fit the inferred VAE {shape}: {err}") from err
        device = torch.device(device)
        model = model.to(device)
        return cls(model if dtype == torch.float32 else model.to(dtype), device, dtype,
                   fused_norms=fused_norms, time_chunk=time_chunk)

    @property
    def _in_time_chunks(self) -> bool:
        """VAE_TIME_CHUNK above 1, unless VAE_TILING's spatial tiles run the model their own way."""
        return self.time_chunk > 1 and not self.model.use_tiling

    def _convolutions(self) -> contextlib.AbstractContextManager:
        """cuDNN autotuning for the convolutions of a channels-last model (each shape is tuned once)."""
        if self.memory_format is torch.contiguous_format or torch.device(self.device).type != "cuda":
            return contextlib.nullcontext()
        return torch.backends.cudnn.flags(enabled=True, benchmark=True, deterministic=False,
                                          allow_tf32=torch.backends.cudnn.allow_tf32)

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """[B, 3, T, H, W] in [-1, 1] -> normalised latents [B, 16, 1 + (T-1)//4, H/8, W/8] (fp32)."""
        video = video.to(self.device, self.dtype).contiguous(memory_format=self.memory_format)
        with self._convolutions():
            if self._in_time_chunks:
                mu = encode_in_time_chunks(self.model, video, self.time_chunk)[:, : self.z_dim].float()
            else:
                mu = self.model.encode(video).latent_dist.mean.float()
        return (mu - self.mean) / self.std

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents [B, 16, t, h, w] -> video [B, 3, 1 + 4*(t-1), 8h, 8w] in [-1, 1] (fp32)."""
        z = latents.to(self.device, torch.float32) * self.std + self.mean
        z = z.to(self.dtype).contiguous(memory_format=self.memory_format)
        with self._convolutions():
            if self._in_time_chunks:
                return decode_in_time_chunks(self.model, z, self.time_chunk).float()
            return self.model.decode(z).sample.float().clamp(-1, 1)
