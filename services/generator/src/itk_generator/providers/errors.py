"""Errors of provider backends. Messages name the provider and what went wrong, never a credential."""

from __future__ import annotations


class ProviderError(Exception):
    """A provider call or a provider job failed; the chunk fails on this attempt."""


class ProviderJobLostError(ProviderError):
    """The provider no longer knows a job it accepted (404 on its status)."""


class ProviderJobEndedError(ProviderError):
    """The provider ended the job without a video (failed, cancelled, timed out, expired).

    `rerun_by_provider`: the provider would run it again on its own (Beam's RETRY), so it must
    be cancelled there for the gateway's retry to be the only one.
    """

    def __init__(self, message: str, rerun_by_provider: bool = False) -> None:
        super().__init__(message)
        self.rerun_by_provider = rerun_by_provider


class SubmitOutcomeUnknownError(ProviderError):
    """A submit reached the provider (or may have) but its answer was lost: the provider may have
    started a job whose id we never learnt. It is not sent again, so no second job renders (and
    bills) beside one nobody polls or cancels."""


class ProviderDeadlineError(ProviderError):
    """The chunk's overall deadline passed while waiting for the provider."""


def scrub(text: str, secrets: list[str]) -> str:
    """`text` with every secret value replaced by ***, so an echoed header never reaches a job's error."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
