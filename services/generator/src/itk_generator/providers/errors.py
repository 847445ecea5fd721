"""Errors of provider backends. Messages name the provider and what went wrong, never a credential."""

from __future__ import annotations


class ProviderError(Exception):
    """A provider call or a provider job failed; the chunk fails on this attempt."""


class ProviderJobLostError(ProviderError):
    """The provider no longer knows a job it accepted (404 on its status)."""


class ProviderJobEndedError(ProviderError):
    """The provider ended the job without a video (failed, cancelled, timed out, expired)."""


class ProviderDeadlineError(ProviderError):
    """The chunk's overall deadline passed while waiting for the provider."""


def scrub(text: str, secrets: list[str]) -> str:
    """`text` with every secret value replaced by ***, so an echoed header never reaches a job's error."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
