"""The handshake between job creation and the job's runner.

Creation waits until the splitter has accepted the audio (its first chunk) or refused it, so a
refusal can still be a validation error with no job left behind.
"""

from __future__ import annotations

import threading

from itk_gateway.errors import ApiError


class AcceptGate:
    """Lets job creation wait until the splitter has accepted the audio (first chunk) or refused it.

    Once the creator stops waiting (accepted, or the wait timed out) the gate is decided and a
    later refusal fails the job like any other error instead of un-creating it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._decided = False
        self._done = threading.Event()
        self.error: ApiError | None = None

    @property
    def open(self) -> bool:
        return not self._decided

    def accept(self) -> None:
        with self._lock:
            self._decided = True
        self._done.set()

    def claim_rejection(self) -> bool:
        """True if the job may still be refused; the caller then cleans up and calls reject()."""
        with self._lock:
            if self._decided:
                return False
            self._decided = True
            return True

    def reject(self, error: ApiError) -> None:
        self.error = error
        self._done.set()

    def wait(self, timeout: float) -> None:
        """Return when accepted or after `timeout` (the job then goes on); raise the refusal."""
        if not self._done.wait(timeout):
            with self._lock:
                rejecting = self._decided
                self._decided = True
            if rejecting:
                self._done.wait()
        if self.error is not None:
            raise self.error
