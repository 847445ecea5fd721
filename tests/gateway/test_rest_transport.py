"""The REST bridge's connection handling: answers on a kept-alive connection are not held back."""

from __future__ import annotations

import http.client
import socket
import statistics
import time

from itk_gateway.server import Gateway, rest_listener


def test_listener_turns_nagle_off_for_accepted_connections() -> None:
    listener = rest_listener("127.0.0.1", 0)
    try:
        assert listener.proto == socket.IPPROTO_TCP
        with socket.create_connection(listener.getsockname()):
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        listener.close()


def test_kept_alive_requests_are_answered_without_delay(gateway: Gateway) -> None:
    # With Nagle's algorithm on, every answer after the first on one connection waited for the
    # client's delayed ACK: about 40 ms each. Without it a /health round trip takes well under 5 ms.
    conn = http.client.HTTPConnection("127.0.0.1", gateway.rest_port, timeout=10)
    times = []
    for _ in range(40):
        started = time.perf_counter()
        conn.request("GET", "/health")
        reply = conn.getresponse()
        assert reply.status == 200 and reply.read() == b'{"status":"ok"}'
        times.append(time.perf_counter() - started)
    conn.close()
    print(f"median {statistics.median(times) * 1000:.2f} ms per kept-alive request")
    assert statistics.median(times) < 0.02, f"median {statistics.median(times) * 1000:.1f} ms per request"
