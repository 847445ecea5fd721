"""The generator service process: load the backend once, serve chunks, drain on SIGTERM.

Lifecycle (as model servers such as KServe or Triton do it): the port opens at once but health
stays NOT_SERVING until the backend has loaded in the background; on SIGTERM health goes back
to NOT_SERVING, new chunks are refused with UNAVAILABLE, the chunks in hand finish, then the
process exits 0. A backend that fails to load makes the process exit 1.

Env: BIND_HOST, GRPC_PORT (50052), GENERATOR_BACKEND (preview|infinitetalk|runpod|beam|modal),
GENERATOR_CAPACITY (concurrent chunks; default 1, one per device, or 4 provider jobs for the
remote providers), GENERATOR_PRESETS (the presets served, a subset of what the backend can do, e.g.
`quality` for weights that are not step-distilled; default all it can), TEMP_DIR, LOG_LEVEL, and
each backend's own.

SERVING means warm: after loading, the backend's warm_up() compiles and runs what the first chunk
would otherwise wait for (InfiniteTalk: its warm-up buckets), so the first job runs at the steady
speed.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from infinitetalk.v1 import generator_pb2, generator_pb2_grpc
from itk_common.catalogue import PRESET_NAMES
from itk_common.config import ConfigError, env_int, env_str
from itk_common.grpc_server import GrpcService, exit_if_port_unavailable
from itk_common.logs import setup_logging
from itk_common.scratch import ScratchRoot
from itk_common.shutdown import stop_on_signals, wait_until_set

from .admission import ChunkSlots
from .backend import Backend
from .backend_registry import DEFAULT_BACKEND, UnknownBackendError, create_backend
from .servicer import GeneratorServicer

log = logging.getLogger("itk_generator.server")

SERVICE_NAME = generator_pb2.DESCRIPTOR.services_by_name["Generator"].full_name
DEFAULT_PORT = 50052
SCRATCH_PREFIX = "itk-generator-"


class GeneratorServer(GrpcService):
    """A GrpcService whose health follows the backend's loading and the service's draining."""

    def __init__(self, backend: Backend, capacity: int, temp_dir: Path,
                 on_load_failed: Callable[[BaseException], None] | None = None,
                 presets: tuple[str, ...] | None = None) -> None:
        super().__init__([SERVICE_NAME], max_workers=max(16, 4 * capacity))
        self.slots = ChunkSlots(capacity)
        # Chunks spool under this process's own scratch folder; killed generators' are removed now.
        self.scratch = ScratchRoot(temp_dir, SCRATCH_PREFIX)
        self.generator = GeneratorServicer(backend, self.slots, self.scratch.path, presets)
        generator_pb2_grpc.add_GeneratorServicer_to_server(self.generator, self.server)
        self.on_load_failed = on_load_failed
        self.loading_done = threading.Event()
        # Makes "loaded -> SERVING" and "draining -> NOT_SERVING" exclusive, whichever comes last wins.
        self._health_lock = threading.Lock()

    def start(self) -> None:
        super().start()
        threading.Thread(target=self._load_backend, name="load-backend", daemon=True).start()

    def _load_backend(self) -> None:
        backend = self.generator.backend
        try:
            log.info("loading backend %s", backend.name)
            backend.load()
            started = time.monotonic()
            backend.warm_up()
            log.info("backend %s warmed up in %.1f s", backend.name, time.monotonic() - started)
        except Exception as exc:
            log.exception("backend %s failed to load: %s", backend.name, exc)
            self.generator.load_error = exc
            self.loading_done.set()
            if self.on_load_failed is not None:
                self.on_load_failed(exc)
            return
        with self._health_lock:
            self.generator.ready.set()
            if not self.slots.draining:
                self.set_serving(True)
        self.loading_done.set()
        log.info("backend %s loaded on %s; serving", backend.name, backend.device)

    def start_draining(self) -> None:
        """Stop taking chunks and report NOT_SERVING; chunks in hand go on."""
        with self._health_lock:
            self.slots.start_draining()
            self.set_serving(False)

    def drain(self, timeout: float | None = None) -> bool:
        """start_draining(), then wait for the chunks in hand; False if `timeout` passed first."""
        self.start_draining()
        return self.slots.wait_idle(timeout)


def start_server(host: str = "127.0.0.1", port: int = 0, backend: Backend | None = None,
                 capacity: int = 1, temp_dir: Path | None = None,
                 on_load_failed: Callable[[BaseException], None] | None = None,
                 presets: tuple[str, ...] | None = None) -> tuple[GeneratorServer, int]:
    """Build, bind and start the service; the backend loads in the background (see `loading_done`).

    `backend=None` builds the one GENERATOR_BACKEND names (default preview).
    """
    if backend is None:
        backend = create_backend(env_str("GENERATOR_BACKEND", DEFAULT_BACKEND))
    server = GeneratorServer(backend, capacity, temp_dir or Path(tempfile.gettempdir()), on_load_failed, presets)
    bound = server.bind(host, port)
    server.start()
    return server, bound


def served_presets(raw: str) -> tuple[str, ...] | None:
    """GENERATOR_PRESETS: comma-separated catalogue presets; "" = whatever the backend serves."""
    names = tuple(name.strip().lower() for name in raw.split(",") if name.strip())
    unknown = [name for name in names if name not in PRESET_NAMES]
    if unknown:
        raise ConfigError(f"GENERATOR_PRESETS: unknown preset(s) {', '.join(unknown)}; "
                          f"known: {', '.join(PRESET_NAMES)}")
    return names or None


def main() -> None:
    setup_logging("generator")
    try:
        host = env_str("BIND_HOST", "127.0.0.1")
        port = env_int("GRPC_PORT", DEFAULT_PORT, minimum=0)
        temp_dir = Path(env_str("TEMP_DIR", tempfile.gettempdir()))
        temp_dir.mkdir(parents=True, exist_ok=True)
        backend = create_backend(env_str("GENERATOR_BACKEND", DEFAULT_BACKEND))
        capacity = env_int("GENERATOR_CAPACITY", backend.default_capacity, minimum=1)
        presets = served_presets(env_str("GENERATOR_PRESETS", ""))
    except (ConfigError, UnknownBackendError) as exc:
        log.error("bad configuration: %s", exc)
        sys.exit(2)
    except Exception:
        log.exception("could not create the generator backend")
        sys.exit(1)

    stop = threading.Event()
    load_failed = threading.Event()

    def on_load_failed(_exc: BaseException) -> None:
        load_failed.set()
        stop.set()

    stop_on_signals(stop)
    with exit_if_port_unavailable(log):
        server, bound = start_server(host, port, backend, capacity, temp_dir, on_load_failed, presets)
    log.info("generator listening on %s:%d (backend %s, capacity %d)", host, bound, backend.name, capacity)
    wait_until_set(stop)
    if load_failed.is_set():
        log.error("exiting: backend %s failed to load", backend.name)
        server.stop(0)
        sys.exit(1)
    log.info("draining: finishing the chunks in hand, refusing new ones")
    server.drain()
    log.info("drained; stopping")
    server.stop(grace=5.0)
    server.scratch.close()
    backend.unload()


if __name__ == "__main__":
    main()
