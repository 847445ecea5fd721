"""The InfiniteTalk diffusion transformer: Wan2.1 I2V blocks plus InfiniteTalk's audio adapter.

Parameter names equal the published checkpoint keys (the 7 Wan2.1-I2V-14B shards merged with
InfiniteTalk/single/infinitetalk.safetensors), so that state dict loads strictly.

Numerics follow the reference in bf16: the timestep embedding, the modulation tables, the
modulated LayerNorm inputs, the gated residual adds and the output head run in fp32; RoPE is
applied in fp32; everything else (projections, attention, FFN) runs in the model's dtype.

Forward pass, per block (x: video tokens, e: 6 modulation vectors from the timestep):
    x = x + gate_sa  * self_attn(LN(x) * (1 + scale_sa) + shift_sa)      RoPE, RMSNorm on q/k
    x = x + cross_attn(LN3(x), clip tokens, text tokens)                  the two attentions summed
    x = x + audio_cross_attn(LN_x(x), this latent frame's audio tokens)
    x = x + gate_ffn * ffn(LN(x) * (1 + scale_ffn) + shift_ffn)

Several persons (speakers.py): the audio tokens are the persons' tokens side by side, and each
block's self-attention q / k also give the reference attention map from which the audio
cross-attention's speaker labels come. The model's audio layers hold one adapter at a time (the
single- or the multi-person weights); a DiT loaded with both swaps them per chunk (`use_adapter`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from .attention import Attention
from .audio_adapter import AudioCrossAttention, AudioProjModel, gather_latent_audio_windows
from .config import DiTConfig
from .rope import apply_rope, rope_cos_sin
from .speakers import SpeakerRegions, check_persons, region_weights, speaker_labels

SINGLE, MULTI = "single", "multi"
# The InfiniteTalk adapters: the audio layers' weights for one person, and for several.
ADAPTERS = (SINGLE, MULTI)


def modulate(normed: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """normed * (1 + scale) + shift, computed in fp32 and rounded once to normed's dtype.

    `out=` in the activations' dtype lets one kernel read the bf16 input, compute in fp32 (the
    type promotion of the fp32 shift/scale) and write bf16, with no fp32 copy of the activations.
    """
    return torch.addcmul(shift, normed, 1 + scale, out=torch.empty_like(normed))


def gated_residual(x: torch.Tensor, update: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """x + update * gate in fp32, rounded once to x's dtype (one kernel, as in `modulate`)."""
    return torch.addcmul(x, update, gate, out=torch.empty_like(x))


def sinusoidal_embedding(dim: int, timesteps: torch.Tensor) -> torch.Tensor:
    """[B] -> [B, dim] (cos half then sin half), computed in float64 like the reference, returned fp32."""
    half = dim // 2
    position = timesteps.to(torch.float64)
    frequencies = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=position.device) / half)
    angles = torch.outer(position, frequencies)
    return torch.cat([angles.cos(), angles.sin()], dim=1).float()


def linear_fp32(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """A Linear evaluated in fp32 whatever the weights' dtype (the reference's autocast-fp32 regions)."""
    bias = None if layer.bias is None else layer.bias.float()
    return F.linear(x.float(), layer.weight.float(), bias)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Normalised in fp32, rounded to x's dtype, then scaled (the reference's order).

    The fp32 statistics come from a norm reduction that upcasts on the fly, and the scaling
    writes x's dtype directly, so no fp32 copy of x is made.
    """
    mean_square = torch.linalg.vector_norm(x, dim=-1, keepdim=True, dtype=torch.float32).square_() / x.shape[-1]
    normed = torch.mul(x, torch.rsqrt(mean_square + eps), out=torch.empty_like(x))
    return normed * weight


def layer_norm(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float) -> torch.Tensor:
    """LayerNorm with fp32 statistics and affine, rounded once to x's dtype.

    For bf16 / fp16 inputs torch's kernel already accumulates and normalises in fp32, so the
    input is not upcast first (the reference's explicit fp32 copy gives the same values).
    """
    if x.dtype in (torch.bfloat16, torch.float16) and x.is_cuda:
        weight = None if weight is None else weight.to(x.dtype)
        bias = None if bias is None else bias.to(x.dtype)
        return F.layer_norm(x, x.shape[-1:], weight, bias, eps)
    weight = None if weight is None else weight.float()
    bias = None if bias is None else bias.float()
    return F.layer_norm(x.float(), x.shape[-1:], weight, bias, eps).to(x.dtype)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in fp32 and returned in the input's dtype."""

    def __init__(self, dim: int, eps: float, affine: bool = False) -> None:
        super().__init__(dim, eps=eps, elementwise_affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return layer_norm(x, self.weight, self.bias, self.eps)


@dataclass
class Rope:
    cos: torch.Tensor
    sin: torch.Tensor


class SelfAttention(nn.Module):
    def __init__(self, config: DiTConfig, attention: Attention) -> None:
        super().__init__()
        dim = config.dim
        self.num_heads = config.num_heads
        self.head_dim = config.head_dim
        self.attention = attention
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.norm_q = RMSNorm(dim, config.eps)
        self.norm_k = RMSNorm(dim, config.eps)

    def forward(self, x: torch.Tensor, rope: Rope, regions: SpeakerRegions | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The attention output and, with speaker regions, the reference attention map [B, L, P+1]."""
        heads = (self.num_heads, self.head_dim)
        q = apply_rope(self.norm_q(self.q(x)).unflatten(-1, heads), rope.cos, rope.sin)
        k = apply_rope(self.norm_k(self.k(x)).unflatten(-1, heads), rope.cos, rope.sin)
        v = self.v(x).unflatten(-1, heads)
        out = self.o(self.attention.self_attention(q, k, v).flatten(2))
        if regions is None:
            return out, None
        return out, self.attention.reference_map(q, k, regions)


class CrossAttention(SelfAttention):
    """Attention to the text tokens and, through separate k_img / v_img, to the CLIP image tokens.

    It has the self-attention's projections and norms (same checkpoint names) plus the image ones.
    """

    def __init__(self, config: DiTConfig, attention: Attention) -> None:
        super().__init__(config, attention)
        dim = config.dim
        self.k_img = nn.Linear(dim, dim)
        self.v_img = nn.Linear(dim, dim)
        self.norm_k_img = RMSNorm(dim, config.eps)

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, image_context: torch.Tensor, text_context: torch.Tensor
    ) -> torch.Tensor:
        heads = (self.num_heads, self.head_dim)
        q = self.norm_q(self.q(x)).unflatten(-1, heads)
        text = self.attention(q, self.norm_k(self.k(text_context)).unflatten(-1, heads),
                              self.v(text_context).unflatten(-1, heads))
        image = self.attention(q, self.norm_k_img(self.k_img(image_context)).unflatten(-1, heads),
                               self.v_img(image_context).unflatten(-1, heads))
        return self.o(text.flatten(2) + image.flatten(2))


@dataclass
class BlockInputs:
    """What every block needs besides the hidden states."""

    modulation: torch.Tensor  # [B, 6, dim] fp32
    rope: Rope
    image_context: torch.Tensor  # [B, 257, dim]
    text_context: torch.Tensor  # [B, text_len, dim]
    audio_tokens: torch.Tensor  # [B, latent_frames, persons * 32, 768]
    persons: int = 1
    # Several persons: where each one is on the reference frame (None with one person).
    speakers: SpeakerRegions | None = None


class DiTBlock(nn.Module):
    def __init__(self, config: DiTConfig, attention: Attention) -> None:
        super().__init__()
        dim, eps = config.dim, config.eps
        self.norm1 = LayerNorm(dim, eps)
        self.self_attn = SelfAttention(config, attention)
        self.norm3 = LayerNorm(dim, eps, affine=True) if config.cross_attn_norm else nn.Identity()
        self.cross_attn = CrossAttention(config, attention)
        self.norm2 = LayerNorm(dim, eps)
        self.ffn = nn.Sequential(nn.Linear(dim, config.ffn_dim), nn.GELU(approximate="tanh"),
                                 nn.Linear(config.ffn_dim, dim))
        self.modulation = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)
        self.audio_cross_attn = AudioCrossAttention(config, attention)
        self.norm_x = LayerNorm(dim, eps, affine=True)

    def forward(self, x: torch.Tensor, inputs: BlockInputs) -> torch.Tensor:
        shift_sa, scale_sa, gate_sa, shift_ffn, scale_ffn, gate_ffn = (
            self.modulation.float() + inputs.modulation).chunk(6, dim=1)
        attended, attention_map = self.self_attn(modulate(self.norm1(x), shift_sa, scale_sa), inputs.rope,
                                                 inputs.speakers)
        x = gated_residual(x, attended, gate_sa)
        x = x + self.cross_attn(self.norm3(x), inputs.image_context, inputs.text_context)
        labels = None if attention_map is None else speaker_labels(attention_map)
        x = x + self.audio_cross_attn(self.norm_x(x), inputs.audio_tokens, labels=labels, persons=inputs.persons)
        return gated_residual(x, self.ffn(modulate(self.norm2(x), shift_ffn, scale_ffn)), gate_ffn)


class Head(nn.Module):
    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        self.norm = LayerNorm(config.dim, config.eps)
        self.head = nn.Linear(config.dim, math.prod(config.patch_size) * config.out_dim)
        self.modulation = nn.Parameter(torch.randn(1, 2, config.dim) / config.dim**0.5)

    def forward(self, x: torch.Tensor, time_embedding: torch.Tensor) -> torch.Tensor:
        shift, scale = (self.modulation.float() + time_embedding.unsqueeze(1)).chunk(2, dim=1)
        return linear_fp32(self.head, self.norm(x).float() * (1 + scale) + shift)


class MLPProj(nn.Module):
    """CLIP image tokens -> model width."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, in_dim), nn.GELU(),
                                  nn.Linear(in_dim, out_dim), nn.LayerNorm(out_dim))

    def forward(self, image_embeds: torch.Tensor) -> torch.Tensor:
        return self.proj(image_embeds)


class ResidualCache:
    """Hook for skipping the blocks (TeaCache): decides from the modulation input whether to compute."""

    residual: torch.Tensor | None = None

    def should_compute(self, modulation_input: torch.Tensor) -> bool:  # pragma: no cover - interface
        return True


BlockRunner = Callable[[Iterable[DiTBlock]], Iterator[DiTBlock]]


class SequenceSharding(Protocol):
    """Hook for sequence parallelism (parallel/sequence.py): the blocks and the head then see only
    this device's run of the video tokens, and the head's output is gathered back whole."""

    def scatter(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, grid: tuple[int, ...]
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...

    def gather(self, x: torch.Tensor) -> torch.Tensor: ...


class InfiniteTalkDiT(nn.Module):
    """Wan2.1 I2V DiT with InfiniteTalk's audio adapter (`adapter`: which one its audio layers hold)."""

    def __init__(self, config: DiTConfig, attention: Attention | None = None, adapter: str = SINGLE) -> None:
        super().__init__()
        if adapter not in ADAPTERS:
            raise ValueError(f"adapter must be one of {ADAPTERS}, got {adapter!r}")
        self.adapter = adapter
        # The other adapter's tensors, placed like the model's own (see `keep_spare_adapter`).
        self.spare_adapters: dict[str, dict[str, torch.Tensor]] = {}
        self.config = config
        self.attention = attention or Attention("auto")
        dim = config.dim
        self.patch_embedding = nn.Conv3d(config.in_dim, dim, kernel_size=config.patch_size, stride=config.patch_size)
        self.text_embedding = nn.Sequential(nn.Linear(config.text_dim, dim), nn.GELU(approximate="tanh"),
                                            nn.Linear(dim, dim))
        self.time_embedding = nn.Sequential(nn.Linear(config.freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        self.blocks = nn.ModuleList([DiTBlock(config, self.attention) for _ in range(config.num_layers)])
        self.head = Head(config)
        self.img_emb = MLPProj(config.clip_dim, dim)
        self.audio_proj = AudioProjModel(config)
        # Replaced by the block-offload streamer; the default runs the resident blocks in order.
        self.block_runner: BlockRunner = iter
        # Set on every process of a sequence-parallel group; None runs the whole sequence here.
        self.sequence_sharding: SequenceSharding | None = None

    def embed_time(self, timesteps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B] -> time embedding [B, dim] and the 6 modulation vectors [B, 6, dim], both fp32."""
        hidden = sinusoidal_embedding(self.config.freq_dim, timesteps)
        embedding = linear_fp32(self.time_embedding[2], F.silu(linear_fp32(self.time_embedding[0], hidden)))
        modulation = linear_fp32(self.time_projection[1], F.silu(embedding))
        return embedding, modulation.unflatten(1, (6, self.config.dim))

    def forward(
        self,
        latents: torch.Tensor,
        timesteps: torch.Tensor,
        text: torch.Tensor,
        clip_features: torch.Tensor,
        condition: torch.Tensor,
        audio: torch.Tensor,
        cache: ResidualCache | None = None,
        person_masks: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict the flow velocity's negative (the reference's "noise_pred").

        latents [B, 16, T, H, W]; timesteps [B] on the 0..1000 scale; text [B, text_len, text_dim]
        (zero-padded umT5 states); clip_features [B, 257, 1280]; condition [B, 20, T, H, W]
        (4 mask channels then the conditioning latent); audio [B, 1 + 4(T-1), 5, 12, 768] for one
        person, or [B, persons, 1 + 4(T-1), 5, 12, 768].
        person_masks [persons + 1, H, W] (each person's region of the frame, then the background,
        on the latent grid) marks a multi-person chunk: the multi-person adapter is used for every
        forward of it, also those whose audio is one person's silence (as the reference's
        no-audio branches). None: a one-person chunk, the single-person adapter.
        Returns [B, 16, T, H, W] in fp32.
        """
        self.use_adapter(SINGLE if person_masks is None else MULTI)
        dtype = self.patch_embedding.weight.dtype
        x = self.patch_embedding(torch.cat([latents, condition], dim=1).to(dtype))
        grid = tuple(x.shape[2:])
        x = x.flatten(2).transpose(1, 2)

        time_embedding, modulation = self.embed_time(timesteps)
        text_context = self.text_embedding(text.to(dtype))
        image_context = self.img_emb(clip_features.to(dtype))
        persons = audio.shape[1] if audio.dim() == 6 else 1
        audio_tokens = self.embed_audio(audio.to(dtype).reshape(-1, *audio.shape[-4:]), persons).to(dtype)
        if audio_tokens.shape[1] != grid[0]:
            raise ValueError(f"audio covers {audio_tokens.shape[1]} latent frames, the latents have {grid[0]}")
        speakers = None
        if persons > 1:
            check_persons(persons, person_masks)
            assert person_masks is not None
            speakers = region_weights(person_masks.to(x.device), grid[1:], dtype)

        cos, sin = rope_cos_sin(grid, self.config.head_dim, self.config.rope_theta, x.device)
        if self.sequence_sharding is not None:
            x, cos, sin = self.sequence_sharding.scatter(x, cos, sin, grid)
        inputs = BlockInputs(modulation, Rope(cos, sin), image_context, text_context, audio_tokens, persons, speakers)

        if cache is not None and not cache.should_compute(modulation):
            x = x + cache.residual
        else:
            before = x
            for block in self.block_runner(self.blocks):
                x = block(x, inputs)
            if cache is not None:
                cache.residual = x - before

        out = self.head(x, time_embedding)
        if self.sequence_sharding is not None:
            out = self.sequence_sharding.gather(out)
        return self.unpatchify(out, grid)

    def embed_audio(self, audio: torch.Tensor, persons: int) -> torch.Tensor:
        """Windows [B * persons, frames, W, L, C] -> tokens [B, T, persons * tokens, dim_audio]:
        each person's tokens of a latent frame, person 1's first."""
        first_frame_audio, later_frames_audio = gather_latent_audio_windows(audio, self.config.vae_scale)
        tokens = self.audio_proj(first_frame_audio, later_frames_audio)  # [B * persons, T, N, C]
        if persons == 1:
            return tokens
        tokens = tokens.unflatten(0, (-1, persons)).transpose(1, 2)  # [B, T, persons, N, C]
        return tokens.flatten(2, 3)

    def use_adapter(self, kind: str) -> None:
        """Make the audio layers hold adapter `kind`: a swap of tensor references with the spare
        one (no copy), so a generator loaded with both switches between chunks for free."""
        if kind == self.adapter:
            return
        spare = self.spare_adapters.pop(kind, None)
        if spare is None:
            raise ValueError(f"this model holds only the {self.adapter}-person adapter, not the {kind}-person one")
        tensors = self.state_dict(keep_vars=True)
        current = {}
        for name, tensor in spare.items():
            current[name] = tensors[name].data
            tensors[name].data = tensor
        self.spare_adapters[self.adapter] = current
        self.adapter = kind

    def keep_spare_adapter(self, kind: str, state: dict[str, torch.Tensor]) -> None:
        """Keep adapter `kind`'s tensors (names as `adapter_keys`) next to the active one, each
        placed like the model's own tensor (device, dtype, pinned host memory under block offload)."""
        if kind not in ADAPTERS or kind == self.adapter:
            raise ValueError(f"the spare adapter must be another of {ADAPTERS} than the active {self.adapter!r}")
        tensors = self.state_dict(keep_vars=True)
        names = set(self.adapter_keys())
        if set(state) != names:
            missing, unexpected = sorted(names - set(state)), sorted(set(state) - names)
            raise ValueError(f"the {kind}-person adapter does not match the model: missing {missing[:8]}, "
                             f"unexpected {unexpected[:8]}")
        placed = {}
        for name, tensor in state.items():
            like = tensors[name].data
            if tensor.shape != like.shape:
                raise ValueError(f"{kind}-person adapter tensor {name} has shape {tuple(tensor.shape)}, "
                                 f"the model's is {tuple(like.shape)}")
            if like.device.type == "cpu" and like.is_pinned():
                target = torch.empty(like.shape, dtype=like.dtype, pin_memory=True)
                placed[name] = target.copy_(tensor)
            else:
                placed[name] = tensor.to(like.device, like.dtype)
        self.spare_adapters[kind] = placed

    @property
    def adapters(self) -> tuple[str, ...]:
        """The adapters this model can run, in ADAPTERS order."""
        return tuple(kind for kind in ADAPTERS if kind == self.adapter or kind in self.spare_adapters)

    def unpatchify(self, x: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor:
        """[B, f*h*w, p_t*p_h*p_w*out] -> [B, out, f*p_t, h*p_h, w*p_w]."""
        p_t, p_h, p_w = self.config.patch_size
        frames, rows, cols = grid
        x = x.view(x.shape[0], frames, rows, cols, p_t, p_h, p_w, self.config.out_dim)
        x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)
        return x.reshape(x.shape[0], self.config.out_dim, frames * p_t, rows * p_h, cols * p_w)

    def adapter_keys(self) -> list[str]:
        """State-dict names that come from InfiniteTalk's adapter file rather than the Wan shards."""
        return [name for name in self.state_dict()
                if name.startswith("audio_proj.") or ".audio_cross_attn." in name or ".norm_x." in name]


def load_strict(model: InfiniteTalkDiT, state_dict: dict[str, torch.Tensor], assign: bool = False) -> None:
    """Load a merged state dict, failing with the exact missing / unexpected / mis-shaped names.

    `assign=True` takes the tensors as they are (for a model built on the meta device).
    """
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong_shape = sorted(f"{name}: checkpoint {tuple(state_dict[name].shape)}, model {tuple(tensor.shape)}"
                         for name, tensor in expected.items()
                         if name in state_dict and state_dict[name].shape != tensor.shape)
    if missing or unexpected or wrong_shape:
        problems = []
        for title, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
            if names:
                shown = ", ".join(names[:20]) + (f" ... ({len(names)} in all)" if len(names) > 20 else "")
                problems.append(f"{title}: {shown}")
        raise ValueError("DiT weights do not match the model: " + "; ".join(problems))
    model.load_state_dict(state_dict, strict=True, assign=assign)


# The linear layers that run in FP8 with DTYPE=fp8: every projection of the self- and cross-
# attention, both FFN layers, and the audio cross-attention's query and output projections of
# each block (all GEMMs over the 32,760 video tokens). The audio tokens' own small projections
# (kv_linear, audio_proj), the embeddings, the modulation and the head stay in 16/32 bits.
FP8_BLOCK_LAYERS = ("self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o",
                    "cross_attn.q", "cross_attn.k", "cross_attn.v", "cross_attn.o", "cross_attn.k_img",
                    "cross_attn.v_img", "ffn.0", "ffn.2", "audio_cross_attn.q_linear", "audio_cross_attn.proj")


def fp8_layer_names(config: DiTConfig) -> list[str]:
    return [f"blocks.{index}.{layer}" for index in range(config.num_layers) for layer in FP8_BLOCK_LAYERS]


def use_fp8_linears(model: InfiniteTalkDiT, activation_scaling: str = "token") -> None:
    """Swap the FP8_BLOCK_LAYERS for FP8Linear (on a meta-device model: empty, to load into)."""
    from .fp8 import swap_in_fp8_linears

    swap_in_fp8_linears(model, fp8_layer_names(model.config), activation_scaling)


def compile_elementwise() -> None:
    """Swap the elementwise helpers (norms, modulation, gated residuals, RoPE) for torch.compile'd
    versions of the same formulas, each fused into one kernel. Applies to every model in the process.
    """
    global modulate, gated_residual, rms_norm, layer_norm, apply_rope
    modulate = torch.compile(_plain_modulate, dynamic=False)
    gated_residual = torch.compile(_plain_gated_residual, dynamic=False)
    rms_norm = torch.compile(_plain_rms_norm, dynamic=False)
    layer_norm = torch.compile(_plain_layer_norm, dynamic=False)
    apply_rope = torch.compile(_plain_apply_rope, dynamic=False)
    from .fp8 import compile_quantizers

    compile_quantizers()


def compile_blocks(model: InfiniteTalkDiT) -> None:
    """torch.compile every block's whole forward (the blocks share one compiled graph), so all
    elementwise work around the GEMM and attention kernels is fused. Uses the plain formulas."""
    global modulate, gated_residual, rms_norm, layer_norm, apply_rope
    modulate, gated_residual, rms_norm = _plain_modulate, _plain_gated_residual, _plain_rms_norm
    layer_norm, apply_rope = _plain_layer_norm, _plain_apply_rope
    for block in model.blocks:
        block.compile(dynamic=False)


# The same formulas written plainly, for the compiler to fuse.
def _plain_modulate(normed: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return (normed.float() * (1 + scale) + shift).to(normed.dtype)


def _plain_gated_residual(x: torch.Tensor, update: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    return (x.float() + update.float() * gate).to(x.dtype)


def _plain_rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    x32 = x.float()
    return (x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + eps)).to(x.dtype) * weight


def _plain_layer_norm(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
                      eps: float) -> torch.Tensor:
    weight = None if weight is None else weight.float()
    bias = None if bias is None else bias.float()
    return F.layer_norm(x.float(), x.shape[-1:], weight, bias, eps).to(x.dtype)


def _plain_apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    pairs = x.float().unflatten(-1, (-1, 2))
    even, odd = pairs[..., 0], pairs[..., 1]
    cos, sin = cos[None, :, None, :], sin[None, :, None, :]
    return torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1).flatten(-2).to(x.dtype)
