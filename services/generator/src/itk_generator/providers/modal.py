"""The Modal InfiniteTalk app (submit / poll web endpoints behind Modal proxy auth).

POST MODAL_SUBMIT_URL {"image": <URL>, "audio1": <URL>, "prompt": ...} -> {"call_id"};
GET MODAL_RESULT_URL?call_id=... -> 202 while it runs, 200 with the MP4 when done. Both carry the
headers Modal-Key / Modal-Secret (a proxy auth token: MODAL_TOKEN_ID / MODAL_TOKEN_SECRET).

The app downloads its inputs by URL, so each chunk's image and WAV are staged in S3 behind
short-lived presigned URLs (`staging.py`). The app takes no size: it renders at its own
resolution and the generator resizes to the requested one. Its API has no cancel endpoint;
MODAL_CANCEL_URL, when set, is called as POST <url>?call_id=... with the same headers (an endpoint
that calls `modal.FunctionCall.from_id(call_id).cancel()`; see docs/backends-and-providers.md), else a cancelled chunk
only stops polling and the Modal call runs to its end.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from itk_common.config import env_str

from ..backend import ChunkJob
from .base import DEFAULT_PROMPT, ChunkInputs, JobState, Phase, ProviderBackend
from .errors import ProviderError
from .http import CallScope, json_object
from .policy import CallPolicy, required_env
from .staging import S3Staging, StagedInputs


class ModalBackend(ProviderBackend):
    name = "modal"

    def __init__(self, submit_url: str, result_url: str, token_id: str, token_secret: str,
                 staging: S3Staging, cancel_url: str = "", policy: CallPolicy | None = None) -> None:
        super().__init__(policy or CallPolicy(), secrets=[token_id, token_secret])
        self.submit_url, self.result_url, self.cancel_url = submit_url, result_url, cancel_url
        self.headers = {"Modal-Key": token_id, "Modal-Secret": token_secret}
        self.staging = staging
        self._s3 = None

    @classmethod
    def from_env(cls) -> ModalBackend:
        return cls(submit_url=required_env("MODAL_SUBMIT_URL", "modal"),
                   result_url=required_env("MODAL_RESULT_URL", "modal"),
                   token_id=required_env("MODAL_TOKEN_ID", "modal"),
                   token_secret=required_env("MODAL_TOKEN_SECRET", "modal"),
                   staging=S3Staging.from_env("modal"), cancel_url=env_str("MODAL_CANCEL_URL", ""),
                   policy=CallPolicy.from_env())

    def load(self) -> None:
        self._s3 = self.staging.client()

    @contextlib.contextmanager
    def staged(self, job: ChunkJob, inputs: ChunkInputs, scope: CallScope) -> Iterator[ChunkInputs]:
        if self._s3 is None:
            self.load()
        staged = StagedInputs(self.staging, self._s3, job.job_id, job.chunk_index)
        try:
            try:
                image_url, wav_url = staged.put_image(inputs.image), staged.put_wav(inputs.wav)
            except Exception as exc:
                raise ProviderError(f"modal: could not stage the chunk's inputs in s3://{self.staging.bucket}: "
                                    f"{type(exc).__name__}: {exc}") from exc
            yield ChunkInputs(image=inputs.image, wav=inputs.wav, image_url=image_url, wav_url=wav_url)
        finally:
            staged.delete()

    def submit(self, job: ChunkJob, inputs: ChunkInputs, scope: CallScope) -> str:
        body = {"image": inputs.image_url, "audio1": inputs.wav_url, "prompt": job.prompt or DEFAULT_PROMPT}
        response = self.http.request("POST", self.submit_url, scope, what="submit", headers=self.headers, json=body,
                                     idempotent=False)
        call_id = json_object(response, self.name, "submit").get("call_id")
        if not isinstance(call_id, str) or not call_id:
            raise ProviderError("modal: submit returned no call_id")
        return call_id

    def poll(self, provider_id: str, scope: CallScope) -> JobState:
        response = self.http.request("GET", self.result_url, scope, what=f"result of call {provider_id}",
                                     headers=self.headers, params={"call_id": provider_id}, ok=(200, 202))
        if response.status_code == 202:
            return JobState(Phase.RUNNING, "running")
        if not response.content:
            return JobState(Phase.FAILED, "done", error="the result is empty")
        return JobState(Phase.DONE, "done", video=response.content)

    def cancel(self, provider_id: str, scope: CallScope) -> bool:
        if not self.cancel_url:
            return False
        self.http.request("POST", self.cancel_url, scope, what=f"cancel of call {provider_id}",
                          headers=self.headers, params={"call_id": provider_id}, ok=(200, 202, 204))
        return True
