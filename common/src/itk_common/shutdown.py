"""Waiting in a service's main thread for SIGTERM (Kubernetes' stop) or SIGINT (Ctrl-C)."""

from __future__ import annotations

import logging
import signal
import threading

log = logging.getLogger(__name__)

POLL_SEC = 0.5


def stop_on_signals(stop: threading.Event) -> None:
    """Set `stop` on SIGTERM or SIGINT."""

    def handler(signum: int, _frame: object) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def wait_until_set(stop: threading.Event) -> None:
    """Block until `stop` is set.

    Polls rather than waiting once: the kernel may deliver SIGTERM to any thread (gRPC runs many),
    and Python runs its handler only when the main thread next wakes, so an untimed wait could
    sleep through the signal and the pod would be killed at the end of its grace period.
    """
    while not stop.wait(POLL_SEC):
        pass
