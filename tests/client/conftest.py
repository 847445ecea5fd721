"""The in-process gateway fixtures of the gateway's tests, for the CLI's message tests."""

from tests.gateway.conftest import make_gateway, services  # noqa: F401 - fixtures
