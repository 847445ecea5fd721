"""How N devices share one sampling step: G guidance groups of S devices each (N = G x S).

Each step runs 1, 2 or 3 guidance forwards (sampling.py). Guidance parallelism gives each of G
groups its own forwards (branch k to group k mod G): they need no communication until their
predictions are exchanged once per step. Sequence parallelism (Ulysses) splits each forward's
video tokens over the S devices of a group, with two all-to-alls around every self-attention.

`auto` picks the layout with the fewest forwards per device, ceil(B/G) / S, and among equals the
one with more guidance groups (less communication): 2 forwards on 2 devices run one each; 3 on 2
devices split their tokens instead (1.5 forwards' worth each, not 2); 3 on 6 devices run one
forward per group of 2. `sequence` always splits tokens over all N; `guidance` takes the most
guidance groups N allows and splits tokens only for the rest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MODES = ("auto", "guidance", "sequence")
# Forwards per step: cond alone (turbo), cond / no-audio, or cond / no-text / uncond.
BRANCH_COUNTS = (1, 2, 3)


class LayoutError(ValueError):
    """No layout of the devices fits the model or the mode."""


@dataclass(frozen=True)
class ParallelLayout:
    world: int
    guidance_groups: int  # G
    branches: int  # forwards per step

    def __post_init__(self) -> None:
        if self.world % self.guidance_groups:
            raise LayoutError(f"{self.guidance_groups} guidance groups do not divide {self.world} devices")

    @property
    def sequence_degree(self) -> int:
        """S: devices each forward's tokens are split over."""
        return self.world // self.guidance_groups

    def group_of(self, rank: int) -> int:
        return rank // self.sequence_degree

    def index_in_group(self, rank: int) -> int:
        return rank % self.sequence_degree

    def branch_indices(self, group: int) -> list[int]:
        """Which of the step's forwards (indices into the plan's branches) a group runs."""
        return list(range(group, self.branches, self.guidance_groups))

    @property
    def forwards_per_device(self) -> float:
        return math.ceil(self.branches / self.guidance_groups) / self.sequence_degree

    def describe(self) -> str:
        kinds = []
        if self.guidance_groups > 1:
            kinds.append(f"guidance-parallel x{self.guidance_groups}")
        if self.sequence_degree > 1:
            kinds.append(f"sequence-parallel x{self.sequence_degree}")
        return f"{self.world} devices, {self.branches} forwards a step: " + (" and ".join(kinds) or "one device")


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def choose_layout(world: int, branches: int, num_heads: int, mode: str = "auto") -> ParallelLayout:
    """The layout for `world` devices and `branches` forwards a step; each of the S devices of a
    group needs at least one of the model's `num_heads` attention heads."""
    if mode not in MODES:
        raise LayoutError(f"parallel mode must be one of {MODES}, got {mode!r}")
    if world < 1:
        raise LayoutError(f"need at least one device, got {world}")
    fits = [ParallelLayout(world, g, branches) for g in divisors(world)
            if g <= branches and world // g <= num_heads]
    if mode == "sequence":
        fits = [layout for layout in fits if layout.guidance_groups == 1]
    if not fits:
        raise LayoutError(
            f"{world} devices cannot share {branches} forwards a step in mode {mode!r}: splitting tokens over "
            f"more than {num_heads} devices (the model's attention heads) is not possible")
    if mode == "guidance":
        return max(fits, key=lambda layout: layout.guidance_groups)
    return min(fits, key=lambda layout: (layout.forwards_per_device, -layout.guidance_groups))
