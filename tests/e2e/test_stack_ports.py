"""The local stack picks its ports where no outgoing connection draws from, and starts again on
fresh ports when another process took one first."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from scripts.stack import HOST, Stack, _ephemeral_range, free_port

pytestmark = pytest.mark.e2e


def test_ports_are_below_the_ephemeral_range() -> None:
    low, _ = _ephemeral_range()
    ports = {free_port() for _ in range(20)}
    assert all(port < low for port in ports), ports
    assert len(ports) > 1


def test_a_port_taken_before_the_gateway_binds_it_is_picked_again(tmp_path: Path) -> None:
    stack = Stack(tmp_path / "stack", generators=1)
    taken = stack.services["gateway"].port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind((HOST, taken))
        squatter.listen(1)
        with stack:
            assert stack.services["gateway"].port != taken
            assert all(service.alive() for service in stack.services.values())
    log = (tmp_path / "stack" / "logs" / "gateway.log").read_text()
    assert "Failed to bind" in log or "Address already in use" in log
