"""Ulysses sequence parallelism for the DiT, with plain torch.distributed collectives.

Each of the S devices of a group holds a contiguous run of the video tokens through the whole
network: projections, norms, FFN, the text / image cross-attention (its keys are the shared
prompt and image tokens) and the audio cross-attention (each token attends to its own latent
frame's audio tokens) are all per token. Only self-attention needs every token: around it, one
all-to-all turns [tokens of this device, all heads] into [all tokens, heads of this device], the
attention kernel runs on whole sequences for its heads, and a second all-to-all turns the result
back. The head's output is gathered whole at the end, so every device returns the full prediction.

Token runs and head sets need not divide evenly (the all-to-alls carry per-device sizes), so any
S up to the number of heads works: 32,760 tokens and 40 heads on 3 devices are runs of 10,920
tokens and 14 / 13 / 13 heads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..attention import Attention
from ..dit import InfiniteTalkDiT
from ..speakers import SpeakerRegions, reference_attention_sum
from .groups import RankGroup


def even_split(total: int, parts: int) -> list[int]:
    """`total` items over `parts` devices, the first ones taking one more when it does not divide."""
    base, extra = divmod(total, parts)
    return [base + (1 if index < extra else 0) for index in range(parts)]


def offsets(sizes: list[int]) -> list[int]:
    starts = [0]
    for size in sizes[:-1]:
        starts.append(starts[-1] + size)
    return starts


@dataclass
class SequenceShard:
    """This device's place in its sequence-parallel group, and the current forward's token runs.

    `group.size == 1` turns every hook into a no-op, so one model serves every layout.
    """

    group: RankGroup = field(default_factory=lambda: RankGroup(None, (0,)))
    index: int = 0
    num_heads: int = 1
    token_counts: list[int] = field(default_factory=list)
    tokens_per_frame: int = 0

    @property
    def degree(self) -> int:
        return self.group.size

    @property
    def head_counts(self) -> list[int]:
        return even_split(self.num_heads, self.degree)

    @property
    def first_token(self) -> int:
        return offsets(self.token_counts)[self.index]

    def use(self, group: RankGroup, rank: int) -> None:
        self.group = group
        self.index = group.ranks.index(rank)
        self.token_counts = []

    # -- the DiT's SequenceSharding hook ----------------------------------------------------

    def scatter(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, grid: tuple[int, ...]
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.degree == 1:
            return x, cos, sin
        tokens = x.shape[1]
        if tokens < self.degree:
            raise ValueError(f"{tokens} tokens cannot be split over {self.degree} devices")
        self.token_counts = even_split(tokens, self.degree)
        self.tokens_per_frame = grid[1] * grid[2]
        start, end = self.first_token, self.first_token + self.token_counts[self.index]
        return x[:, start:end].contiguous(), cos[start:end], sin[start:end]

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """[B, own tokens, C] -> [B, all tokens, C] on every device of the group."""
        if self.degree == 1:
            return x
        longest = max(self.token_counts)
        padded = torch.nn.functional.pad(x, (0, 0, 0, longest - x.shape[1])).contiguous()
        pieces = [torch.empty_like(padded) for _ in range(self.degree)]
        dist.all_gather(pieces, padded, group=self.group.group)
        return torch.cat([piece[:, :count] for piece, count in zip(pieces, self.token_counts, strict=True)], dim=1)

    def all_reduce_max(self, x: torch.Tensor) -> torch.Tensor:
        """The elementwise maximum of x over the group, in place: with the heads split, FP8
        self-attention's amaxes of q, k and v become the whole tensors' (the scales of one device)."""
        dist.all_reduce(x, op=dist.ReduceOp.MAX, group=self.group.group)
        return x

    # -- the all-to-alls ----------------------------------------------------------------------

    def tokens_to_heads(self, stacked: torch.Tensor) -> torch.Tensor:
        """[P, B, own tokens, H, D] -> [P, B, all tokens, own heads, D] (P: q, k and v at once)."""
        parts, batch, own_tokens, _heads, head_dim = stacked.shape
        heads, counts = self.head_counts, self.token_counts
        own_heads = heads[self.index]
        # Head-major, so what goes to each device (its heads) is one contiguous slice.
        send = stacked.permute(3, 2, 0, 1, 4).contiguous()  # [H, own tokens, P, B, D]
        per_item = parts * batch * head_dim
        send_sizes = [h * own_tokens * per_item for h in heads]
        receive_sizes = [own_heads * count * per_item for count in counts]
        received = send.new_empty(sum(receive_sizes))
        dist.all_to_all_single(received, send.view(-1), receive_sizes, send_sizes, group=self.group.group)
        pieces = [piece.view(own_heads, count, parts, batch, head_dim)
                  for piece, count in zip(received.split(receive_sizes), counts, strict=True)]
        return torch.cat(pieces, dim=1).permute(2, 3, 1, 0, 4)

    def heads_to_tokens(self, out: torch.Tensor) -> torch.Tensor:
        """[B, all tokens, own heads, D] -> [B, own tokens, H, D]."""
        batch, _tokens, own_heads, head_dim = out.shape
        heads, counts = self.head_counts, self.token_counts
        own_tokens = counts[self.index]
        # Token-major, so what goes to each device (its tokens) is one contiguous slice.
        send = out.permute(1, 2, 0, 3).contiguous()  # [all tokens, own heads, B, D]
        per_item = batch * head_dim
        send_sizes = [count * own_heads * per_item for count in counts]
        receive_sizes = [own_tokens * h * per_item for h in heads]
        received = send.new_empty(sum(receive_sizes))
        dist.all_to_all_single(received, send.view(-1), receive_sizes, send_sizes, group=self.group.group)
        pieces = [piece.view(own_tokens, h, batch, head_dim)
                  for piece, h in zip(received.split(receive_sizes), heads, strict=True)]
        return torch.cat(pieces, dim=1).permute(2, 0, 1, 3)


class UlyssesAttention:
    """Stands in for a self-attention layer's kernel: all-to-all, the kernel (bf16 or FP8) on whole
    sequences for this device's heads, all-to-all back. FP8 shares its per-tensor scales over the
    group (one all-reduce of three numbers), so they are the scales of one device."""

    def __init__(self, kernel: Attention, shard: SequenceShard) -> None:
        self.kernel = kernel
        self.shard = shard

    def self_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.shard.degree == 1:
            return self.kernel.self_attention(q, k, v)
        # Contiguous [B, tokens, heads, D], the layout every kernel (SDPA, flash-attn, cuDNN FP8) takes.
        q_all, k_all, v_all = (t.contiguous() for t in self.shard.tokens_to_heads(torch.stack((q, k, v))))
        out = self.kernel.self_attention(q_all, k_all, v_all, reduce_amax=self.shard.all_reduce_max)
        return self.shard.heads_to_tokens(out)

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return self.kernel(q, k, v)

    def reference_map(self, q: torch.Tensor, k: torch.Tensor, regions: SpeakerRegions) -> torch.Tensor:
        """The reference attention map of every token (not only this device's run): its heads'
        share from whole sequences, summed over the group. Every device then has the whole map,
        whose per-person minimum and maximum the speaker labels need."""
        if self.shard.degree == 1:
            return self.kernel.reference_map(q, k, regions)
        q_all, k_all = (t.contiguous() for t in self.shard.tokens_to_heads(torch.stack((q, k))))
        total = reference_attention_sum(self.kernel, q_all, k_all, regions)
        dist.all_reduce(total, group=self.shard.group.group)
        return total / self.shard.num_heads


def enable_sequence_parallel(model: InfiniteTalkDiT, shard: SequenceShard) -> None:
    """Install the hooks: token runs in and out of the model, Ulysses around every self-attention,
    and the run's position for every audio cross-attention."""
    shard.num_heads = model.config.num_heads
    model.sequence_sharding = shard

    def audio_position(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
                       ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if shard.degree > 1:
            kwargs = {**kwargs, "first_token": shard.first_token, "tokens_per_frame": shard.tokens_per_frame}
        return args, kwargs

    # With block offload the blocks that compute are the streamer's device copies.
    for block in [*model.blocks, *getattr(model.block_runner, "slots", [])]:
        block.self_attn.attention = UlyssesAttention(model.attention, shard)
        block.audio_cross_attn.register_forward_pre_hook(audio_position, with_kwargs=True)
