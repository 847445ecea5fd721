"""Giving GPU memory back while a generator is idle, without reloading anything (OFFLOAD_IDLE_SEC).

A generator keeps its models on the GPU between chunks and jobs. With OFFLOAD_IDLE_SEC set, once
no chunk has run for that long every weight and buffer of the pipeline's models is copied into
pinned host memory and the GPU copies are freed; the next chunk copies them back before it starts.
The tensors keep their identity (only `.data` moves), so nothing is re-read from disk and compiled
graphs stay valid: the return costs one host-to-device copy of the weights (the figure is logged,
and `bench/gpu_service.py` reports it). The pinned buffers are allocated on the first offload and
kept, so later offloads do not pay for allocating them again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import nn

log = logging.getLogger(__name__)


def module_tensors(modules: Iterable[nn.Module]) -> list[torch.Tensor]:
    """Every parameter and buffer of `modules`, each once."""
    seen: dict[int, torch.Tensor] = {}
    for module in modules:
        for tensor in [*module.parameters(), *module.buffers()]:
            seen.setdefault(id(tensor), tensor)
    return list(seen.values())


class IdleOffload:
    """Moves the models' tensors to pinned host memory after `idle_sec` without a chunk."""

    def __init__(self, modules: Callable[[], list[nn.Module]], device: torch.device, idle_sec: float) -> None:
        self._modules = modules
        self.device = device
        self.idle_sec = idle_sec
        self._lock = threading.Lock()
        self._busy = 0
        self._last_used = time.monotonic()
        self._parked = False
        self._host: dict[int, torch.Tensor] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="idle-offload", daemon=True)
        # Seconds the last return to the GPU took, and the bytes it moved (for logs and benchmarks).
        self.last_return_sec = 0.0
        self.last_return_bytes = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    @property
    def parked(self) -> bool:
        return self._parked

    def acquire(self) -> None:
        """A chunk starts: bring the weights back first if they were parked."""
        with self._lock:
            self._busy += 1
            if self._parked:
                self._restore()

    def release(self) -> None:
        with self._lock:
            self._busy -= 1
            self._last_used = time.monotonic()

    @contextlib.contextmanager
    def in_use(self) -> Iterator[None]:
        """A chunk, or the warm-up before SERVING, runs: the weights stay on the device throughout
        (brought back first if they were parked), and the idle time counts from its end."""
        self.acquire()
        try:
            yield
        finally:
            self.release()

    def _watch(self) -> None:
        while not self._stop.wait(min(1.0, self.idle_sec / 4)):
            with self._lock:
                if not self._busy and not self._parked and time.monotonic() - self._last_used >= self.idle_sec:
                    self._park()

    def _park(self) -> None:
        started = time.monotonic()
        tensors = [t for t in module_tensors(self._modules()) if t.device.type == self.device.type]
        moved = 0
        for tensor in tensors:
            host = self._host.get(id(tensor))
            if host is None or host.shape != tensor.shape or host.dtype != tensor.dtype:
                host = self._host[id(tensor)] = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
            host.copy_(tensor.data, non_blocking=True)
            moved += tensor.numel() * tensor.element_size()
        torch.cuda.synchronize(self.device)
        for tensor in tensors:
            tensor.data = self._host[id(tensor)]
        torch.cuda.empty_cache()
        self._parked = True
        log.info("idle for %.0f s: %.2f GiB of weights moved to pinned host memory in %.2f s", self.idle_sec,
                 moved / 2**30, time.monotonic() - started)

    def _restore(self) -> None:
        started = time.monotonic()
        moved = 0
        for tensor in module_tensors(self._modules()):
            if tensor.device.type == "cpu" and id(tensor) in self._host:
                tensor.data = tensor.data.to(self.device, non_blocking=True)
                moved += tensor.numel() * tensor.element_size()
        torch.cuda.synchronize(self.device)
        self._parked = False
        self.last_return_sec = time.monotonic() - started
        self.last_return_bytes = moved
        log.info("weights back on %s for the next chunk: %.2f GiB in %.2f s (no files read, nothing recompiled)",
                 self.device, moved / 2**30, self.last_return_sec)
