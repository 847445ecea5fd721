"""One chunk's sampling on N processes, one per device, in lockstep.

Rank 0 is the generator service: it runs the pipeline (encoders, VAE, the chunk loop) and, for
each clip, sends the clip's conditioning to the other ranks; then every rank runs the same
schedule (`denoise_clip`) with `GuidanceParallelEvaluator` as the step's forwards. The workers
(ranks 1..N-1) hold only the DiT.

Two channels, for two kinds of waiting:
- commands ("clip", "shutdown") go through the rendezvous TCPStore: a worker may wait hours for
  the next chunk, and a store poll has no timeout to trip, unlike a collective;
- inside a clip, rank 0 opens every step with a broadcast (STEP with the latent, or ABORT when
  the chunk was cancelled or failed between steps), so the workers never run a step rank 0
  will not. A failure inside a forward, with collectives half done, cannot be recovered in
  place: `ParallelBrokenError` is raised and the processes are restarted (launch.py).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..denoiser import ClipConditioning, ClipDenoising
from ..dit import InfiniteTalkDiT, ResidualCache
from ..sampling import BatchPredictor, Predictor, SamplingPlan, denoise_clip, evaluate_branches
from .groups import DeviceGroups, RankGroup
from .layout import ParallelLayout, choose_layout
from .sequence import SequenceShard, enable_sequence_parallel

log = logging.getLogger(__name__)

STEP, ABORT = 1, 2
CLIP, SHUTDOWN, PEAK_MEMORY = "clip", "shutdown", "peak-memory"
COMMAND_POLL_SEC = 0.01


class ClipAborted(Exception):  # noqa: N818 - a signal between ranks, not an error
    """Rank 0 stopped the clip between two steps."""


class ParallelBrokenError(RuntimeError):
    """A rank failed inside a forward: the ranks' collectives are out of step."""


class ParallelRuntime:
    """This process's place among the N: rank, device, groups, the DiT's shard, the command channel."""

    def __init__(self, rank: int, world: int, device: torch.device, store: dist.Store, mode: str = "auto") -> None:
        self.rank = rank
        self.world = world
        self.device = device
        self.mode = mode
        self.groups = DeviceGroups(world)
        self.shard = SequenceShard()
        self.layout = ParallelLayout(world, 1, 1)
        self.peers = RankGroup(None, (rank,))
        self._commands = dist.PrefixStore("itk/commands", store)
        self._peaks = dist.PrefixStore("itk/peak-memory", store)
        self._sequence = 0
        # Rank 0: one clip (or report) at a time on the group. A generator with GENERATOR_CAPACITY
        # above 1 then interleaves its chunks clip by clip instead of mixing their collectives.
        self.turn = threading.Lock()

    def attach(self, dit: InfiniteTalkDiT) -> None:
        enable_sequence_parallel(dit, self.shard)

    def use_layout(self, layout: ParallelLayout) -> None:
        if layout != self.layout and self.rank == 0:
            log.info("sampling on %s", layout.describe())
        self.layout = layout
        self.shard.use(self.groups.sequence_group(layout, self.rank), self.rank)
        self.peers = self.groups.peer_group(layout, self.rank)

    def choose_layout(self, plan: SamplingPlan, num_heads: int) -> ParallelLayout:
        return choose_layout(self.world, len(plan.branches), num_heads, self.mode)

    # -- commands (store) ---------------------------------------------------------------------

    def post(self, command: str) -> None:
        """Rank 0: the next command. The previous one has been read by every worker by now (a
        command is followed by a collective they all join, or by their exit)."""
        self._commands.set(str(self._sequence), command)
        if self._sequence:
            self._commands.delete_key(str(self._sequence - 1))
        self._sequence += 1

    def next_command(self) -> str:
        """Workers: wait for rank 0's next command (raises when rank 0's store is gone)."""
        key = str(self._sequence)
        while not self._commands.check([key]):
            time.sleep(COMMAND_POLL_SEC)
        self._sequence += 1
        return self._commands.get(key).decode()

    # -- peak device memory per rank (for the benchmark and the logs) ---------------------------

    def report_peak_memory(self) -> None:
        """Workers: publish this device's peak allocated bytes since the last report, and reset it."""
        self._peaks.set(str(self.rank), str(_take_peak_memory(self.device)))

    def peak_memory(self) -> list[int]:
        """Rank 0: every rank's peak allocated bytes since the last call (0 on the CPU)."""
        with self.turn:
            self.post(PEAK_MEMORY)
            peaks = [_take_peak_memory(self.device)]
            for rank in range(1, self.world):
                peaks.append(int(self._peaks.get(str(rank)).decode()))  # waits until the worker has set it
                self._peaks.delete_key(str(rank))
        return peaks

    # -- per-step signal (collective) -------------------------------------------------------

    def announce_step(self, latent: torch.Tensor) -> None:
        signal = torch.tensor([STEP], dtype=torch.int64, device=self.device)
        dist.broadcast(signal, src=0)
        dist.broadcast(latent.contiguous(), src=0)

    def abort(self) -> None:
        dist.broadcast(torch.tensor([ABORT], dtype=torch.int64, device=self.device), src=0)

    def await_step(self, latent: torch.Tensor) -> torch.Tensor:
        """Workers: rank 0's latent for this step, or ClipAborted."""
        signal = torch.empty(1, dtype=torch.int64, device=self.device)
        dist.broadcast(signal, src=0)
        if int(signal.item()) == ABORT:
            raise ClipAborted()
        latent = latent.contiguous()
        dist.broadcast(latent, src=0)
        return latent


class AgreedCache(ResidualCache):
    """TeaCache on a sequence-parallel group: every rank keeps its own cache state (the residual
    of its tokens), but all follow the first rank's skip decision, so no rank skips the blocks
    (and their all-to-alls) while another runs them."""

    def __init__(self, inner: ResidualCache, group: RankGroup, device: torch.device) -> None:
        self.inner = inner
        self.group = group
        self.device = device

    @property  # type: ignore[override]
    def residual(self) -> torch.Tensor | None:
        return self.inner.residual

    @residual.setter
    def residual(self, value: torch.Tensor | None) -> None:
        self.inner.residual = value

    def should_compute(self, modulation_input: torch.Tensor) -> bool:
        decision = torch.tensor([int(self.inner.should_compute(modulation_input))], device=self.device)
        dist.broadcast(decision, src=self.group.ranks[0], group=self.group.group)
        return bool(decision.item())


class GuidanceParallelEvaluator:
    """One step's forwards on every rank: this rank's guidance group runs its branches (tokens
    split over the group), then the groups exchange their predictions."""

    def __init__(self, runtime: ParallelRuntime) -> None:
        self.runtime = runtime
        self.steps_started = 0
        self.in_forward = False

    def __call__(self, predict: Predictor, latent: torch.Tensor, t: torch.Tensor, branches: tuple[str, ...],
                 caches: dict[str, ResidualCache | None], predict_batch: BatchPredictor | None = None
                 ) -> dict[str, torch.Tensor]:
        runtime = self.runtime
        if runtime.rank == 0:
            runtime.announce_step(latent)
        else:
            latent = runtime.await_step(latent)
        self.steps_started += 1
        layout = runtime.layout
        mine = tuple(branches[i] for i in layout.branch_indices(layout.group_of(runtime.rank)))
        self.in_forward = True
        computed = evaluate_branches(predict, latent, t, mine, {b: self._cache(caches[b]) for b in mine}, predict_batch)
        predictions = self._exchange([computed[branch] for branch in mine], branches)
        self.in_forward = False
        return predictions

    def _cache(self, cache: ResidualCache | None) -> ResidualCache | None:
        group = self.runtime.shard.group
        if cache is None or group.size == 1:
            return cache
        return AgreedCache(cache, group, self.runtime.device)

    def _exchange(self, outputs: list[torch.Tensor], branches: tuple[str, ...]) -> dict[str, torch.Tensor]:
        layout, peers = self.runtime.layout, self.runtime.peers
        groups = layout.guidance_groups
        if groups == 1:
            return dict(zip(branches, outputs, strict=True))
        # Groups run ceil(B/G) or one fewer forwards; pad to equal sizes for the all-gather.
        slots = math.ceil(len(branches) / groups)
        mine = torch.stack(outputs + [torch.zeros_like(outputs[0])] * (slots - len(outputs)))
        gathered = [torch.empty_like(mine) for _ in range(groups)]
        dist.all_gather(gathered, mine, group=peers.group)
        return {branches[group + groups * slot]: gathered[group][slot]
                for group in range(groups) for slot in range(slots) if group + groups * slot < len(branches)}


@dataclass
class ClipPayload:
    """What rank 0 sends the workers for one clip (CPU tensors, pickled by broadcast_object_list)."""

    layout: ParallelLayout
    tensors: dict[str, torch.Tensor]
    plan: SamplingPlan
    teacache_coefficients: tuple[float, ...] | None
    batch_guidance: bool

    @classmethod
    def of(cls, clip: ClipDenoising, layout: ParallelLayout) -> ClipPayload:
        tensors = {name: tensor.cpu() for name, tensor in clip.conditioning.tensors().items()}
        tensors["noise"], tensors["motion_latent"] = clip.noise.cpu(), clip.motion_latent.cpu()
        return cls(layout, tensors, clip.plan, clip.teacache_coefficients, clip.batch_guidance)

    def clip(self, device: torch.device) -> ClipDenoising:
        on_device = {name: tensor.to(device) for name, tensor in self.tensors.items()}
        noise, motion_latent = on_device.pop("noise"), on_device.pop("motion_latent")
        return ClipDenoising(ClipConditioning(**on_device), noise, motion_latent, self.plan, self.teacache_coefficients,
                             self.batch_guidance)


def run_clip(runtime: ParallelRuntime, dit: InfiniteTalkDiT, clip: ClipDenoising,
             on_step: Callable[[int], None], evaluator: GuidanceParallelEvaluator) -> torch.Tensor:
    predict, predict_batch = clip.predictors(dit)
    return denoise_clip(clip.noise, clip.motion_latent, clip.plan, predict, on_step, clip.teacache_coefficients,
                        predict_batch, evaluate=evaluator)


class ParallelDenoiser:
    """Rank 0's denoiser (the pipeline's `denoiser`): the clip's schedule on all N devices."""

    def __init__(self, runtime: ParallelRuntime, dit: InfiniteTalkDiT,
                 on_broken: Callable[[BaseException], None]) -> None:
        self.runtime = runtime
        self.dit = dit
        self.on_broken = on_broken

    def __call__(self, clip: ClipDenoising, on_step: Callable[[int], None]) -> torch.Tensor:
        with self.runtime.turn:
            return self._denoise(clip, on_step)

    def _denoise(self, clip: ClipDenoising, on_step: Callable[[int], None]) -> torch.Tensor:
        runtime = self.runtime
        layout = runtime.choose_layout(clip.plan, self.dit.config.num_heads)
        runtime.use_layout(layout)
        runtime.post(CLIP)
        dist.broadcast_object_list([ClipPayload.of(clip, layout)], src=0)
        evaluator = GuidanceParallelEvaluator(runtime)
        try:
            return run_clip(runtime, self.dit, clip, on_step, evaluator)
        except BaseException as exc:
            if evaluator.in_forward:
                self.on_broken(exc)
                raise ParallelBrokenError(f"a forward failed on rank 0 with collectives in flight: {exc}") from exc
            if evaluator.steps_started < clip.plan.steps:
                runtime.abort()  # the workers wait at the next step
            raise


def serve(runtime: ParallelRuntime, dit: InfiniteTalkDiT) -> None:
    """A worker's life after loading: one clip per command until "shutdown"."""
    while True:
        command = runtime.next_command()
        if command == SHUTDOWN:
            return
        if command == PEAK_MEMORY:
            runtime.report_peak_memory()
            continue
        if command != CLIP:
            raise RuntimeError(f"unknown command {command!r} from rank 0")
        received: list[ClipPayload | None] = [None]
        dist.broadcast_object_list(received, src=0)
        payload = received[0]
        assert payload is not None
        runtime.use_layout(payload.layout)
        try:
            with torch.no_grad():
                run_clip(runtime, dit, payload.clip(runtime.device), lambda _step: None,
                         GuidanceParallelEvaluator(runtime))
        except ClipAborted:
            log.info("rank %d: clip stopped by rank 0", runtime.rank)


def _take_peak_memory(device: torch.device) -> int:
    if device.type != "cuda":
        return 0
    peak = torch.cuda.max_memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    return peak
