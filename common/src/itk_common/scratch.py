"""Per-process scratch folders that a crashed process does not leave behind for ever.

A service that spools requests to disk (stitcher, generator) makes one folder per process under
its TEMP_DIR, `<prefix><random>/`, and holds an exclusive flock on the lock file beside it,
`<prefix><random>.lock`, for as long as it lives. The kernel drops that lock when the process
dies, however it dies (SIGKILL, OOM kill, a node reboot with a persistent volume), so at start
every sibling folder with the same prefix whose lock can be taken belongs to a dead process and
is removed. Several live processes sharing one TEMP_DIR never remove each other's folders.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)
LOCK_SUFFIX = ".lock"
# A folder without its lock file yet may be one being created this instant by another process.
UNLOCKED_GRACE_SEC = 60.0


def lock_path(folder: Path) -> Path:
    return folder.with_name(folder.name + LOCK_SUFFIX)


def _owner_alive(folder: Path) -> bool:
    try:
        descriptor = os.open(lock_path(folder), os.O_RDWR)  # never creates it
    except FileNotFoundError:
        return time.time() - folder.stat().st_mtime < UNLOCKED_GRACE_SEC
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)  # also releases the lock if we took it
    return False


def remove_stale(parent: Path, prefix: str) -> list[Path]:
    """Remove the scratch folders under `parent` whose process is gone; return them."""
    removed = []
    for folder in sorted(parent.glob(f"{prefix}*")):
        try:
            if folder.is_dir() and not _owner_alive(folder):
                shutil.rmtree(folder, ignore_errors=True)
                lock_path(folder).unlink(missing_ok=True)
                removed.append(folder)
        except FileNotFoundError:
            continue  # removed meanwhile by another process's sweep
    return removed


class ScratchRoot:
    """This process's scratch folder (`path`), after removing those of dead processes."""

    def __init__(self, parent: Path, prefix: str) -> None:
        parent.mkdir(parents=True, exist_ok=True)
        self.removed = remove_stale(parent, prefix)
        if self.removed:
            log.info("removed %d scratch folder(s) of processes that died: %s", len(self.removed),
                     ", ".join(p.name for p in self.removed))
        self.path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        self._lock: int | None = os.open(lock_path(self.path), os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def close(self) -> None:
        """Remove the folder (at a clean stop)."""
        if self._lock is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            lock_path(self.path).unlink(missing_ok=True)
            os.close(self._lock)
            self._lock = None
