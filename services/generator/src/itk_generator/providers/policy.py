"""How a provider backend talks to its provider: timeouts, retries, polling and the chunk deadline."""

from __future__ import annotations

from dataclasses import dataclass

from itk_common.config import ConfigError, env_float, env_int, env_str


@dataclass(frozen=True)
class CallPolicy:
    # One HTTP call (connect, each read) may take this long before it counts as a transport error.
    request_timeout_sec: float = 30.0
    # Transport errors, 429 and 5xx are retried this many times, after 1, 2, 4 ... backoff units
    # (the seed API's client: 3 retries, 1-2-4 s).
    retries: int = 3
    retry_backoff_sec: float = 1.0
    # Pause between two status polls of one provider job.
    poll_interval_sec: float = 5.0
    # A chunk whose provider job has not finished this long after submission fails (and is
    # cancelled on the provider), so a stuck provider job cannot hold a slot forever.
    chunk_timeout_sec: float = 3600.0
    # How much shorter than the chunk's audio the provider's video may be; the missing end holds
    # the last frame. InfiniteTalk deployments round the frame count down to 4n+1 below the
    # audio's length (the Modal app leaves 5-8 frames out), which this covers.
    max_pad_sec: float = 1.0
    # Reference images with a longer side are scaled down to it before they are sent (reference.py).
    max_image_side: int = 1280

    @classmethod
    def from_env(cls, poll_interval_default: float = 5.0, chunk_timeout_default: float = 3600.0) -> CallPolicy:
        return cls(
            request_timeout_sec=env_float("PROVIDER_REQUEST_TIMEOUT_SEC", 30.0, minimum=0.1),
            retries=env_int("PROVIDER_RETRIES", 3, minimum=0),
            retry_backoff_sec=env_float("PROVIDER_RETRY_BACKOFF_SEC", 1.0, minimum=0.0),
            poll_interval_sec=env_float("PROVIDER_POLL_INTERVAL_SEC", poll_interval_default, minimum=0.01),
            chunk_timeout_sec=env_float("PROVIDER_CHUNK_TIMEOUT_SEC", chunk_timeout_default, minimum=1.0),
            max_pad_sec=env_float("PROVIDER_MAX_PAD_SEC", 1.0, minimum=0.0),
            max_image_side=env_int("PROVIDER_MAX_IMAGE_SIDE", 1280, minimum=64),
        )


def required_env(name: str, backend: str) -> str:
    """A setting the backend cannot work without; a ConfigError naming it when it is unset."""
    value = env_str(name, "")
    if not value:
        raise ConfigError(f"{name} must be set for GENERATOR_BACKEND={backend}")
    return value
