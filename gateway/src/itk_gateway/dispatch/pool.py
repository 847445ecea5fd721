"""A pool of generator endpoints: who exists, who is ready, who has a free slot.

Targets are `host:port` strings from a callable (a fixed list, or a file re-read each time), so
the pool follows scaling: every refresh resolves each host to all its addresses (a Kubernetes
headless Service answers one address per ready pod), and each address is one endpoint. Every
endpoint is probed with grpc.health and Generator.GetInfo; only SERVING, ready, non-draining
endpoints with capacity get chunks, never more at once than their capacity, least loaded first.
A generator that renders each chunk across several GPUs (GetInfo.devices > 1) is one endpoint of
its capacity, only faster: among equally loaded endpoints the one with more devices goes first.

Each generator reports what it serves (GetInfo: presets, clip grid, resolutions). The pool
refuses an endpoint whose clip grid differs from the gateway's plan (CLIP_FRAMES and the
catalogue's motion frames): pieces inside a lane are cut on that grid, so such a generator would
render them wrong. It gets no chunks, and the reason is logged and kept in `last_error`. Jobs are
checked against the presets the pool's generators serve (`served_presets`).

An endpoint that leaves the resolution keeps the chunks it is already rendering (a draining pod
finishes its work; a dead one breaks the stream, and the chunk is retried elsewhere) but gets no
new ones; its channel closes once its last chunk is released.
"""

from __future__ import annotations

import heapq
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from infinitetalk.v1 import generator_pb2, generator_pb2_grpc
from itk_common.catalogue import INFINITETALK_GRID, PRESET_NAMES, ClipGrid
from itk_common.grpc_server import insecure_channel

log = logging.getLogger(__name__)
# Probe period while chunks wait and no endpoint is ready (see EndpointPool._next_refresh_sec).
STARVING_PROBE_SEC = 1.0

TargetSource = Callable[[], list[str]]
Resolver = Callable[[str], list[str]]


class NoEndpointError(Exception):
    """No endpoint of the pool became ready in time."""


class AcquireCancelledError(Exception):
    """The chunk stopped waiting because its job was cancelled or the gateway is stopping."""


def split_host_port(target: str) -> tuple[str, int]:
    host, sep, port = target.strip().rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"generator target {target!r} must be host:port")
    return host.strip("[]"), int(port)


def resolve_target(target: str) -> list[str]:
    """All addresses of `host:port` as `ip:port` strings, IPv4 first-class.

    When a name has IPv4 addresses only those are used: `localhost` answering both ::1 and
    127.0.0.1 is one server, and counting it twice would double its capacity.
    """
    host, port = split_host_port(target)
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    v4 = sorted({f"{info[4][0]}:{port}" for info in infos if info[0] == socket.AF_INET})
    if v4:
        return v4
    return sorted({f"[{info[4][0]}]:{port}" for info in infos if info[0] == socket.AF_INET6})


def static_targets(targets: Iterable[str]) -> TargetSource:
    fixed = list(targets)
    return lambda: list(fixed)


def file_targets(path: Path) -> TargetSource:
    """One `host:port` per line; blank lines and `#` comments ignored; re-read on every call."""

    def read() -> list[str]:
        lines = path.read_text().splitlines()
        return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]

    return read


@dataclass
class Endpoint:
    address: str
    target: str
    channel: grpc.Channel
    capacity: int = 0
    active: int = 0  # chunks this gateway runs there now
    reported_active: int = 0  # chunks the generator said it runs, at the last probe
    foreign: int = 0  # chunks others run there (from GetInfo.active), until the next probe
    ready: bool = False
    draining: bool = False
    present: bool = True  # still in the latest resolution
    backend: str = ""
    devices: int = 1  # devices one chunk is rendered across there
    continues_motion: bool = True
    # Speakers per chunk the generator renders (GeneratorInfo.person_counts); () until probed.
    person_counts: tuple[int, ...] = ()
    last_error: str = ""
    # What it serves, from GetInfo (None until it answered once).
    presets: tuple[str, ...] | None = None
    # Why the pool gives it no chunks although it is up ("" = it is not refused).
    refused: str = ""
    generator: generator_pb2_grpc.GeneratorStub = field(init=False)

    def __post_init__(self) -> None:
        self.generator = generator_pb2_grpc.GeneratorStub(self.channel)

    @property
    def load(self) -> int:
        return self.active + self.foreign

    @property
    def usable(self) -> bool:
        return self.present and self.ready and not self.draining and self.load < self.capacity

    def renders(self, persons: int) -> bool:
        return persons in self.person_counts


@dataclass(frozen=True)
class ProbeResult:
    ready: bool
    draining: bool
    capacity: int
    active: int
    backend: str
    error: str
    devices: int = 1
    continues_motion: bool = True
    presets: tuple[str, ...] | None = None
    clip_frames: int = 0
    motion_frames: int = 0
    person_counts: tuple[int, ...] = ()


class EndpointPool:
    def __init__(self, name: str, targets: TargetSource, *, resolve_interval_sec: float = 10.0,
                 wait_sec: float = 600.0, probe_timeout_sec: float = 3.0,
                 resolver: Resolver = resolve_target, grid: ClipGrid = INFINITETALK_GRID) -> None:
        self.name = name
        self.grid = grid  # the gateway's plan: pieces inside a lane are cut on it
        self._targets = targets
        self._resolver = resolver
        self.resolve_interval_sec = resolve_interval_sec
        self.wait_sec = wait_sec
        self.probe_timeout_sec = probe_timeout_sec
        self._endpoints: dict[str, Endpoint] = {}
        self._last_addresses: dict[str, list[str]] = {}
        self._cond = threading.Condition()
        self._refresh_lock = threading.Lock()
        self._kick = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._queue: list[tuple[tuple, int]] = []  # heap of waiting acquirers' places
        self._tickets = 0
        # Who holds each slot taken (the thread that acquired it), so a slot whose holder died
        # without releasing it can be found and given back (see reclaim_abandoned).
        self._holds: list[tuple[Endpoint, threading.Thread]] = []
        # When a slot was last granted or given back: pending work and no such moment for long,
        # with generators saying they have room, is a stall (see stalled).
        self.last_movement = time.monotonic()

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        self.refresh()
        self._thread = threading.Thread(target=self._refresh_loop, name=f"pool-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._kick.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._cond:
            for endpoint in self._endpoints.values():
                endpoint.channel.close()
            self._endpoints.clear()
            self._cond.notify_all()

    def _refresh_loop(self) -> None:
        while not self._stopping.is_set():
            self._kick.wait(self._next_refresh_sec())
            self._kick.clear()
            if self._stopping.is_set():
                return
            try:
                self.refresh()
            except Exception:  # a refresh failing must never kill the loop
                log.exception("pool %s: refresh failed", self.name)
            # After a kicked refresh, wait a moment before the next so failures cannot spin.
            self._stopping.wait(0.2)

    def _starving(self) -> bool:
        """Chunks wait and no endpoint is ready to serve (every generator still loading, say)."""
        with self._cond:
            return bool(self._queue) and not any(
                e.present and e.ready and not e.draining for e in self._endpoints.values())

    def _next_refresh_sec(self) -> float:
        # While chunks wait for a generator that is not ready yet, probe every STARVING_PROBE_SEC,
        # so the first chunk starts within about a second of a generator turning ready, not up to
        # a whole resolve interval later (a job sent as a pod comes up, a benchmark's first job).
        if self._starving():
            return min(self.resolve_interval_sec, STARVING_PROBE_SEC)
        return self.resolve_interval_sec

    # -- resolution and probing ----------------------------------------------------------

    def _resolve(self) -> dict[str, str]:
        try:
            targets = self._targets()
        except OSError as exc:
            log.warning("pool %s: cannot read targets (%s); keeping the previous list", self.name, exc)
            targets = list(self._last_addresses)
        addresses: dict[str, str] = {}
        resolved: dict[str, list[str]] = {}
        for target in targets:
            try:
                found = self._resolver(target)
            except (OSError, ValueError) as exc:
                # A failed lookup is often a blip; keep what the name resolved to last time.
                found = self._last_addresses.get(target, [])
                log.warning("pool %s: cannot resolve %s (%s)", self.name, target, exc)
            resolved[target] = found
            for address in found:
                addresses.setdefault(address, target)
        self._last_addresses = resolved
        return addresses

    def _probe_all(self, endpoints: list[Endpoint]) -> dict[str, ProbeResult]:
        calls = []
        for endpoint in endpoints:
            health = health_pb2_grpc.HealthStub(endpoint.channel).Check.future(
                health_pb2.HealthCheckRequest(service=""), timeout=self.probe_timeout_sec
            )
            info = endpoint.generator.GetInfo.future(
                generator_pb2.GetInfoRequest(), timeout=self.probe_timeout_sec
            )
            calls.append((endpoint, health, info))
        results = {}
        for endpoint, health, info in calls:
            try:
                serving = health.result().status == health_pb2.HealthCheckResponse.SERVING
                reply = info.result()
            except grpc.RpcError as exc:
                results[endpoint.address] = ProbeResult(False, False, 0, 0, "", f"{exc.code().name}")
                continue
            results[endpoint.address] = ProbeResult(
                ready=serving and reply.ready, draining=reply.draining or not serving,
                capacity=reply.capacity, active=reply.active, backend=reply.backend, error="",
                devices=max(1, reply.devices),  # 0 from a generator that predates the field
                continues_motion=not reply.ignores_motion,
                # None of these from a generator that predates the fields: the catalogue's.
                presets=tuple(reply.presets) or PRESET_NAMES,
                clip_frames=reply.clip_frames, motion_frames=reply.motion_frames,
                # A generator older than the field renders one person.
                person_counts=tuple(reply.person_counts) or (1,),
            )
        return results

    def refresh(self) -> None:
        """Re-resolve the targets, add and remove endpoints, probe every present endpoint."""
        with self._refresh_lock:
            addresses = self._resolve()
            with self._cond:
                for address, target in addresses.items():
                    endpoint = self._endpoints.get(address)
                    if endpoint is None:
                        log.info("pool %s: endpoint %s (%s) appeared", self.name, address, target)
                        self._endpoints[address] = Endpoint(address, target, insecure_channel(address))
                    else:
                        endpoint.present = True
                for address, endpoint in list(self._endpoints.items()):
                    if address not in addresses and endpoint.present:
                        log.info("pool %s: endpoint %s disappeared", self.name, address)
                        endpoint.present = False
                        endpoint.ready = False
                    self._close_if_gone(endpoint)
                present = [e for e in self._endpoints.values() if e.present]
            results = self._probe_all(present)
            with self._cond:
                for endpoint in present:
                    result = results[endpoint.address]
                    refused = self._refusal(endpoint, result) if not result.error else endpoint.refused
                    if refused and refused != endpoint.refused:
                        log.error("pool %s: %s", self.name, refused)
                    endpoint.refused = refused
                    endpoint.ready = result.ready and not refused
                    if result.presets is not None:
                        endpoint.presets = result.presets
                    endpoint.draining = result.draining
                    endpoint.capacity = result.capacity
                    endpoint.foreign = max(0, result.active - endpoint.active)
                    endpoint.reported_active = result.active
                    endpoint.backend = result.backend
                    endpoint.devices = result.devices
                    endpoint.continues_motion = result.continues_motion
                    if result.person_counts:
                        endpoint.person_counts = result.person_counts
                    endpoint.last_error = refused or result.error
                self._cond.notify_all()

    def _refusal(self, endpoint: Endpoint, result: ProbeResult) -> str:
        """Why `endpoint` must get no chunks, or "": a clip grid other than the gateway's plan."""
        if not result.clip_frames or (result.clip_frames, result.motion_frames) == (
                self.grid.clip_frames, self.grid.motion_frames):
            return ""
        return (f"generator {endpoint.address} ({endpoint.target}) refused: it renders "
                f"{result.clip_frames}-frame clips continuing from {result.motion_frames} motion frames, "
                f"this gateway plans {self.grid}; set the generator's INFINITETALK_CLIP_FRAMES or the "
                f"gateway's CLIP_FRAMES so that they agree")

    def _close_if_gone(self, endpoint: Endpoint) -> None:
        if not endpoint.present and endpoint.active == 0 and self._endpoints.get(endpoint.address) is endpoint:
            del self._endpoints[endpoint.address]
            endpoint.channel.close()

    # -- slots ---------------------------------------------------------------------------

    def acquire(self, avoid: Iterable[str] = (), cancelled: threading.Event | None = None,
                priority: tuple = (), persons: int = 1) -> Endpoint:
        """Take a slot on the least loaded usable endpoint (of those, the one with the most
        devices per chunk: the fastest), waiting until one is free.

        Waiters are served in `priority` order (then arrival order): the orchestrator passes
        (job creation time, -frame count, chunk index), so older jobs and longer chunks go first. Endpoints in
        `avoid` (where this chunk already failed) are used only when no other endpoint has a
        free slot. Only endpoints that render `persons` speakers per chunk are used. Raises
        NoEndpointError when the pool has had no such ready endpoint for `wait_sec`,
        AcquireCancelledError when `cancelled` is set.
        """
        avoided = set(avoid)
        no_ready_since: float | None = None
        with self._cond:
            self._tickets += 1
            place = (priority, self._tickets)
            heapq.heappush(self._queue, place)
            try:
                while True:
                    if (cancelled is not None and cancelled.is_set()) or self._stopping.is_set():
                        raise AcquireCancelledError()
                    usable = [e for e in self._endpoints.values() if e.usable and e.renders(persons)]
                    if usable and self._queue[0] == place:
                        preferred = [e for e in usable if e.address not in avoided] or usable
                        chosen = min(preferred, key=lambda e: (e.load / e.capacity, -e.devices, e.load, e.address))
                        chosen.active += 1
                        self._holds.append((chosen, threading.current_thread()))
                        self.last_movement = time.monotonic()
                        return chosen
                    if any(e.present and e.ready and not e.draining and e.renders(persons)
                           for e in self._endpoints.values()):
                        no_ready_since = None
                    else:
                        if no_ready_since is None:
                            self._kick.set()  # probe now, then every STARVING_PROBE_SEC while this waits
                        now = time.monotonic()
                        no_ready_since = no_ready_since or now
                        if self.wait_sec and now - no_ready_since > self.wait_sec:
                            refused = [e.refused for e in self._endpoints.values() if e.present and e.refused]
                            raise NoEndpointError(
                                f"no ready generator endpoint in pool {self.name!r} for {self.wait_sec:.0f}s"
                                + "".join(f"; {reason}" for reason in refused)
                            )
                    self._cond.wait(0.25)
            finally:
                self._queue.remove(place)
                heapq.heapify(self._queue)
                self._cond.notify_all()

    @property
    def waiting(self) -> int:
        with self._cond:
            return len(self._queue)

    def release(self, endpoint: Endpoint) -> None:
        with self._cond:
            self._drop_hold(endpoint, threading.current_thread())
            self._release_locked(endpoint)

    def _drop_hold(self, endpoint: Endpoint, thread: threading.Thread) -> None:
        for number, (held, holder) in enumerate(self._holds):
            if held is endpoint and holder is thread:
                del self._holds[number]
                return
        for number, (held, _holder) in enumerate(self._holds):
            if held is endpoint:
                del self._holds[number]
                return

    def _release_locked(self, endpoint: Endpoint) -> None:
        endpoint.active = max(0, endpoint.active - 1)
        self.last_movement = time.monotonic()
        self._close_if_gone(endpoint)
        self._cond.notify_all()

    # -- the watchdog's view -------------------------------------------------------------

    def stalled(self, stall_sec: float) -> str | None:
        """Why the pool looks stuck, or None: chunks wait for a slot, a ready endpoint's
        generator says it has room that this gateway counts as taken, and no slot was granted
        or given back for `stall_sec`."""
        with self._cond:
            if not self._queue or time.monotonic() - self.last_movement < stall_sec:
                return None
            idle = [e for e in self._endpoints.values() if e.present and e.ready and not e.draining
                    and e.capacity > 0 and e.active >= e.capacity - e.foreign and e.reported_active < e.capacity]
            if not idle:
                return None
            described = ", ".join(f"{e.address} (slots taken here {e.active}, generator runs {e.reported_active}"
                                  f" of {e.capacity})" for e in idle)
            return (f"{len(self._queue)} chunk(s) waiting, no slot granted or released for "
                    f"{time.monotonic() - self.last_movement:.0f} s, idle generators: {described}")

    def reclaim_abandoned(self) -> int:
        """Give back the slots whose holder thread ended without releasing them; how many."""
        with self._cond:
            dead = [(endpoint, holder) for endpoint, holder in self._holds if not holder.is_alive()]
            for endpoint, holder in dead:
                self._holds.remove((endpoint, holder))
                log.warning("pool %s: slot on %s held by the ended thread %s given back", self.name,
                            endpoint.address, holder.name)
                self._release_locked(endpoint)
            return len(dead)

    def mark_failed(self, endpoint: Endpoint, reason: str = "") -> None:
        """The endpoint broke a stream or refused: no new chunks until a probe says it is fine."""
        with self._cond:
            endpoint.ready = False
            endpoint.last_error = reason
            self._cond.notify_all()
        self._kick.set()

    def mark_busy(self, endpoint: Endpoint) -> None:
        """The endpoint refused for lack of room (someone else fills it): full until the next probe."""
        with self._cond:
            endpoint.foreign = max(endpoint.foreign, endpoint.capacity - endpoint.active)
        self._kick.set()

    # -- observation ---------------------------------------------------------------------

    def served_presets(self) -> tuple[str, ...] | None:
        """The presets this pool's generators serve: those of the ready ones (of the ones that
        answered, while none is ready yet); None while no generator has answered."""
        with self._cond:
            known = [e for e in self._endpoints.values()
                     if e.present and not e.refused and e.presets is not None]
            ready = [e for e in known if e.ready and not e.draining] or known
            if not ready:
                return None
            served = {p for e in ready for p in e.presets or ()}
            return tuple(p for p in PRESET_NAMES if p in served)

    def refusals(self) -> list[str]:
        """Why generators that are up get no chunks (a clip grid other than the gateway's)."""
        with self._cond:
            return [e.refused for e in self._endpoints.values() if e.present and e.refused]

    def continues_motion(self) -> bool:
        """Whether the pool's generators continue lanes from motion frames (all the ready ones do)."""
        with self._cond:
            ready = [e for e in self._endpoints.values() if e.present and e.ready]
            return all(e.continues_motion for e in ready)

    def person_counts(self) -> set[int] | None:
        """Speaker counts some present generator of the pool renders; None while none has said
        (all still starting)."""
        with self._cond:
            told = [e.person_counts for e in self._endpoints.values() if e.present and e.person_counts]
            return {count for counts in told for count in counts} if told else None

    def free_slots(self) -> int:
        """Slots a new job could use now: free capacity of the ready endpoints less those already
        waited for; with no endpoint ready yet (still loading), the endpoints known."""
        with self._cond:
            present = [e for e in self._endpoints.values() if e.present and not e.draining]
            ready = [e for e in present if e.ready]
            if not ready:
                return len(present)
            free = sum(max(0, e.capacity - e.load) for e in ready)
            return max(0, free - len(self._queue))

    def endpoints(self) -> list[Endpoint]:
        with self._cond:
            return sorted(self._endpoints.values(), key=lambda e: e.address)

    def backends(self) -> list[str]:
        """The backends the pool's ready generators report (`preview`, `infinitetalk`, `runpod` ...)."""
        with self._cond:
            return sorted({e.backend for e in self._endpoints.values() if e.present and e.ready and e.backend})

    def counts(self) -> dict[str, int]:
        with self._cond:
            present = [e for e in self._endpoints.values() if e.present]
            return {
                "known": len(present),
                "ready": sum(1 for e in present if e.ready and not e.draining),
                "capacity": sum(e.capacity for e in present if e.ready and not e.draining),
                "devices": sum(e.devices for e in present if e.ready and not e.draining),
                "active": sum(e.active for e in self._endpoints.values()),
            }
