"""Free space on the data volume, and telling a full volume apart from every other error.

A full volume is a condition of the server, not of the request: creates are answered 507 with
Retry-After (gRPC RESOURCE_EXHAUSTED), `/ready` turns 503 and gRPC health NOT_SERVING below
MIN_FREE_DISK_MB so a load balancer (or Kubernetes' readiness probe) sends new work elsewhere,
`itk_data_free_bytes` shows it, and jobs in flight wait for space (DISK_FULL_WAIT_SEC) instead of
failing where they can.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import threading
from pathlib import Path

FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
# SQLite's SQLITE_FULL: "database or disk is full".
SQLITE_FULL = 13


def is_storage_full(exc: BaseException | None) -> bool:
    """Whether `exc` (or what caused it) is the volume or a quota being full."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno in FULL_ERRNOS:
            return True
        if isinstance(exc, sqlite3.OperationalError) and (
                getattr(exc, "sqlite_errorcode", None) == SQLITE_FULL or "database or disk is full" in str(exc)):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


class DiskSpace:
    """The data volume's free space against the least the gateway wants to keep free."""

    def __init__(self, path: Path, min_free_bytes: int) -> None:
        self.path = path
        self.min_free_bytes = min_free_bytes

    def free_bytes(self) -> int:
        stats = os.statvfs(self.path)
        return stats.f_bavail * stats.f_frsize

    def low(self) -> bool:
        return self.free_bytes() < max(1, self.min_free_bytes)

    def describe(self) -> str:
        return (f"the data volume ({self.path}) is full: {self.free_bytes() / 2**20:.0f} MiB free, "
                f"MIN_FREE_DISK_MB={self.min_free_bytes // 2**20}")

    def wait_for_room(self, stop: threading.Event, timeout: float, poll: float = 1.0) -> bool:
        """Wait until the volume has room again (True), `stop` is set or `timeout` passes (False)."""
        waited = 0.0
        while self.low():
            if waited >= timeout or stop.wait(poll):
                return False
            waited += poll
        return True
