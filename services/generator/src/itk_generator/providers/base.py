"""A generator backend that renders on a remote GPU provider: submit, poll, download, re-time.

No GPU and no weights here: each chunk becomes one provider job. The generator's capacity
(GENERATOR_CAPACITY) is the number of provider jobs kept in flight. While a job waits the backend
reports progress events with the provider's status as the stage (which also keeps the gateway's
stream alive); the frames follow once the video is converted. A chunk that is cancelled, fails,
or passes its deadline cancels its provider job, so nothing keeps running (and billing) for a
chunk nobody waits for.

Lanes: a provider takes no motion frames. A provider piece that continues a lane starts from
the piece's reference image, like the first piece of a lane; its last converted frames
(`retime(..., tail_frames=N)`) are what it hands on as the lane's motion out.
"""

from __future__ import annotations

import base64
import contextlib
import enum
import logging
import threading
import time
from abc import abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from itk_common.motion import uint8_to_motion
from itk_common.wav import encode_wav

from ..backend import Backend, ChunkJob, ProgressCallback, ProgressEvent, RenderedChunk
from .errors import ProviderDeadlineError, ProviderError, ProviderJobEndedError, ProviderJobLostError
from .http import CallScope, ProviderHttp
from .policy import CallPolicy
from .reference import fit_reference
from .retime import retime

log = logging.getLogger(__name__)

# InfiniteTalk workers want a prompt; the seed API's Beam client sends this one when the job has none.
DEFAULT_PROMPT = "A person talking naturally"
# Motion frames handed on to a lane's next piece when the job does not set sampling.motion_frames.
DEFAULT_MOTION_FRAMES = 9
# Provider jobs in flight per generator unless GENERATOR_CAPACITY says otherwise.
DEFAULT_PROVIDER_CAPACITY = 4


class Phase(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class JobState:
    """One poll's answer: the phase, the provider's own status word, and the result when done."""

    phase: Phase
    status: str
    error: str = ""
    rerun_by_provider: bool = False  # FAILED, but the provider will run it again unless cancelled
    video: bytes | None = None  # the MP4 itself, when the provider returns it inline
    video_url: str = ""  # where to download it otherwise


@dataclass(frozen=True)
class ChunkInputs:
    """The chunk's inputs as providers take them."""

    image: bytes
    wav: bytes
    image_url: str = ""  # set by backends that stage inputs for providers that fetch by URL
    wav_url: str = ""
    # A two-person chunk: `wav` is person 1's track and this person 2's (b"" for one person).
    wav_2: bytes = b""

    @property
    def image_base64(self) -> str:
        return base64.b64encode(self.image).decode("ascii")

    @property
    def wav_base64(self) -> str:
        return base64.b64encode(self.wav).decode("ascii")

    @property
    def wav_2_base64(self) -> str:
        return base64.b64encode(self.wav_2).decode("ascii")


class ProviderBackend(Backend):
    # Provider APIs take an image and audio only: every piece starts from the portrait.
    continues_motion = False
    """Subclasses implement `submit`, `poll` and `cancel` for one provider's API."""

    default_capacity = DEFAULT_PROVIDER_CAPACITY

    def __init__(self, policy: CallPolicy, secrets: list[str]) -> None:
        self.policy = policy
        self.http = ProviderHttp(self.name, policy, secrets)

    @property
    def device(self) -> str:
        return f"remote:{self.name}"

    def load(self) -> None:
        """Nothing to load: the provider holds the model. Settings were checked in `from_env`."""

    def unload(self) -> None:
        """Nothing to release between chunks (force_offload is passed to the provider instead)."""

    @abstractmethod
    def submit(self, job: ChunkJob, inputs: ChunkInputs, scope: CallScope) -> str:
        """Start a provider job for the chunk; its id."""

    @abstractmethod
    def poll(self, provider_id: str, scope: CallScope) -> JobState:
        """The provider job's state now."""

    @abstractmethod
    def cancel(self, provider_id: str, scope: CallScope) -> bool:
        """Ask the provider to stop the job; False when this provider has no way to."""

    @contextlib.contextmanager
    def staged(self, job: ChunkJob, inputs: ChunkInputs, scope: CallScope) -> Iterator[ChunkInputs]:
        """Make the inputs reachable by the provider for the chunk's lifetime (default: sent inline)."""
        yield inputs

    def download(self, url: str, scope: CallScope, provider_id: str) -> bytes:
        """Fetch a finished job's video from its output URL (no credentials go to that host)."""
        response = self.http.request("GET", url, scope, what=f"download of job {provider_id}'s video")
        return response.content

    def render(self, job: ChunkJob, output: Path, progress: ProgressCallback,
               cancelled: threading.Event) -> RenderedChunk:
        scope = CallScope(cancelled, time.monotonic() + self.policy.chunk_timeout_sec)
        image = fit_reference(job.image, self.policy.max_image_side)
        if job.persons:
            # Each speaker's own track; the provider's worker lines up their faces itself.
            first, second = job.person_tracks
            inputs = ChunkInputs(image=image, wav=encode_wav(first), wav_2=encode_wav(second))
        else:
            inputs = ChunkInputs(image=image, wav=encode_wav(job.audio))
        progress(ProgressEvent(step=0, total_steps=1, frames_done=0, stage=f"{self.name}: submitting"))
        with self.staged(job, inputs, scope) as staged:
            provider_id = self.submit(job, staged, scope)
            log.info("chunk %s/%d: %s job %s submitted", job.job_id, job.chunk_index, self.name, provider_id)
            try:
                video = self._wait_for_video(provider_id, scope, progress)
            except ProviderJobEndedError as exc:
                if exc.rerun_by_provider:
                    self._cancel_quietly(provider_id)
                raise
            except ProviderJobLostError:
                raise  # nothing left running on the provider
            except BaseException:
                self._cancel_quietly(provider_id)
                raise
        source = output.with_name(output.stem + ".provider.mp4")
        source.write_bytes(video)
        try:
            result = retime(source, output, job.frame_count, job.width, job.height,
                            max_pad_sec=self.policy.max_pad_sec, cancelled=cancelled,
                            tail_frames=job.sampling.motion_frames or DEFAULT_MOTION_FRAMES,
                            progress=lambda frames: progress(ProgressEvent(
                                step=1, total_steps=1, frames_done=frames, stage=f"{self.name}: converting")))
        except ProviderError as exc:
            raise ProviderError(f"{self.name} job {provider_id}: {exc}") from exc
        finally:
            source.unlink(missing_ok=True)
        log.info("chunk %s/%d: %s job %s gave %d frames at %.2f fps (%dx%d) -> %d frames at 25 fps (%dx%d)",
                 job.job_id, job.chunk_index, self.name, provider_id, result.source.frames, result.source.fps,
                 result.source.width, result.source.height, result.frame_count, result.width, result.height)
        motion = None if result.tail is None else uint8_to_motion(result.tail)
        return RenderedChunk(path=output, frame_count=result.frame_count, width=result.width, height=result.height,
                             motion=motion)

    def _wait_for_video(self, provider_id: str, scope: CallScope, progress: ProgressCallback) -> bytes:
        polls = 0
        status = "submitted"
        while True:
            try:
                scope.sleep(self.policy.poll_interval_sec if polls else min(1.0, self.policy.poll_interval_sec),
                            "deadline")
                state = self.poll(provider_id, scope)
            except ProviderDeadlineError as exc:
                raise ProviderDeadlineError(
                    f"{self.name} job {provider_id} did not finish within {self.policy.chunk_timeout_sec:g} s "
                    f"(PROVIDER_CHUNK_TIMEOUT_SEC; last status {status})"
                ) from exc
            polls += 1
            if state.status != status:
                log.info("%s job %s: %s", self.name, provider_id, state.status)
            status = state.status
            if state.phase is Phase.FAILED:
                detail = f": {state.error}" if state.error else ""
                raise ProviderJobEndedError(f"{self.name} job {provider_id} ended {state.status}{detail}",
                                            rerun_by_provider=state.rerun_by_provider)
            if state.phase is Phase.DONE:
                if state.video is not None:
                    return state.video
                if state.video_url:
                    return self.download(state.video_url, scope, provider_id)
                raise ProviderError(f"{self.name} job {provider_id} completed without a video")
            progress(ProgressEvent(step=0, total_steps=1, frames_done=0, stage=f"{self.name}: {state.status}"))

    def _cancel_quietly(self, provider_id: str) -> None:
        """Best effort, with its own short deadline: the chunk is over whatever the answer."""
        scope = CallScope(threading.Event(), time.monotonic() + max(5.0, self.policy.request_timeout_sec))
        try:
            if self.cancel(provider_id, scope):
                log.info("%s job %s cancelled on the provider", self.name, provider_id)
            else:
                log.warning("%s job %s runs on to its end: the provider has no cancel configured",
                            self.name, provider_id)
        except Exception as exc:  # the chunk already failed or was cancelled; say why the cancel did not work
            log.warning("%s job %s: cancel failed: %s", self.name, provider_id, exc)
