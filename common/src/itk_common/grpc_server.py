"""gRPC server plumbing every service uses: health, reflection, message limits, graceful stop.

Health follows grpc.health.v1: the overall status ("") and each service's own name are set
together, so Kubernetes' native gRPC probes and `grpcurl` see the same thing.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from .constants import GRPC_MAX_MESSAGE_BYTES
from .shutdown import stop_on_signals, wait_until_set

log = logging.getLogger(__name__)

CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", GRPC_MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", GRPC_MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]

SERVER_OPTIONS = [
    *CHANNEL_OPTIONS,
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.so_reuseport", 0),
]


class PortUnavailableError(OSError):
    """A port this process was told to listen on is taken (or not allowed): said so, with the
    variable that chooses it, instead of a stack trace."""

    def __init__(self, host: str, port: int, variable: str, reason: str = "in use by another program") -> None:
        super().__init__(f"cannot listen on {host}:{port}: the port is {reason}; set {variable} to a free port")


@contextlib.contextmanager
def exit_if_port_unavailable(service_log: logging.Logger) -> Iterator[None]:
    """Around a service's start: a port it cannot have ends the process with the one-line reason
    (exit status 1), not a stack trace."""
    try:
        yield
    except PortUnavailableError as exc:
        service_log.error("%s", exc)
        sys.exit(1)


class GrpcService:
    """A running gRPC server with health checking and reflection for the given services."""

    def __init__(self, service_names: Iterable[str], *, max_workers: int = 16,
                 interceptors: Iterable[grpc.ServerInterceptor] = ()) -> None:
        self.service_names = list(service_names)
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=max_workers), options=SERVER_OPTIONS,
            interceptors=list(interceptors),
        )
        self.health = health.HealthServicer(experimental_non_blocking=True)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            [*self.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], self.server
        )
        self.port: int | None = None
        self.set_serving(False)

    def bind(self, host: str, port: int) -> int:
        """Listen on host:port (port 0 picks a free one) and return the bound port; raises
        PortUnavailableError naming GRPC_PORT when the port cannot be had."""
        try:
            bound = self.server.add_insecure_port(f"{host}:{port}")
        except RuntimeError as exc:  # grpcio's "Failed to bind to address"
            raise PortUnavailableError(host, port, "GRPC_PORT") from exc
        if bound == 0:
            raise PortUnavailableError(host, port, "GRPC_PORT")
        self.port = bound
        return bound

    def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ["", *self.service_names]:
            self.health.set(name, status)

    def start(self) -> None:
        self.server.start()

    def serve(self, host: str, port: int) -> int:
        """Bind, start and report SERVING at once: for services that have nothing to load first."""
        bound = self.bind(host, port)
        self.start()
        self.set_serving(True)
        return bound

    def stop(self, grace: float | None = None) -> None:
        self.set_serving(False)
        self.server.stop(grace).wait()

    def run_until_signal(
        self, on_term: Callable[[], None] | None = None, grace: float = 30.0
    ) -> None:
        """Block until SIGTERM/SIGINT; then run `on_term` (e.g. drain work) and stop."""
        stopping = threading.Event()
        stop_on_signals(stopping)
        wait_until_set(stopping)
        self.set_serving(False)
        if on_term is not None:
            on_term()
        self.server.stop(grace).wait()


def insecure_channel(target: str) -> grpc.Channel:
    return grpc.insecure_channel(target, options=CHANNEL_OPTIONS)


def wait_for_serving(target: str, timeout: float = 30.0, service: str = "") -> None:
    """Block until the server at `target` reports SERVING for `service`; raise TimeoutError otherwise."""
    import time

    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    with insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError as exc:
                last_error = exc
            time.sleep(0.1)
    raise TimeoutError(f"{target} not serving after {timeout:.0f}s (last error: {last_error})")
