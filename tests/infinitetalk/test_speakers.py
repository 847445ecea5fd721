"""The two-person pieces on their own: person regions, the reference attention map, speaker labels
and the label rotary embedding (the whole path against the reference: test_loop_parity.py)."""

from __future__ import annotations

import pytest
import torch

from itk_generator.infinitetalk.attention import Attention
from itk_generator.infinitetalk.person_regions import RegionError, fit_masks, person_masks
from itk_generator.infinitetalk.speakers import (
    apply_label_rope,
    label_rope_cos_sin,
    person_key_labels,
    reference_attention_map,
    region_weights,
    speaker_labels,
)


def test_default_split_is_two_shrunk_halves_and_boxes_are_fractions() -> None:
    masks = person_masks([None, None], 100, 200)
    rows, left, right = masks[0].nonzero(), masks[0].any(dim=0).nonzero(), masks[1].any(dim=0).nonzero()
    assert (rows[:, 0].min().item(), rows[:, 0].max().item()) == (5, 94)  # 0.05 .. 0.95 of the height
    assert (left.min().item(), left.max().item()) == (5, 94)  # 0.05 .. 0.95 of the left half
    assert (right.min().item(), right.max().item()) == (105, 194)
    assert torch.equal(masks[2], 1 - masks[0] - masks[1])  # the background: outside both
    boxed = person_masks([(0.1, 0.2, 0.3, 0.6), (0.5, 0.0, 1.0, 1.0)], 100, 200)
    assert boxed[0].nonzero()[:, 0].unique().tolist() == list(range(20, 60))  # y: rows
    assert boxed[0].nonzero()[:, 1].unique().tolist() == list(range(20, 60))  # x: columns
    with pytest.raises(RegionError, match="person 2"):
        person_masks([(0.1, 0.2, 0.3, 0.6), None], 100, 200)
    with pytest.raises(RegionError, match="fractions"):
        person_masks([(0.1, 0.2, 0.3, 0.6), (0.5, 0.0, 1.2, 1.0)], 100, 200)


def test_masks_are_fitted_like_the_image() -> None:
    masks = torch.zeros(1, 60, 64)
    masks[0, 10:20] = 1
    fitted = fit_masks(masks, 48, 64)  # 6 rows cropped off the top
    assert fitted.shape == (1, 48, 64) and fitted[0, :, 0].nonzero()[:, 0].tolist() == list(range(4, 14))


def test_reference_map_is_the_mean_attention_to_each_region() -> None:
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 24, 4, 8, generator=g), torch.randn(2, 24, 4, 8, generator=g)
    masks = torch.zeros(3, 2, 4)
    masks[0, :, :2], masks[1, :, 2:] = 1, 1
    masks[1, 0, 3] = 0
    masks[2] = 1 - masks[0] - masks[1]
    regions = region_weights(masks, (2, 4), torch.float32)
    got = reference_attention_map(Attention("sdpa"), q, k, regions)
    weights = (q.transpose(1, 2) @ k[:, :8].transpose(1, 2).transpose(-1, -2) / 8**0.5).softmax(-1)  # [B, H, L, 8]
    flat = masks.flatten(1)
    expected = torch.stack([(weights * m).sum(-1) / m.sum() for m in flat], dim=-1).mean(dim=1)
    torch.testing.assert_close(got, expected)


def test_speaker_labels_follow_the_strongest_region() -> None:
    attention_map = torch.tensor([[[0.9, 0.1, 0.0], [0.5, 0.2, 0.3], [0.1, 0.8, 0.1], [0.0, 0.0, 0.9]]])
    labels = speaker_labels(attention_map)[0]
    # person 1 scaled into [0, 4] over its column's [0.0, 0.9], person 2 into [20, 24], background 12
    torch.testing.assert_close(labels, torch.tensor([4.0, 0.5 / 0.9 * 4, 24.0, 12.0]), rtol=1e-6, atol=1e-6)
    assert person_key_labels(2, 3).tolist() == [2.0, 2.0, 2.0, 22.0, 22.0, 22.0]


def test_label_rope_rotates_pairs_and_keeps_relative_labels() -> None:
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(1, 1, 2, 16, generator=g), torch.randn(1, 1, 2, 16, generator=g)

    def score(q_label: float, k_label: float) -> torch.Tensor:
        rq = apply_label_rope(q, *label_rope_cos_sin(torch.tensor([[q_label]]), 16))
        rk = apply_label_rope(k, *label_rope_cos_sin(torch.tensor([[k_label]]), 16))
        return (rq * rk).sum(-1)

    torch.testing.assert_close(score(3.0, 2.0), score(23.0, 22.0))  # only the label difference counts
    assert not torch.allclose(score(2.0, 2.0), score(2.0, 22.0))
    torch.testing.assert_close(apply_label_rope(q, *label_rope_cos_sin(torch.zeros(1, 1), 16)), q)
