"""The stitch step: finished parts go to the stitcher as they finish, the MP4 comes back.

The stitch starts with the first finished part and streams the others in whatever order they
finish, with the seams between lanes to cross-fade. An unreachable stitcher is waited for (up to
STITCHER_WAIT_SEC, and never beyond JOB_TIMEOUT_SEC), the finished parts being kept; errors the
stitcher reports itself (INTERNAL, a broken answer) are allowed STITCH_ATTEMPTS times.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc

from infinitetalk.v1 import stitcher_pb2
from itk_common.constants import FPS
from itk_gateway.dispatch.clients import ProtocolError
from itk_gateway.jobs.runner.context import MAX_BACKOFF_SEC, JobContext
from itk_gateway.storage.store import ChunkRecord, JobRecord

log = logging.getLogger(__name__)

STITCH_ATTEMPTS = 3
STITCH_TRANSIENT = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED,
                    grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED, grpc.StatusCode.UNKNOWN)


class FinishedParts:
    """Indices of chunks whose part is on disk, in the order they finished.

    Nothing is ever taken out: each stitch attempt reads it from the start with a cursor of its
    own. (A shared queue lost parts: a failed attempt's reader, still running in grpc's request
    thread, took the parts put back for the retry, which then waited for ever at 95 %.)
    """

    def __init__(self) -> None:
        self._order: list[int] = []
        self._known: set[int] = set()
        self._changed = threading.Condition()

    def add(self, index: int) -> None:
        with self._changed:
            if index not in self._known:
                self._known.add(index)
                self._order.append(index)
                self._changed.notify_all()

    def after(self, seen: int, timeout: float) -> list[int]:
        """The indices beyond the first `seen`, waiting up to `timeout` for one when there is none."""
        with self._changed:
            self._changed.wait_for(lambda: len(self._order) > seen, timeout)
            return self._order[seen:]


class StitchStep:
    def __init__(self, ctx: JobContext, parts: FinishedParts) -> None:
        self.ctx = ctx
        self.parts = parts

    def _next_parts(self, count: int, first: int, attempt_over: threading.Event) -> Iterator[tuple[int, Path]]:
        ctx = self.ctx
        sent = {first}
        yield first, ctx.files.part(ctx.job_id, first)
        seen = 0
        while len(sent) < count:
            if ctx.abort.is_set() or attempt_over.is_set():
                # Raising here would be swallowed by grpc; the call is cancelled or over anyway.
                return
            fresh = self.parts.after(seen, 0.25)
            seen += len(fresh)
            for index in fresh:
                if index not in sent:
                    sent.add(index)
                    yield index, ctx.files.part(ctx.job_id, index)

    def _wait_first_part(self) -> int:
        while True:
            self.ctx.check()
            ready = self.parts.after(0, 0.25)
            if ready:
                return ready[0]

    def _stitcher_deadline(self, job: JobRecord, away_since: float) -> float | None:
        """When to stop waiting for an unreachable stitcher (time.time()), None for never."""
        settings = self.ctx.settings
        limits = []
        if settings.stitcher_wait_sec > 0:
            limits.append(away_since + settings.stitcher_wait_sec)
        if settings.job_timeout_sec > 0:
            limits.append(job.created_at + settings.job_timeout_sec)
        return min(limits) if limits else None

    def run(self, job: JobRecord, chunks: list[ChunkRecord]) -> None:
        """Stitch once every part is there; retry while the stitcher is away, keeping the parts."""
        ctx = self.ctx
        count = len(chunks)
        result = ctx.files.result(ctx.job_id)
        failures = 0  # errors the stitcher itself reported
        away_since: float | None = None
        attempt = 0
        while True:
            attempt += 1
            first = self._wait_first_part()
            dims = {c.idx: (c.part_width, c.part_height) for c in ctx.store.chunks(ctx.job_id)}
            width, height = dims[first]
            plan = ctx.store.get_job(ctx.job_id)
            seams = plan.plan.seams if plan is not None else []
            header = stitcher_pb2.StitchHeader(
                job_id=ctx.job_id, chunk_count=count, fps=FPS, width=width, height=height,
                frame_counts=[c.frame_count for c in chunks],
                seams=[stitcher_pb2.SeamFade(chunk_index=seam.chunk_index, fade_frames=seam.fade_frames)
                       for seam in seams if seam.fade_frames > 0],
            )
            attempt_over = threading.Event()
            try:
                ctx.backends.stitcher.stitch(
                    header, ctx.files.sound(ctx.job_id), self._next_parts(count, first, attempt_over), result,
                    ctx.calls,
                )
                return
            except grpc.RpcError as exc:
                ctx.check()
                code, details = exc.code(), exc.details() or ""
                reason = f"{code.name}: {details}"
                if code == grpc.StatusCode.INVALID_ARGUMENT:
                    ctx.fail(f"stitching failed: {reason}")
                transient = code in STITCH_TRANSIENT
            except ProtocolError as exc:
                ctx.check()
                reason, transient = str(exc), False
            finally:
                attempt_over.set()
            if transient:
                away_since = away_since or time.time()
                deadline = self._stitcher_deadline(job, away_since)
                if deadline is not None and time.time() >= deadline:
                    ctx.fail(f"stitching failed: the stitcher was unreachable for "
                             f"{time.time() - away_since:.0f} s ({reason})")
            else:
                away_since = None
                failures += 1
                if failures >= STITCH_ATTEMPTS:
                    ctx.fail(f"stitching failed on {failures} attempts: {reason}")
            backoff = min(MAX_BACKOFF_SEC, ctx.settings.retry_backoff_sec * 2.0 ** min(attempt - 1, 5))
            log.warning("job %s: stitch attempt %d failed (%s); retrying in %.1f s", ctx.job_id, attempt,
                        reason, backoff)
            ctx.abort.wait(backoff)
            ctx.check()
