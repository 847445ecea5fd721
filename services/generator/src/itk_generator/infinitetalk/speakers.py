"""Binding each voice to its face: InfiniteTalk's multi-person audio cross-attention inputs.

With two people the audio tokens of a latent frame are person 1's 32 tokens followed by person
2's, and every video token must listen to the right half. The reference does it with a label
rotary embedding (L-RoPE) over one "speaker label" axis:

- Per block, the self-attention's queries (after RoPE) attend to the keys of the first latent
  frame, the reference image. Averaged over heads, the attention each token pays to each
  person's region of that frame (and to the background), normalised by the region's size, is
  the token's "reference attention map" [tokens, persons + 1].
- Person 1's map is scaled from its own [min, max] over the tokens to labels [0, 4], person 2's
  to [20, 24] (`class_range` 24, `class_interval` 4); a token takes the label of the class it
  attends to most, 12 (the middle) for the background.
- In the audio cross-attention the queries are rotated by their token's label and the keys by
  their person's centre label (2 and 22), so the attention logits favour the tokens' own person.

One person needs none of this: the audio cross-attention then runs without labels and the map
is never computed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from .attention import Attention

CLASS_RANGE = 24
CLASS_INTERVAL = 4
LABEL_THETA = 10000.0
# Persons the label layout has ranges for (the published multi-person weights are trained on two).
LABELLED_PERSONS = 2


def person_label_ranges(class_range: int = CLASS_RANGE, class_interval: int = CLASS_INTERVAL
                        ) -> tuple[tuple[float, float], tuple[float, float], float]:
    """(person 1's label range, person 2's, the background's label)."""
    return (0.0, float(class_interval)), (float(class_range - class_interval), float(class_range)), \
        float(class_range // 2)


def person_key_labels(persons: int, tokens_per_person: int, device: torch.device | str = "cpu",
                      class_range: int = CLASS_RANGE, class_interval: int = CLASS_INTERVAL) -> torch.Tensor:
    """Labels [persons * tokens_per_person] of one latent frame's audio tokens: each person's range centre."""
    if persons != LABELLED_PERSONS:
        raise ValueError(f"the speaker labels cover {LABELLED_PERSONS} persons, got {persons}")
    first, second, _background = person_label_ranges(class_range, class_interval)
    centres = torch.tensor([sum(first) / 2, sum(second) / 2], dtype=torch.float32, device=device)
    return centres.repeat_interleave(tokens_per_person)


def speaker_labels(attention_map: torch.Tensor, class_range: int = CLASS_RANGE,
                   class_interval: int = CLASS_INTERVAL) -> torch.Tensor:
    """Reference attention map [B, L, persons + 1] (background last) -> each token's label [B, L].

    Each person's column is scaled from its [min, max] over the tokens into its label range; a
    token takes the scaled value of the column it attends to most, the background's label when
    that is the background.
    """
    if attention_map.shape[-1] != LABELLED_PERSONS + 1:
        raise ValueError(f"the speaker labels cover {LABELLED_PERSONS} persons, the map has "
                         f"{attention_map.shape[-1] - 1}")
    first, second, background = person_label_ranges(class_range, class_interval)
    columns = []
    for person, (low, high) in enumerate((first, second)):
        column = attention_map[..., person]
        smallest = column.amin(dim=-1, keepdim=True)
        largest = column.amax(dim=-1, keepdim=True)
        columns.append((column - smallest) / (largest - smallest + 1e-8) * (high - low) + low)
    columns.append(torch.full_like(columns[0], background))
    scaled = torch.stack(columns, dim=-1)
    return scaled.gather(-1, attention_map.argmax(dim=-1, keepdim=True)).squeeze(-1)


def label_rope_cos_sin(labels: torch.Tensor, head_dim: int, theta: float = LABEL_THETA
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """1-D rotary tables for labels [..., L]: cos and sin [..., L, head_dim/2] in fp32 over the
    whole head (frequencies theta^(-2i/head_dim)), channel pairs (2i, 2i+1)."""
    exponents = torch.arange(0, head_dim, 2, device=labels.device)[: head_dim // 2].float() / head_dim
    inverse_frequencies = 1.0 / (theta**exponents)
    angles = labels.float()[..., None] * inverse_frequencies
    return angles.cos(), angles.sin()


def apply_label_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [B, L, heads, D] by per-token tables [B or 1, L, D/2] (or [L, D/2]), in fp32;
    the result in x's dtype."""
    if cos.dim() == 2:
        cos, sin = cos[None], sin[None]
    pairs = x.float().unflatten(-1, (-1, 2))
    even, odd = pairs[..., 0], pairs[..., 1]
    cos, sin = cos[:, :, None, :], sin[:, :, None, :]
    return torch.stack((even * cos - odd * sin, odd * cos + even * sin), dim=-1).flatten(-2).to(x.dtype)


@dataclass
class SpeakerRegions:
    """Where each person is on the reference frame, in token space, for the blocks of one forward.

    `weights` [persons + 1, tokens_per_frame]: each region's mask (background last) divided by its
    token count, so that attention @ weights is the region's mean attention.
    """

    weights: torch.Tensor
    tokens_per_frame: int

    @property
    def persons(self) -> int:
        return self.weights.shape[0] - 1


def region_weights(masks: torch.Tensor, token_grid: tuple[int, int], dtype: torch.dtype) -> SpeakerRegions:
    """Masks [persons + 1, h, w] on the latent grid -> region weights on the token grid.

    As the reference: nearest-neighbour resize to the token grid, then > 0. A person whose region
    covers no token cannot be listened to (the reference divides by zero); an empty background
    (boxes covering the whole frame) gets zero weight.
    """
    resized = F.interpolate(masks[None].float(), size=token_grid, mode="nearest")[0] > 0
    flat = resized.flatten(1).float()
    counts = flat.sum(dim=1, keepdim=True)
    empty = [index + 1 for index in range(flat.shape[0] - 1) if counts[index] == 0]
    if empty:
        raise ValueError(f"the region of person {', '.join(map(str, empty))} covers none of the "
                         f"{token_grid[0]}x{token_grid[1]} token cells of the frame; give a larger box")
    return SpeakerRegions((flat / counts.clamp(min=1)).to(dtype), token_grid[0] * token_grid[1])


def reference_attention_sum(attention: Attention, q: torch.Tensor, k: torch.Tensor,
                            regions: SpeakerRegions) -> torch.Tensor:
    """[B, L, persons + 1] fp32: the attention of every query token to each region of the first
    latent frame, summed over the given heads (q, k: [B, L, heads, D], every token).

    softmax(q k_ref^T / sqrt(d)) @ weights is one attention with the region weights as values,
    so it runs on the attention kernel; the values are padded to the head width the kernels need.
    """
    batch, _tokens, heads, head_dim = q.shape
    reference_keys = k[:, : regions.tokens_per_frame]
    classes = regions.weights.shape[0]
    values = q.new_zeros(batch, regions.tokens_per_frame, heads, head_dim)
    values[..., :classes] = regions.weights.T.to(q.dtype)[None, :, None, :]
    out = attention(q, reference_keys, values)
    return out[..., :classes].float().sum(dim=2)


def reference_attention_map(attention: Attention, q: torch.Tensor, k: torch.Tensor,
                            regions: SpeakerRegions) -> torch.Tensor:
    """The reference's `get_attn_map_with_target`: `reference_attention_sum` averaged over all heads."""
    return reference_attention_sum(attention, q, k, regions) / q.shape[2]


def check_persons(persons: int, masks: Sequence[object] | torch.Tensor | None) -> None:
    """A multi-person forward needs a mask per person plus the background, for the labelled count."""
    if persons != LABELLED_PERSONS:
        raise ValueError(f"the multi-person model renders {LABELLED_PERSONS} persons, got {persons}")
    if masks is None:
        raise ValueError(f"{persons} persons' audio needs person masks")
    if len(masks) != persons + 1:
        raise ValueError(f"{persons} persons need {persons + 1} masks (each person, then the background), "
                         f"got {len(masks)}")
