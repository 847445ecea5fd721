"""RunPod serverless endpoints running an InfiniteTalk worker, as the seed API's client calls them.

The worker renders one person or two (`person_count` "single" / "multi", person 2's track as
`wav_base64_2`); it takes no face boxes, so a two-person chunk's boxes stay with our own
generators and the worker finds the speakers itself.

POST {base}/{endpoint}/run {"input": {...}} -> {id, status}; GET {base}/{endpoint}/status/{id}
-> {id, status, output: {video: <base64 MP4>}, error}; POST {base}/{endpoint}/cancel/{id}.
Authorization: Bearer RUNPOD_API_KEY.
"""

from __future__ import annotations

import base64
import binascii

from itk_common.config import env_str

from ..backend import ChunkJob
from .base import ChunkInputs, JobState, Phase, ProviderBackend
from .errors import ProviderError
from .http import CallScope, json_object
from .policy import CallPolicy, required_env

DEFAULT_BASE_URL = "https://api.runpod.ai/v2"
# The seed API's RunPod client sends this prompt when a job has none.
RUNPOD_DEFAULT_PROMPT = "high quality, realistic, speaking naturally"
PHASES = {
    "IN_QUEUE": Phase.QUEUED,
    "IN_PROGRESS": Phase.RUNNING,
    "RUNNING": Phase.RUNNING,
    "COMPLETED": Phase.DONE,
    "FAILED": Phase.FAILED,
    "CANCELLED": Phase.FAILED,
    "TIMED_OUT": Phase.FAILED,
}


class RunPodBackend(ProviderBackend):
    name = "runpod"

    def __init__(self, api_key: str, endpoint_id: str, base_url: str = DEFAULT_BASE_URL,
                 policy: CallPolicy | None = None) -> None:
        super().__init__(policy or CallPolicy(), secrets=[api_key])
        self.endpoint_url = f"{base_url.rstrip('/')}/{endpoint_id}"
        self.headers = {"Authorization": f"Bearer {api_key}"}

    @classmethod
    def from_env(cls) -> RunPodBackend:
        return cls(api_key=required_env("RUNPOD_API_KEY", "runpod"),
                   endpoint_id=required_env("RUNPOD_ENDPOINT_ID", "runpod"),
                   base_url=env_str("RUNPOD_BASE_URL", DEFAULT_BASE_URL), policy=CallPolicy.from_env())

    @property
    def person_counts(self) -> tuple[int, ...]:
        return (1, 2)

    def submit(self, job: ChunkJob, inputs: ChunkInputs, scope: CallScope) -> str:
        body = {"input": {
            "input_type": "image",
            "person_count": "multi" if inputs.wav_2 else "single",
            "prompt": job.prompt or RUNPOD_DEFAULT_PROMPT,
            "image_base64": inputs.image_base64,
            "wav_base64": inputs.wav_base64,
            "width": job.width,
            "height": job.height,
            "network_volume": False,
            "force_offload": job.force_offload,
        }}
        if inputs.wav_2:
            body["input"]["wav_base64_2"] = inputs.wav_2_base64
        response = self.http.request("POST", f"{self.endpoint_url}/run", scope, what="submit",
                                     headers=self.headers, json=body, idempotent=False)
        answer = json_object(response, "runpod", "submit")
        job_id = answer.get("id")
        if not isinstance(job_id, str) or not job_id:
            raise ProviderError(f"runpod: submit returned no job id ({answer.get('error') or answer})")
        return job_id

    def poll(self, provider_id: str, scope: CallScope) -> JobState:
        response = self.http.request("GET", f"{self.endpoint_url}/status/{provider_id}", scope,
                                     what=f"status of job {provider_id}", headers=self.headers)
        answer = json_object(response, "runpod", f"status of job {provider_id}")
        status = str(answer.get("status", ""))
        phase = PHASES.get(status)
        if phase is None:
            raise ProviderError(f"runpod: job {provider_id} has an unknown status {status!r}")
        error = answer.get("error") or ""
        if phase is Phase.DONE:
            output = answer.get("output") or {}
            encoded = output.get("video") if isinstance(output, dict) else None
            if not encoded:
                return JobState(Phase.FAILED, status, error=f"completed without output.video {error}".strip())
            return JobState(phase, status, video=_decode_video(encoded, provider_id))
        return JobState(phase, status, error=str(error))

    def cancel(self, provider_id: str, scope: CallScope) -> bool:
        self.http.request("POST", f"{self.endpoint_url}/cancel/{provider_id}", scope,
                          what=f"cancel of job {provider_id}", headers=self.headers)
        return True


def _decode_video(encoded: str, provider_id: str) -> bytes:
    # Some workers send a data URI ("data:video/mp4;base64,...").
    payload = encoded.split(",", 1)[1] if encoded.startswith("data:") else encoded
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProviderError(f"runpod: job {provider_id}'s output.video is not base64") from exc

