"""The process groups of every layout N devices can take, created once when the processes start.

torch.distributed needs every process to create every group, in the same order, so all layouts
are created up front (NCCL builds a group's communicator only when it is first used). Ranks are
laid out group-major: rank = g * S + s for guidance group g and position s in the group.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.distributed as dist

from .layout import BRANCH_COUNTS, ParallelLayout, divisors


@dataclass(frozen=True)
class RankGroup:
    """A process group with its members' global ranks, in order."""

    group: dist.ProcessGroup | None  # None: the group of this rank alone
    ranks: tuple[int, ...]

    @property
    def size(self) -> int:
        return len(self.ranks)


class DeviceGroups:
    def __init__(self, world: int) -> None:
        self.world = world
        self._groups: dict[tuple[int, ...], dist.ProcessGroup] = {}
        for guidance_groups in divisors(world):
            if guidance_groups > max(BRANCH_COUNTS):
                continue
            for members in _sequence_members(world, guidance_groups) + _peer_members(world, guidance_groups):
                if len(members) > 1 and members not in self._groups:
                    self._groups[members] = (dist.group.WORLD if len(members) == world
                                             else dist.new_group(list(members)))

    def _lookup(self, members: tuple[int, ...]) -> RankGroup:
        return RankGroup(self._groups.get(members) if len(members) > 1 else None, members)

    def sequence_group(self, layout: ParallelLayout, rank: int) -> RankGroup:
        """The S ranks that split the tokens of the forwards `rank` runs."""
        return self._lookup(_sequence_members(layout.world, layout.guidance_groups)[layout.group_of(rank)])

    def peer_group(self, layout: ParallelLayout, rank: int) -> RankGroup:
        """One rank of each guidance group, at `rank`'s position: they exchange their predictions."""
        return self._lookup(_peer_members(layout.world, layout.guidance_groups)[layout.index_in_group(rank)])


def _sequence_members(world: int, guidance_groups: int) -> list[tuple[int, ...]]:
    degree = world // guidance_groups
    return [tuple(range(g * degree, (g + 1) * degree)) for g in range(guidance_groups)]


def _peer_members(world: int, guidance_groups: int) -> list[tuple[int, ...]]:
    degree = world // guidance_groups
    return [tuple(g * degree + s for g in range(guidance_groups)) for s in range(degree)]
