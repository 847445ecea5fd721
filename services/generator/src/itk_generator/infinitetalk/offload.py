"""Block offload: the DiT blocks live in pinned CPU memory and stream through two device copies.

While block i runs on the compute stream, block i+1's weights are copied into the other
device copy on a side stream, so the copies hide behind the computation. Device memory then
holds the embeddings, the head, two blocks and the activations instead of all 40 blocks
(about 35 GiB less in bf16 for the 14B model).

Measured on one H200 (torch 2.11, random bf16 weights, one 81-frame 480x832 clip): the DiT
forward peaked at 5.35 GiB with offload against 38.2 GiB resident, at 3.24 s against 3.23 s
per forward (elementwise work compiled): the copies hide behind the computation.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator

import torch
from torch import nn

from .dit import DiTBlock, InfiniteTalkDiT


class BlockStreamer:
    def __init__(self, blocks: nn.ModuleList, device: torch.device) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self.host_tensors = []
        for block in blocks:
            tensors = list(block.state_dict(keep_vars=True).values())
            for tensor in tensors:
                # page-locked host memory, so the copies to the device can run asynchronously
                host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=self.cuda)
                host.copy_(tensor.data)
                tensor.data = host
            self.host_tensors.append(tensors)
        self.slots = [copy.deepcopy(blocks[0]).to(device) for _ in range(2)]
        self.slot_tensors = [list(slot.state_dict(keep_vars=True).values()) for slot in self.slots]
        if self.cuda:
            self.copy_stream = torch.cuda.Stream(device)
            self.loaded = [torch.cuda.Event() for _ in self.slots]
            self.released = [torch.cuda.Event() for _ in self.slots]

    def _load(self, index: int, slot: int) -> None:
        if not self.cuda:
            for target, source in zip(self.slot_tensors[slot], self.host_tensors[index], strict=True):
                target.data.copy_(source.data)
            return
        with torch.cuda.stream(self.copy_stream):
            # The slot's previous block must have finished computing before it is overwritten.
            self.copy_stream.wait_event(self.released[slot])
            for target, source in zip(self.slot_tensors[slot], self.host_tensors[index], strict=True):
                target.data.copy_(source.data, non_blocking=True)
            self.loaded[slot].record(self.copy_stream)

    def __call__(self, _blocks: Iterable[DiTBlock]) -> Iterator[DiTBlock]:
        count = len(self.host_tensors)
        self._load(0, 0)
        for index in range(count):
            slot = index % 2
            if index + 1 < count:
                self._load(index + 1, 1 - slot)
            if self.cuda:
                torch.cuda.current_stream(self.device).wait_event(self.loaded[slot])
            yield self.slots[slot]
            if self.cuda:
                self.released[slot].record(torch.cuda.current_stream(self.device))


def enable_block_offload(model: InfiniteTalkDiT, device: torch.device) -> None:
    """Move everything but the blocks to `device` and stream the blocks from CPU memory."""
    blocks = model.blocks
    model.blocks = nn.ModuleList()
    model.to(device)
    model.block_runner = BlockStreamer(blocks, device)  # moves the blocks' tensors to host memory
    model.blocks = blocks
