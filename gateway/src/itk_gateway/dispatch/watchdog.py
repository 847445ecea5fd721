"""The dispatch watchdog: notices work that waits while generators idle, says so, and recovers.

Every slot the gateway takes on a generator is given back on every path of a piece; the watchdog
is there for what that cannot foresee. Every DISPATCH_WATCHDOG_SEC it asks each pool whether it
is stuck: chunks wait for a slot, a ready generator reports room that the gateway counts as taken,
and no slot moved for DISPATCH_STALL_SEC. Then it logs the pool's state, sets
`itk_dispatch_stalled{pool}` and counts `itk_dispatch_stalls_total`, and gives back the slots
whose holder thread ended without releasing them (`itk_dispatch_slots_reclaimed_total`).
"""

from __future__ import annotations

import logging
import threading

from itk_gateway.dispatch.pool import EndpointPool
from itk_gateway.metrics import GatewayMetrics

log = logging.getLogger(__name__)


class DispatchWatchdog:
    def __init__(self, pools: dict[str, EndpointPool], metrics: GatewayMetrics, stall_sec: float,
                 interval_sec: float) -> None:
        self.pools = pools
        self.metrics = metrics
        self.stall_sec = stall_sec
        self.interval_sec = interval_sec
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.stall_sec <= 0:
            return
        self._thread = threading.Thread(target=self._watch, name="dispatch-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_sec + 5)

    def _watch(self) -> None:
        while not self._stop.wait(self.interval_sec):
            try:
                self.check_once()
            except Exception:  # the watchdog must outlive whatever it watches
                log.exception("dispatch watchdog check failed")

    def check_once(self) -> None:
        for name, pool in self.pools.items():
            problem = pool.stalled(self.stall_sec)
            self.metrics.dispatch_stalled.labels(name).set(1 if problem else 0)
            if problem is None:
                continue
            self.metrics.dispatch_stalls.labels(name).inc()
            reclaimed = pool.reclaim_abandoned()
            self.metrics.slots_reclaimed.labels(name).inc(reclaimed)
            log.error("dispatch stalled in pool %s: %s; %d abandoned slot(s) given back", name, problem, reclaimed)
