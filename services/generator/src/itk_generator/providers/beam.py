"""Beam task queues running an InfiniteTalk worker, as the seed API's client calls them.

POST BEAM_QUEUE_URL {prompt, width, height, force_offload, image_base64, wav_base64} -> {task_id};
GET {api}/v2/task/{task_id}/ -> {status, outputs: [{name, url}], error}; the MP4 is downloaded
from the first output's URL; DELETE {api}/v2/task/cancel/ {"task_ids": [...]}.
Authorization: Bearer BEAM_TOKEN.

The seed's client keeps polling RETRY, CANCELLED, TIMEOUT and EXPIRED forever; here they end the
attempt. RETRY means Beam's worker failed and Beam would run the task again on its own: the task
is cancelled instead and the gateway's retry (counted, with backoff, possibly elsewhere) takes over.
"""

from __future__ import annotations

from itk_common.config import env_float, env_str

from ..backend import ChunkJob
from .base import DEFAULT_PROMPT, ChunkInputs, JobState, Phase, ProviderBackend
from .errors import ProviderError
from .http import CallScope, json_object
from .policy import CallPolicy, required_env

DEFAULT_API_BASE_URL = "https://api.beam.cloud"
PHASES = {
    "PENDING": Phase.QUEUED,
    "RUNNING": Phase.RUNNING,
    "COMPLETE": Phase.DONE,
    "COMPLETED": Phase.DONE,
    "FAILED": Phase.FAILED,
    "ERROR": Phase.FAILED,
    "RETRY": Phase.FAILED,
    "CANCELLED": Phase.FAILED,
    "CANCELED": Phase.FAILED,
    "TIMEOUT": Phase.FAILED,
    "EXPIRED": Phase.FAILED,
}


class BeamBackend(ProviderBackend):
    name = "beam"

    def __init__(self, token: str, queue_url: str, api_base_url: str = DEFAULT_API_BASE_URL,
                 policy: CallPolicy | None = None) -> None:
        super().__init__(policy or CallPolicy(), secrets=[token])
        self.queue_url = queue_url
        self.api_url = api_base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"}

    @classmethod
    def from_env(cls) -> BeamBackend:
        # The seed API's BEAM_POLL_INTERVAL_MS / BEAM_POLL_TIMEOUT_SEC are the defaults of the
        # generic PROVIDER_POLL_INTERVAL_SEC / PROVIDER_CHUNK_TIMEOUT_SEC here.
        poll = env_float("BEAM_POLL_INTERVAL_MS", 5000.0, minimum=10.0) / 1000.0
        timeout = env_float("BEAM_POLL_TIMEOUT_SEC", 3600.0, minimum=1.0)
        return cls(token=required_env("BEAM_TOKEN", "beam"), queue_url=required_env("BEAM_QUEUE_URL", "beam"),
                   api_base_url=env_str("BEAM_API_BASE_URL", DEFAULT_API_BASE_URL),
                   policy=CallPolicy.from_env(poll_interval_default=poll, chunk_timeout_default=timeout))

    def submit(self, job: ChunkJob, inputs: ChunkInputs, scope: CallScope) -> str:
        body = {
            "prompt": job.prompt or DEFAULT_PROMPT,
            "width": job.width,
            "height": job.height,
            "force_offload": job.force_offload,
            "image_base64": inputs.image_base64,
            "wav_base64": inputs.wav_base64,
        }
        response = self.http.request("POST", self.queue_url, scope, what="submit", headers=self.headers,
                                     json=body, idempotent=False)
        answer = json_object(response, self.name, "submit")
        task_id = answer.get("task_id")
        if not isinstance(task_id, str) or not task_id:
            raise ProviderError(f"beam: submit returned no task_id ({answer.get('error') or answer})")
        return task_id

    def poll(self, provider_id: str, scope: CallScope) -> JobState:
        what = f"status of task {provider_id}"
        response = self.http.request("GET", f"{self.api_url}/v2/task/{provider_id}/", scope, what=what,
                                     headers=self.headers)
        answer = json_object(response, self.name, what)
        status = str(answer.get("status", ""))
        phase = PHASES.get(status)
        if phase is None:
            raise ProviderError(f"beam: task {provider_id} has an unknown status {status!r}")
        error = str(answer.get("error") or "")
        if phase is Phase.DONE:
            outputs = answer.get("outputs") or []
            url = next((o.get("url") for o in outputs if isinstance(o, dict) and o.get("url")), "")
            if not url:
                return JobState(Phase.FAILED, status, error="completed without an output URL")
            return JobState(phase, status, video_url=url)
        return JobState(phase, status, error=error, rerun_by_provider=status == "RETRY")

    def cancel(self, provider_id: str, scope: CallScope) -> bool:
        self.http.request("DELETE", f"{self.api_url}/v2/task/cancel/", scope, what=f"cancel of task {provider_id}",
                          headers=self.headers, json={"task_ids": [provider_id]})
        return True
