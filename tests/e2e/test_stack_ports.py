"""The local stack picks its ports where no outgoing connection draws from, and starts again on
fresh ports when another process took one first."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
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


def test_a_port_someone_else_holds_is_named_with_its_variable(tmp_path: Path) -> None:
    """A port asked for and taken is an error that says which setting to change, not a stack
    trace, and the stack does not try again on the same port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind((HOST, 0))
        squatter.listen(1)
        taken = squatter.getsockname()[1]
        stack = Stack(tmp_path / "stack", generators=1, rest_port=taken)
        started = time.monotonic()
        with pytest.raises(RuntimeError) as raised:
            stack.start()
        assert time.monotonic() - started < 60
        message = str(raised.value)
        assert f"cannot listen on {HOST}:{taken}: the port is in use by another program; set PORT to a free port" \
            in message, message
        assert "Traceback" not in message
        log = (tmp_path / "stack" / "logs" / "gateway.log").read_text()
        assert log.count("set PORT to a free port") == 1, log

        env = {**os.environ, "BIND_HOST": HOST, "GRPC_PORT": str(taken)}
        splitter = subprocess.run([sys.executable, "-m", "itk_splitter.server"], env=env, capture_output=True,
                                  text=True, timeout=60)
    assert splitter.returncode == 1
    assert "the port is in use by another program; set GRPC_PORT to a free port" in splitter.stderr, splitter.stderr
    assert "Traceback" not in splitter.stderr
