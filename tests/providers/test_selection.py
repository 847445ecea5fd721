"""Which pool a request's `provider` selects when provider pools are or are not configured."""

from __future__ import annotations

import pytest

from itk_gateway.errors import InvalidInputError
from itk_gateway.jobs.validation import OptionRules, resolve_pool


def rules(*pools: str) -> OptionRules:
    return OptionRules(pools=["infinitetalk", *pools], default_pool="infinitetalk",
                       aliases={"runpod": "infinitetalk"}, s3_enabled=False)


def test_a_configured_provider_pool_wins_over_the_alias() -> None:
    configured = rules("runpod", "beam", "modal")
    assert [resolve_pool(name, configured) for name in ("runpod", "beam", "modal", "")] == [
        "runpod", "beam", "modal", "infinitetalk"]


def test_runpod_means_the_default_pool_when_not_configured() -> None:
    assert resolve_pool("runpod", rules("beam")) == "infinitetalk"


@pytest.mark.parametrize("provider", ["beam", "modal"])
def test_unconfigured_beam_or_modal_is_refused_listing_the_configured_ones(provider: str) -> None:
    with pytest.raises(InvalidInputError) as raised:
        resolve_pool(provider, rules("runpod"))
    assert str(raised.value) == (f"provider: {provider} is not configured on this deployment; "
                                 "configured providers: infinitetalk, runpod")
    with pytest.raises(InvalidInputError, match=r"configured providers: infinitetalk, runpod \(= infinitetalk\)"):
        resolve_pool(provider, rules())
