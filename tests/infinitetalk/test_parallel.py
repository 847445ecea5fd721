"""One clip on several processes (gloo on the CPU): guidance-parallel, Ulysses sequence-parallel and
both at once give the single-process latent, for 2, 4 and 8 processes."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
import torch

from itk_generator.infinitetalk.denoiser import LocalDenoiser
from itk_generator.infinitetalk.parallel import LayoutError, ParallelGroup, WorkerLostError, choose_layout
from itk_generator.infinitetalk.parallel.sequence import even_split
from itk_generator.infinitetalk.sampling import SamplingPlan
from tests.infinitetalk.parallel_models import (
    EIGHT_HEADS,
    build_eight_head_dit,
    build_eight_head_dit_fp8_attention,
    build_eight_head_dit_offloaded,
    build_eight_head_multi_person_dit,
    clip_denoising,
    dit_that_fails_to_load,
)

FAST = SamplingPlan(steps=3, shift=2.0, text_guidance=1.0, audio_guidance=2.0)  # 2 forwards a step
QUALITY = SamplingPlan(steps=3, shift=7.0, text_guidance=5.0, audio_guidance=4.0)  # 3 forwards a step
QUALITY_TEACACHE = SamplingPlan(steps=8, shift=7.0, text_guidance=5.0, audio_guidance=4.0, teacache=True,
                                teacache_threshold=0.05)
TURBO = SamplingPlan(steps=2, shift=5.0, text_guidance=1.0, audio_guidance=1.0, linear_to_zero=True)  # 1 forward


@pytest.mark.parametrize(("world", "branches", "mode", "expected"), [
    (1, 2, "auto", (1, 1)),
    (2, 2, "auto", (2, 1)),  # one forward each, no token exchange
    (2, 3, "auto", (1, 2)),  # 1.5 forwards' worth each beats 2 + 1
    (2, 3, "guidance", (2, 1)),
    (2, 2, "sequence", (1, 2)),
    (3, 3, "auto", (3, 1)),
    (4, 2, "auto", (2, 2)),
    (4, 3, "auto", (1, 4)),
    (6, 3, "auto", (3, 2)),
    (8, 2, "auto", (2, 4)),
    (8, 3, "auto", (1, 8)),
    (8, 3, "guidance", (2, 4)),
])
def test_layout_choice(world: int, branches: int, mode: str, expected: tuple[int, int]) -> None:
    layout = choose_layout(world, branches, num_heads=40, mode=mode)
    assert (layout.guidance_groups, layout.sequence_degree) == expected


def test_layout_needs_a_head_per_device_and_branches_cover_every_forward() -> None:
    with pytest.raises(LayoutError, match="attention heads"):
        choose_layout(4, 3, num_heads=2, mode="sequence")
    with pytest.raises(LayoutError, match="mode"):
        choose_layout(2, 2, num_heads=40, mode="fastest")
    layout = choose_layout(8, 3, num_heads=40, mode="guidance")
    assert [layout.branch_indices(g) for g in range(2)] == [[0, 2], [1]]
    assert even_split(40, 3) == [14, 13, 13] and even_split(36, 8) == [5, 5, 5, 5, 4, 4, 4, 4]


# name, plan, seed, a step's forwards batched into one (GUIDANCE_BATCH)
Case = tuple[str, SamplingPlan, int, bool]
CASES: list[Case] = [
    ("fast", FAST, 1, False), ("quality", QUALITY, 2, False), ("quality+teacache", QUALITY_TEACACHE, 3, False),
    ("turbo", TURBO, 4, False), ("quality batched", QUALITY, 5, True)]


def single_process_latents(build=build_eight_head_dit, cases: list[Case] = CASES) -> dict[str, torch.Tensor]:
    dit = build(torch.device("cpu"))
    with torch.no_grad():
        return {name: LocalDenoiser(dit)(clip_denoising(plan, seed, batched), lambda _step: None)
                for name, plan, seed, batched in cases}


class RankLost(Exception):  # noqa: N818
    pass


def run_parallel(world: int, modes: list[str], build=build_eight_head_dit, cases: list[Case] = CASES
                 ) -> dict[tuple[str, str], tuple[torch.Tensor, str]]:
    """Every case in every mode on `world` processes (this one is rank 0); the latents and layouts."""
    lost: list[BaseException] = []
    group = ParallelGroup(world, "cpu", modes[0], build, on_lost=lost.append)
    results = {}
    try:
        dit = build(torch.device("cpu"))
        holder = SimpleNamespace(dit=dit, denoiser=None)
        group.attach(holder)
        group.wait_ready()
        for mode in modes:
            group.runtime.mode = mode
            for name, plan, seed, batched in cases:
                with torch.no_grad():
                    latent = holder.denoiser(clip_denoising(plan, seed, batched), lambda _step: None)
                results[(mode, name)] = (latent, group.runtime.layout.describe())
    finally:
        group.shutdown()
    assert not lost
    return results


def assert_same_as_single_process(results: dict, expected: dict[str, torch.Tensor]) -> None:
    for (mode, name), (latent, layout) in results.items():
        # fp32: only the order of summation differs (smaller matrix products per device)
        torch.testing.assert_close(latent, expected[name], rtol=1e-4, atol=1e-5,
                                   msg=lambda m, mode=mode, name=name, layout=layout: f"{mode} {name} ({layout}): {m}")


@pytest.mark.slow
def test_two_processes_guidance_and_sequence_parallel_match_one() -> None:
    expected = single_process_latents()
    results = run_parallel(2, ["auto", "sequence", "guidance"])
    layouts = {key: layout for key, (_latent, layout) in results.items()}
    assert layouts[("auto", "fast")].endswith("guidance-parallel x2")
    assert layouts[("auto", "quality")].endswith("sequence-parallel x2")
    assert layouts[("guidance", "quality")].endswith("guidance-parallel x2")  # 2 forwards on one rank, 1 on the other
    assert layouts[("auto", "turbo")].endswith("sequence-parallel x2")  # one forward: only its tokens can split
    assert_same_as_single_process(results, expected)


@pytest.mark.slow
def test_sequence_parallel_with_block_offload_matches_one() -> None:
    """BLOCK_OFFLOAD streams the blocks through device copies: those copies split the tokens too."""
    expected = single_process_latents()
    results = run_parallel(2, ["sequence"], build_eight_head_dit_offloaded)
    assert all(layout.endswith("sequence-parallel x2") for _latent, layout in results.values())
    assert_same_as_single_process(results, expected)


@pytest.mark.slow
def test_sequence_parallel_fp8_attention_matches_one() -> None:
    """DTYPE=fp8: the group shares one per-tensor scale for q, k and v (the amax of all heads, as on
    one device), so splitting the tokens changes the FP8 attention no more than it changes fp32."""
    cases = [case for case in CASES if case[0] in ("quality", "turbo")]
    expected = single_process_latents(build_eight_head_dit_fp8_attention, cases)
    results = run_parallel(2, ["sequence"], build_eight_head_dit_fp8_attention, cases)
    assert all(layout.endswith("sequence-parallel x2") for _latent, layout in results.values())
    assert_same_as_single_process(results, expected)


@pytest.mark.slow
@pytest.mark.parametrize("world", [4, 8])
def test_four_and_eight_processes_match_one(world: int) -> None:
    assert EIGHT_HEADS.num_heads >= world
    expected = single_process_latents()
    results = run_parallel(world, ["auto", "guidance"])
    layouts = {key: layout for key, (_latent, layout) in results.items()}
    # fast: 2 guidance groups of world/2; quality: all ranks split the tokens, or 2 groups (2 + 1 forwards)
    assert layouts[("auto", "fast")].endswith(f"guidance-parallel x2 and sequence-parallel x{world // 2}")
    assert layouts[("auto", "quality")].endswith(f"sequence-parallel x{world}")
    assert layouts[("guidance", "quality")].endswith(f"guidance-parallel x2 and sequence-parallel x{world // 2}")
    assert_same_as_single_process(results, expected)


@pytest.mark.slow
def test_a_rank_that_cannot_load_fails_the_load_and_one_that_dies_later_ends_the_generator() -> None:
    with pytest.raises(WorkerLostError, match="rank 1 exited with code 1 before it could load its model"):
        group = ParallelGroup(2, "cpu", "auto", dit_that_fails_to_load, on_lost=lambda _exc: None)
        group.wait_ready()

    lost: list[BaseException] = []
    group = ParallelGroup(2, "cpu", "auto", build_eight_head_dit, on_lost=lost.append)
    try:
        group.wait_ready()
        group.workers[0].kill()
        deadline = time.monotonic() + 10
        while not lost and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lost and isinstance(lost[0], WorkerLostError) and "rank 1 exited" in str(lost[0])
    finally:
        group.shutdown(timeout=5)


@pytest.mark.slow
def test_two_person_clips_split_over_processes_match_one() -> None:
    """Two persons: each device's tokens take their speaker labels from the whole sequence's
    reference attention map (the heads' shares summed over the group), in every layout."""
    cases = [("quality", QUALITY, 6, False), ("turbo", TURBO, 7, False), ("quality batched", QUALITY, 8, True)]
    with torch.no_grad():
        dit = build_eight_head_multi_person_dit(torch.device("cpu"))
        expected = {name: LocalDenoiser(dit)(clip_denoising(plan, seed, batched, persons=2), lambda _step: None)
                    for name, plan, seed, batched in cases}
    lost: list[BaseException] = []
    group = ParallelGroup(4, "cpu", "sequence", build_eight_head_multi_person_dit, on_lost=lost.append)
    results = {}
    try:
        holder = SimpleNamespace(dit=build_eight_head_multi_person_dit(torch.device("cpu")), denoiser=None)
        group.attach(holder)
        group.wait_ready()
        for mode in ("sequence", "guidance"):
            group.runtime.mode = mode
            for name, plan, seed, batched in cases:
                with torch.no_grad():
                    latent = holder.denoiser(clip_denoising(plan, seed, batched, persons=2), lambda _step: None)
                results[(mode, name)] = (latent, group.runtime.layout.describe())
    finally:
        group.shutdown()
    assert not lost
    # 36 tokens of 6 a frame: runs of 9, which start and end inside frames
    assert results[("sequence", "quality")][1].endswith("sequence-parallel x4")
    assert results[("guidance", "quality")][1].endswith("guidance-parallel x2 and sequence-parallel x2")
    assert_same_as_single_process(results, expected)
