"""Starting the N processes of one generator: this process is rank 0, the others are spawned.

The generator service stays one process with one gRPC port, health and capacity: its backend,
when loading, spawns ranks 1..N-1 (torch.multiprocessing, `spawn`), one per device, and they
meet in a TCPStore on 127.0.0.1 that rank 0 serves. Each worker loads its own DiT and reports
ready; the backend turns SERVING only when every rank is ready.

Failure handling, so the pod never serves with a missing rank:
- a worker that exits before it is ready makes the load fail (the service exits 1 and restarts);
- a worker that dies later, or a forward that fails with collectives in flight, ends rank 0
  (`on_lost`, by default exit 1): a generator that dies mid-chunk is what the gateway already
  handles, by retrying the chunk elsewhere;
- a worker whose rank 0 is gone exits by itself (its parent changes, or the store stops answering).
SIGTERM goes to rank 0 alone, which drains as before and then shuts the workers down.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ..denoiser import Denoiser
from ..dit import InfiniteTalkDiT
from .runtime import SHUTDOWN, ParallelDenoiser, ParallelRuntime, serve

log = logging.getLogger(__name__)

# Collectives wait this long for a slow rank (the first forward compiles kernels) before failing.
COLLECTIVE_TIMEOUT = timedelta(minutes=30)
POLL_SEC = 0.05


def device_for(base: str, rank: int) -> torch.device:
    """Rank r's device: the r-th CUDA device from `base` on ("cuda" = "cuda:0"), or the CPU."""
    device = torch.device(base)
    if device.type == "cuda":
        return torch.device("cuda", (device.index or 0) + rank)
    return device


@dataclass(frozen=True)
class WorkerSpec:
    """What a spawned rank needs (pickled into the child)."""

    world: int
    port: int
    base_device: str
    mode: str
    build_dit: Callable[[torch.device], InfiniteTalkDiT]
    cpu_threads: int
    log_level: str


def _exit_if_orphaned(parent: int) -> None:
    while True:
        if os.getppid() != parent:
            os._exit(1)
        time.sleep(1.0)


def worker_main(rank: int, spec: WorkerSpec) -> None:
    """Entry point of ranks 1..N-1."""
    logging.basicConfig(level=spec.log_level, format=f"%(asctime)s rank {rank} %(name)s %(levelname)s %(message)s")
    # Rank 0 decides when the workers stop (after draining on SIGTERM); Ctrl-C in a terminal,
    # which reaches the whole process group, must not end them under a chunk in progress.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # A worker is a daemonic process, which may not start a process pool: torch.compile's kernel
    # builds run in this process.
    os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")
    threading.Thread(target=_exit_if_orphaned, args=(os.getppid(),), daemon=True).start()
    device = device_for(spec.base_device, rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    else:
        torch.set_num_threads(spec.cpu_threads)
    store = dist.TCPStore("127.0.0.1", spec.port, spec.world, is_master=False, timeout=COLLECTIVE_TIMEOUT)
    store.set(f"itk/joined/{rank}", "1")
    dist.init_process_group(_backend(device), store=dist.PrefixStore("pg", store), rank=rank,
                            world_size=spec.world, timeout=COLLECTIVE_TIMEOUT)
    try:
        runtime = ParallelRuntime(rank, spec.world, device, store, spec.mode)
        dit = spec.build_dit(device)
        runtime.attach(dit)
        log.info("rank %d: DiT loaded on %s", rank, device)
        store.set(f"itk/ready/{rank}", "1")
        serve(runtime, dit)
    finally:
        dist.destroy_process_group()


def _backend(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def keep_on_loopback() -> None:
    """Every rank is a process of this host: NCCL's bootstrap and gloo talk over the loopback
    interface, not the pod's network (set before the ranks are spawned, which inherit it)."""
    if sys.platform.startswith("linux"):
        os.environ.setdefault("NCCL_SOCKET_IFNAME", "lo")
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")


class DenoisingPipeline(Protocol):
    """What rank 0 attaches to: InfiniteTalkPipeline, or a benchmark's bare DiT holder."""

    dit: InfiniteTalkDiT
    denoiser: Denoiser


class WorkerLostError(RuntimeError):
    """A rank exited while the others needed it."""


class ParallelGroup:
    """Rank 0's handle on the N processes."""

    def __init__(self, world: int, base_device: str, mode: str,
                 build_dit: Callable[[torch.device], InfiniteTalkDiT],
                 on_lost: Callable[[BaseException], None] | None = None) -> None:
        if world < 2:
            raise ValueError(f"a parallel group needs at least 2 processes, got {world}")
        self.world = world
        self.device = device_for(base_device, 0)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)  # NCCL works on the current device
        self.on_lost = on_lost or _exit_process
        self._stopping = threading.Event()
        keep_on_loopback()
        # The store listens on 127.0.0.1 only (TCPStore alone would listen on every interface);
        # it takes the socket over.
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        port = listener.getsockname()[1]
        self._store = dist.TCPStore("127.0.0.1", port, world, is_master=True, wait_for_workers=False,
                                    timeout=COLLECTIVE_TIMEOUT, master_listen_fd=listener.detach())
        cpu_threads = max(1, (os.cpu_count() or 1) // world)
        spec = WorkerSpec(world, self._store.port, base_device, mode, build_dit, cpu_threads,
                          logging.getLevelName(logging.getLogger().getEffectiveLevel()))
        context = mp.get_context("spawn")
        self.workers = [context.Process(target=worker_main, args=(rank, spec), name=f"itk-rank-{rank}", daemon=True)
                        for rank in range(1, world)]
        for worker in self.workers:
            worker.start()
        self._wait_for("joined", "start")
        dist.init_process_group(_backend(self.device), store=dist.PrefixStore("pg", self._store), rank=0,
                                world_size=world, timeout=COLLECTIVE_TIMEOUT)
        self.runtime = ParallelRuntime(0, world, self.device, self._store, mode)
        self._monitor: threading.Thread | None = None

    def _wait_for(self, state: str, what: str) -> None:
        """Until every worker has set itk/<state>/<rank>; fails at once when one exits first."""
        for rank, worker in enumerate(self.workers, start=1):
            while not self._store.check([f"itk/{state}/{rank}"]):
                if not worker.is_alive():
                    self._stop_workers()
                    self._finish()
                    raise WorkerLostError(f"parallel rank {rank} exited with code {worker.exitcode} before it "
                                          f"could {what} (its log above says why)")
                time.sleep(POLL_SEC)

    def attach(self, pipeline: DenoisingPipeline) -> None:
        """Rank 0's DiT joins the group, and the pipeline's clips run on all ranks."""
        self.runtime.attach(pipeline.dit)
        pipeline.denoiser = ParallelDenoiser(self.runtime, pipeline.dit, self._broken)

    def wait_ready(self) -> None:
        """Block until every worker has loaded its DiT; then watch them."""
        self._wait_for("ready", "load its model")
        self._monitor = threading.Thread(target=self._watch, name="parallel-monitor", daemon=True)
        self._monitor.start()

    def _watch(self) -> None:
        while not self._stopping.wait(POLL_SEC * 10):
            for rank, worker in enumerate(self.workers, start=1):
                if not worker.is_alive() and not self._stopping.is_set():
                    self._broken(WorkerLostError(f"parallel rank {rank} exited with code {worker.exitcode}"))
                    return

    def _broken(self, exc: BaseException) -> None:
        log.critical("the parallel group cannot go on (%s); stopping this generator so it restarts", exc)
        self._stopping.set()
        self.on_lost(exc)

    def shutdown(self, timeout: float = 30.0) -> None:
        """Tell the workers to exit, wait for them, and leave the process group."""
        if self._stopping.is_set() and not any(w.is_alive() for w in self.workers):
            self._finish()
            return
        self._stopping.set()
        with self.runtime.turn, contextlib.suppress(RuntimeError, OSError):  # no store: the workers exit anyway
            self.runtime.post(SHUTDOWN)
        self._stop_workers(timeout)
        self._finish()

    def _finish(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()

    def _stop_workers(self, timeout: float = 0.0) -> None:
        deadline = time.monotonic() + timeout
        for worker in self.workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        for worker in self.workers:
            if worker.is_alive():
                worker.kill()
                worker.join(5)


def _exit_process(_exc: BaseException) -> None:
    os._exit(1)
