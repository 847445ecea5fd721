"""Running a backend's render in a worker thread while the gRPC handler streams its progress."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from .backend import Backend, ChunkJob, ProgressEvent, RenderedChunk

_DONE = object()


class RenderThread:
    """One chunk being rendered; progress events travel through a queue to the caller."""

    def __init__(self, backend: Backend, job: ChunkJob, output: Path) -> None:
        self.backend, self.job, self.output = backend, job, output
        self.cancelled = threading.Event()
        self._events: queue.Queue[object] = queue.Queue()
        self._result: RenderedChunk | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"render-{job.job_id}-{job.chunk_index}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            self._result = self.backend.render(self.job, self.output, self._events.put, self.cancelled)
        except BaseException as exc:  # handed to the caller, which maps it to a gRPC status
            self._error = exc
        finally:
            self._events.put(_DONE)

    def progress(self, still_wanted: Callable[[], bool], poll_sec: float = 0.25) -> Iterator[ProgressEvent]:
        """Yield progress events until the render ends; cancel it once `still_wanted()` is False."""
        while True:
            try:
                item = self._events.get(timeout=poll_sec)
            except queue.Empty:
                if not still_wanted():
                    self.cancelled.set()
                continue
            if item is _DONE:
                return
            assert isinstance(item, ProgressEvent)
            yield item

    def outcome(self) -> RenderedChunk:
        """The rendered chunk, or the exception the backend raised."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def stop(self) -> None:
        """Ask the backend to stop and wait for it: the device is busy until it returns."""
        self.cancelled.set()
        self._thread.join()
