"""Start the four services as separate processes on loopback ports, and stop them again.

Used by `make up`, `make run`, the end-to-end tests and the benchmarks, so all of them exercise
the same processes a deployment runs (`python -m <service>.server`), not in-process shortcuts.

    python scripts/stack.py up [--generators 2] [--backend preview]

`up` keeps the stack running as Kubernetes keeps pods running: a service that exits is started
again on its own port (after a pause that doubles while it keeps dying at once), and the restart
is printed, so a killed generator shows up as retried chunks, not as an outage.
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

HOST = "127.0.0.1"


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A loopback port that is free now and that no outgoing connection will take.

    Asking the kernel for port 0 hands out a port from the ephemeral range, the same range every
    outgoing connection draws its local port from; between this check and the service's bind, a
    client connection (the gateway dialling a generator, say) could take it. Ports below that
    range are only ever taken by a bind, so picking one at random there leaves only the tiny chance
    that another process picks the same one in that moment, which `Stack.start` retries."""
    low, _ = _ephemeral_range()
    floor = 10000 if low > 12000 else 1024
    for _ in range(200):
        port = random.randrange(floor, low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((HOST, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _since_start(service: ServiceProcess) -> str:
    with service.log_path.open("rb") as log:
        log.seek(service.log_offset)
        return log.read().decode(errors="replace")


def _lost_its_port(service: ServiceProcess) -> bool:
    # Every service says so in these words (itk_common.grpc_server.PortUnavailableError).
    return "the port is in use" in _since_start(service)


@dataclass
class ServiceProcess:
    name: str
    module: str
    port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0
    # Where this start's lines begin in the log, which keeps every start's lines.
    log_offset: int = 0

    @property
    def target(self) -> str:
        return f"{HOST}:{self.port}"

    def start(self) -> None:
        env = {**os.environ, "BIND_HOST": HOST, "GRPC_PORT": str(self.port), **self.env}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.log_offset = log.tell()
        # A new session per service so a signal sent to one never reaches the others.
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module], env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.started_at = time.monotonic()
        log.close()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL: what a crashed pod or an evicted node looks like to the rest of the system."""
        self.stop(signal.SIGKILL)

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Stack:
    workdir: Path
    generators: int = 2
    backend: str = "preview"
    generator_env: dict[str, str] = field(default_factory=dict)
    gateway_env: dict[str, str] = field(default_factory=dict)
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    rest_port: int = 0
    # When set, the gateway reads its generator targets from this file and re-reads it as it
    # re-resolves, the way it follows a headless Service's pods on Kubernetes.
    targets_file: Path | None = None
    # Whether the REST port was picked here (so it may be picked again) or asked for.
    rest_port_picked: bool = False

    def __post_init__(self) -> None:
        logs = self.workdir / "logs"
        self.services["splitter"] = ServiceProcess("splitter", "itk_splitter.server", free_port(), {},
                                                   logs / "splitter.log")
        self.services["stitcher"] = ServiceProcess(
            "stitcher", "itk_stitcher.server", free_port(), {"TEMP_DIR": str(self.workdir / "stitcher")},
            logs / "stitcher.log")
        for index in range(self.generators):
            self.add_generator(index)
        self.rest_port_picked = not self.rest_port
        self.rest_port = self.rest_port or free_port()
        self.services["gateway"] = ServiceProcess("gateway", "itk_gateway.server", free_port(), {},
                                                  logs / "gateway.log")

    def add_generator(self, index: int) -> ServiceProcess:
        name = f"generator-{index}"
        service = ServiceProcess(
            name, "itk_generator.server", free_port(),
            {"GENERATOR_BACKEND": self.backend, "TEMP_DIR": str(self.workdir / name), **self.generator_env},
            self.workdir / "logs" / f"{name}.log")
        self.services[name] = service
        return service

    @property
    def generator_services(self) -> list[ServiceProcess]:
        return [s for n, s in self.services.items() if n.startswith("generator-")]

    @property
    def rest_url(self) -> str:
        return f"http://{HOST}:{self.rest_port}"

    @property
    def grpc_target(self) -> str:
        return self.services["gateway"].target

    def _gateway_env(self) -> dict[str, str]:
        env = {
            "PORT": str(self.rest_port),
            "SPLITTER_TARGET": self.services["splitter"].target,
            "STITCHER_TARGET": self.services["stitcher"].target,
            "DATA_DIR": str(self.workdir / "gateway-data"),
        }
        if self.targets_file is not None:
            self.write_targets()
            env["GENERATOR_TARGETS_FILE"] = str(self.targets_file)
        else:
            env["GENERATOR_TARGETS"] = ",".join(g.target for g in self.generator_services)
        return {**env, **self.gateway_env}

    def write_targets(self) -> None:
        """Publish the running generators, as a DNS answer for a headless Service would."""
        assert self.targets_file is not None
        live = [g.target for g in self.generator_services if g.process is None or g.alive()]
        temporary = self.targets_file.with_suffix(".tmp")
        temporary.write_text("".join(f"{target}\n" for target in live))
        temporary.replace(self.targets_file)

    def scale_up(self) -> ServiceProcess:
        """Start one more generator and publish it (a new pod becoming ready)."""
        from itk_common.grpc_server import wait_for_serving

        service = self.add_generator(max((int(s.name.split("-")[1]) for s in self.generator_services),
                                         default=-1) + 1)
        service.start()
        wait_for_serving(service.target, timeout=60)
        if self.targets_file is not None:
            self.write_targets()
        return service

    def evict(self, service: ServiceProcess) -> int | None:
        """Unpublish a generator, then SIGTERM it: it drains the chunk in hand and exits."""
        del self.services[service.name]
        if self.targets_file is not None:
            self.write_targets()
        return service.stop(signal.SIGTERM, timeout=120)

    def start(self, timeout: float = 120.0, attempts: int = 3) -> None:
        """Start every service and wait until all serve.

        A service that lost its port to another process between `free_port` and its own bind
        exits at once; then every service gets fresh ports and the stack starts again."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, attempts + 1):
            self.services["gateway"].env = self._gateway_env()
            for service in self.services.values():
                service.start()
            try:
                self._wait_up(time.monotonic() + timeout)
                return
            except Exception:
                failed = [s for s in self.services.values() if not s.alive()]
                details = "\n".join(f"--- {s.name} ---\n{s.log_tail()}"
                                    for s in failed or self.services.values())
                self.stop()
                asked_port_taken = not self.rest_port_picked and "set PORT to" in _since_start(self.services["gateway"])
                if attempt == attempts or asked_port_taken or not any(_lost_its_port(s) for s in failed):
                    raise RuntimeError(f"stack did not come up:\n{details}") from None
                self._pick_new_ports()

    def _wait_up(self, deadline: float) -> None:
        from itk_common.grpc_server import wait_for_serving

        for service in self.services.values():
            # Short waits in a loop, so a service that died at once is seen at once.
            while True:
                if not service.alive():
                    raise RuntimeError(f"{service.name} exited")
                try:
                    wait_for_serving(service.target, timeout=min(2.0, max(0.1, deadline - time.monotonic())))
                    break
                except TimeoutError:
                    if time.monotonic() > deadline:
                        raise
        self.wait_rest(deadline)

    def _pick_new_ports(self) -> None:
        for service in self.services.values():
            service.port = free_port()
            service.process = None
        if self.rest_port_picked:
            self.rest_port = free_port()

    def wait_rest(self, deadline: float) -> None:
        while True:
            try:
                with urllib.request.urlopen(f"{self.rest_url}/health", timeout=2) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("gateway REST bridge did not answer /health")
            time.sleep(0.1)

    def restart_gateway(self, timeout: float = 60.0) -> None:
        """Stop the gateway hard (SIGKILL) and start a fresh process on the same data directory."""
        from itk_common.grpc_server import wait_for_serving

        gateway = self.services["gateway"]
        gateway.kill()
        gateway.start()
        deadline = time.monotonic() + timeout
        wait_for_serving(gateway.target, timeout=timeout)
        self.wait_rest(deadline)

    def revive(self, now: float | None = None) -> list[str]:
        """Start again each service whose process exited; return what happened, one line each.

        A service that dies within 10 s of its last start waits 1, 2, 4 ... (at most 30) seconds
        before the next start, as Kubernetes' CrashLoopBackOff does."""
        now = time.monotonic() if now is None else now
        events = []
        for service in self.services.values():
            if service.process is None or service.alive():
                continue
            crash_looping = now - service.started_at < 10.0
            delay = min(30.0, 2.0 ** (service.restarts - 1)) if crash_looping and service.restarts else 0.0
            if now - service.started_at < delay:
                continue
            code = service.process.returncode
            how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            service.restarts = service.restarts + 1 if crash_looping else 1
            service.start()
            events.append(f"{service.name} exited ({how}); restarted it on {service.target} "
                          f"(restart {service.restarts})")
        return events

    def supervise(self, stopping: threading.Event, report=print, interval: float = 0.5) -> None:
        """Until `stopping` is set: restart services that exit and report each restart."""
        while not stopping.wait(interval):
            for event in self.revive():
                report(event)

    def stop(self) -> None:
        # The gateway first, so it does not see the others vanish and fail jobs on the way down.
        order = ["gateway", *[n for n in self.services if n != "gateway"]]
        for name in order:
            self.services[name].stop(timeout=20.0)

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def key_state(self) -> str:
        """Whether the gateway asks for API keys, as it says itself (GET /config)."""
        import json

        with urllib.request.urlopen(f"{self.rest_url}/config", timeout=10) as reply:
            required = bool(json.load(reply).get("api_key_required"))
        if required:
            return ("API keys are on: the web page asks for one in its API key field, "
                    "itk reads ITK_API_KEY, other clients send Authorization: Bearer <key>")
        return "API keys are off (loopback without API_KEYS): no key needed"

    def describe(self) -> str:
        rows = [f"  web page      {self.rest_url}/  (open it in a browser)",
                f"  REST bridge   {self.rest_url}  (OpenAPI: {self.rest_url}/docs)",
                f"  gRPC gateway  {self.grpc_target}"]
        rows += [f"  {s.name:<13} {s.target}" for n, s in self.services.items() if n != "gateway"]
        return "\n".join(rows)


DEMO_CHUNK_TARGET_SEC = 8.0
PRODUCTION_CHUNK_TARGET_SEC = 45.0


def paid_pool_warnings(environ: dict[str, str], chunk_target_sec: float) -> list[str]:
    """Demo piece lengths cost money on a GPU provider: each piece is one provider job, each cut a seam."""
    pools = sorted(name[len("GENERATOR_POOL_"):].lower() for name in environ if name.startswith("GENERATOR_POOL_"))
    pools += [entry.split("=", 1)[0].strip() for entry in environ.get("GENERATOR_POOLS", "").split(";") if "=" in entry]
    if not pools or chunk_target_sec >= PRODUCTION_CHUNK_TARGET_SEC:
        return []
    jobs = max(1, round(60 / chunk_target_sec))
    return [f"pools {', '.join(pools)} get {chunk_target_sec:g} s pieces (demonstration settings): on a GPU "
            f"provider each piece is one paid job, so a 1-minute recording becomes {jobs} provider jobs with "
            f"{jobs - 1} seams. For production piece lengths start it with CHUNK_TARGET_SEC="
            f"{PRODUCTION_CHUNK_TARGET_SEC:g} make up (and PREVIEW_COST_PER_AUDIO_SEC=0 for an unpaced preview)."]


def main() -> int:
    parser = argparse.ArgumentParser(description="Run the four services on loopback ports.")
    parser.add_argument("command", choices=["up"])
    parser.add_argument("--generators", type=int, default=2)
    parser.add_argument("--backend", default=os.environ.get("GENERATOR_BACKEND", "preview"))
    parser.add_argument("--workdir", type=Path, default=ROOT / "data" / "stack")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    # The preview renders in a blink; pacing it like a GPU lets the page show a video growing part by part.
    parser.add_argument("--pace", type=float, default=float(os.environ.get("PREVIEW_COST_PER_AUDIO_SEC", "0.5")),
                        help="preview seconds of render time per second of audio")
    # 8 s pieces show a video growing part by part on the page; production uses 45 (CHUNK_TARGET_SEC).
    parser.add_argument("--chunk-target-sec", type=float,
                        default=float(os.environ.get("CHUNK_TARGET_SEC", str(DEMO_CHUNK_TARGET_SEC))),
                        help="piece length in seconds (default: $CHUNK_TARGET_SEC or %(default)s)")
    args = parser.parse_args()
    secret = os.environ.get("WEBHOOK_SECRET") or "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    stack = Stack(args.workdir, generators=args.generators, backend=args.backend, rest_port=args.port,
                  generator_env={"PREVIEW_COST_PER_AUDIO_SEC": str(args.pace)},
                  gateway_env={"CHUNK_TARGET_SEC": str(args.chunk_target_sec), "WEBHOOK_SECRET": secret,
                               # Local receivers (127.0.0.1) are what one tries webhooks with here.
                               "WEBHOOK_ALLOW_PRIVATE": "true"})
    stack.start()
    print(f"InfiniteTalk stack is up (logs in {args.workdir / 'logs'}):\n{stack.describe()}\n"
          f"  webhooks are signed with WEBHOOK_SECRET={secret}\n  {stack.key_state()}")
    for warning in paid_pool_warnings(dict(os.environ), args.chunk_target_sec):
        print(f"WARNING: {warning}", file=sys.stderr)
    print("Ctrl-C stops it.", flush=True)
    stopping = threading.Event()

    def handle(_signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    try:
        stack.supervise(stopping, report=lambda line: print(line, file=sys.stderr, flush=True))
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
