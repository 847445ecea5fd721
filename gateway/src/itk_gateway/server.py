"""The gateway process: REST bridge (uvicorn) and public gRPC API in one process.

`build_gateway` is the composition root: every part of the gateway is built there, once, and
handed what it needs; no part builds its own collaborators or is wired after construction.

`python -m itk_gateway.server` reads the environment (see config.py) and serves until SIGTERM.
On SIGTERM it stops accepting requests and stops its job runners without ending their jobs, and
releases their leases: finished chunks are in the store and the job files, so another replica
(or the next start of this one) resumes every active job.
Tests build the same thing in-process with `build_gateway(settings)`, then `start()`/`stop()`.
"""

from __future__ import annotations

import errno
import logging
import socket
import sys
import threading
from dataclasses import dataclass, field

import uvicorn

from infinitetalk.v1 import gateway_pb2_grpc
from itk_common.config import ConfigError
from itk_common.grpc_server import GrpcService, PortUnavailableError, exit_if_port_unavailable
from itk_common.logs import setup_logging
from itk_common.shutdown import stop_on_signals, wait_until_set
from itk_gateway.api.grpc_api import SERVICE_NAME, GatewayServicer
from itk_gateway.api.rest import create_app
from itk_gateway.api.rest_models import job_json
from itk_gateway.config import Settings
from itk_gateway.dispatch.clients import SplitterClient, StitcherClient
from itk_gateway.dispatch.pool import EndpointPool, file_targets, static_targets
from itk_gateway.dispatch.watchdog import DispatchWatchdog
from itk_gateway.jobs.fetch import AllowList, FetchSettings, FetchSlots, UrlFetcher
from itk_gateway.jobs.orchestrator import LeaseSettings, Orchestrator
from itk_gateway.jobs.reference import VideoLimits
from itk_gateway.jobs.retention import Retention, remove_orphans
from itk_gateway.jobs.runner import Backends, RunSettings
from itk_gateway.jobs.service import Intake, JobService
from itk_gateway.jobs.validation import OptionRules
from itk_gateway.jobs.views import JobViews
from itk_gateway.jobs.webhooks import WebhookNotifier, WebhookSettings, creation_problem
from itk_gateway.live.publisher import LivePublisher
from itk_gateway.metrics import GatewayMetrics
from itk_gateway.security.grpc_interceptor import AuthInterceptor
from itk_gateway.security.guard import Guard, is_loopback
from itk_gateway.security.keys import KeyRing
from itk_gateway.security.limits import RateLimiter, Slots, UploadBudget
from itk_gateway.storage.blobs import S3Blobs, s3_client
from itk_gateway.storage.database import (
    DatabaseInUseError,
    DatabaseUnavailableError,
    Transaction,
    open_database,
    wait_until_reachable,
)
from itk_gateway.storage.files import JobFiles, S3Store
from itk_gateway.storage.space import DiskSpace
from itk_gateway.storage.store import JobStore

log = logging.getLogger(__name__)
# How often the data volume's free space is looked at for the gRPC readiness status.
READINESS_POLL_SEC = 2.0


def build_pools(settings: Settings) -> dict[str, EndpointPool]:
    pools = {}
    for name, targets in settings.pool_targets().items():
        source = static_targets(targets)
        if name == settings.default_pool and settings.generator_targets_file is not None:
            source = file_targets(settings.generator_targets_file)
        pools[name] = EndpointPool(name, source, resolve_interval_sec=settings.resolve_interval_sec,
                                   wait_sec=settings.generator_wait_sec, grid=settings.clip_grid)
    return pools


def build_guard(settings: Settings, metrics: GatewayMetrics) -> Guard:
    keys = KeyRing(settings.api_keys, settings.api_keys_file, set(settings.api_admin_names))
    return Guard(keys, settings.auth_required, RateLimiter(settings.rate_limit_per_sec, settings.rate_limit_burst),
                 lambda reason: metrics.refused.labels(reason).inc())


def build_intake(settings: Settings, s3: S3Store | None, metrics: GatewayMetrics, space: DiskSpace,
                 pools: dict[str, EndpointPool] | None = None) -> Intake:
    """What job creation checks its inputs with (the deployment's rules and limits, and the presets
    each pool's generators serve)."""
    pools = pools or {}
    rules = OptionRules(
        pools=list(settings.pool_targets()), default_pool=settings.default_pool,
        aliases=settings.pool_aliases, s3_enabled=s3 is not None,
        webhooks_enabled=bool(settings.webhook_secret),
        webhook_url_problem=(lambda _url: None) if settings.webhook_allow_private else creation_problem,
        served_presets=lambda pool: pools[pool].served_presets() if pool in pools else None,
    )
    fetcher = UrlFetcher(FetchSettings(
        allow=AllowList.parse(settings.url_allow_hosts), connect_timeout_sec=settings.url_connect_timeout_sec,
        total_timeout_sec=settings.url_timeout_sec, max_redirects=settings.url_max_redirects,
    ))
    video_limits = VideoLimits(max_duration_sec=settings.max_video_sec, max_pixels=settings.max_video_pixels,
                               max_side=settings.video_max_side)
    budget = UploadBudget(settings.max_uploads_in_flight_mb * 1024 * 1024,
                          lambda reason: metrics.refused.labels(reason).inc())
    return Intake(rules, fetcher, video_limits, budget, space,
                  FetchSlots(settings.url_fetches_per_key, settings.url_fetches_total))


def rest_listener(host: str, port: int) -> socket.socket:
    """The REST bridge's listening socket, made here so its port is known before uvicorn runs.
    Created with IPPROTO_TCP and TCP_NODELAY: asyncio switches Nagle's algorithm off only on
    sockets whose protocol says TCP, and with it on every answer on a kept-alive connection
    waited ~40 ms for the client's delayed ACK. Accepted connections inherit the option."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        reason = "in use by another program" if exc.errno == errno.EADDRINUSE else f"not available ({exc.strerror})"
        raise PortUnavailableError(host, port, "PORT", reason) from exc
    return sock


@dataclass
class Gateway:
    settings: Settings
    store: JobStore
    files: JobFiles
    backends: Backends
    orchestrator: Orchestrator
    service: JobService
    metrics: GatewayMetrics
    webhooks: WebhookNotifier
    guard: Guard
    retention: Retention
    watchdog: DispatchWatchdog
    grpc: GrpcService = field(init=False)
    rest_port: int = 0
    grpc_port: int = 0
    _uvicorn: uvicorn.Server | None = None
    _rest_thread: threading.Thread | None = None
    _serving: bool = False
    metrics_port: int = 0
    _metrics_server: object | None = None
    _readiness_stop: threading.Event = field(default_factory=threading.Event)
    _readiness_lock: threading.Lock = field(default_factory=threading.Lock)
    _readiness_thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self.grpc = GrpcService([SERVICE_NAME], max_workers=self.settings.grpc_workers,
                                interceptors=[AuthInterceptor(self.guard)])
        streams = Slots(self.settings.grpc_streams_per_key, self.settings.grpc_streams_total)
        self.metrics.grpc_long_calls.set_function(streams.in_use)
        servicer = GatewayServicer(self.service, self.guard, streams, self.settings.body_read_timeout_sec,
                                   on_refused=lambda reason: self.metrics.refused.labels(reason).inc())
        gateway_pb2_grpc.add_GatewayServicer_to_server(servicer, self.grpc.server)

    @property
    def serving(self) -> bool:
        return self._serving

    @property
    def rest_url(self) -> str:
        return f"http://{self.settings.bind_host}:{self.rest_port}"

    @property
    def grpc_target(self) -> str:
        return f"{self.settings.bind_host}:{self.grpc_port}"

    def start(self) -> None:
        # Both ports first: one another program holds stops the gateway before it resumes any job.
        self.grpc_port = self.grpc.bind(self.settings.bind_host, self.settings.grpc_port)
        rest_socket = rest_listener(self.settings.bind_host, self.settings.port)
        for pool in self.backends.pools.values():
            pool.start()
        remove_orphans(self.store, self.files)
        self.retention.start()
        self.watchdog.start()
        resumed = self.orchestrator.start()
        if resumed:
            log.info("resumed %d job(s): %s", len(resumed), ", ".join(resumed))
        self.grpc.start()
        self._start_rest(rest_socket)
        self._start_metrics()
        with self._readiness_lock:
            self._serving = True
            self.grpc.set_serving(not self.service.space.low())
        self._readiness_thread = threading.Thread(target=self._follow_readiness, name="readiness", daemon=True)
        self._readiness_thread.start()
        keys = ("API keys on: every request needs one (Authorization: Bearer <key>; the page's API key "
                f"field; itk's ITK_API_KEY), AUTH={self.settings.auth}" if self.guard.required
                else "API keys off")
        log.info("gateway serving: REST %s, gRPC %s; %s", self.rest_url, self.grpc_target, keys)
        if not self.guard.required and not is_loopback(self.settings.bind_host):
            log.warning("AUTH=off while listening on %s: anyone who can reach this gateway can use it",
                        self.settings.bind_host)

    def _follow_readiness(self) -> None:
        """Keep the gRPC health status (what Kubernetes' readiness probe asks) saying what `/ready`
        says: NOT_SERVING while the data volume is below MIN_FREE_DISK_MB, so new work goes to
        another replica; SERVING again once there is room. `/health` (liveness) is not affected."""
        was_low = False
        while not self._readiness_stop.wait(READINESS_POLL_SEC):
            low = self.service.space.low()
            with self._readiness_lock:
                if not self._serving:
                    return
                if low != was_low:
                    self.grpc.set_serving(not low)
                    if low:
                        log.warning("not ready for new jobs: %s", self.service.space.describe())
                    else:
                        log.info("the data volume has room again: ready for new jobs")
            was_low = low

    def _start_metrics(self) -> None:
        if self.settings.metrics_port is None:
            return
        from prometheus_client import start_http_server

        server, _thread = start_http_server(self.settings.metrics_port, self.settings.bind_host,
                                            registry=self.metrics.registry)
        self._metrics_server = server
        self.metrics_port = server.server_port

    def _start_rest(self, sock: socket.socket) -> None:
        app = create_app(self.service, self.metrics, self.guard, is_serving=lambda: self._serving)
        self.rest_port = sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5)
        self._uvicorn = uvicorn.Server(config)
        started = threading.Event()

        def serve() -> None:
            self._uvicorn.run(sockets=[sock])

        self._rest_thread = threading.Thread(target=serve, name="rest", daemon=True)
        self._rest_thread.start()
        # uvicorn sets `started` once it listens; wait so callers can use the port at once.
        while not self._uvicorn.started and self._rest_thread.is_alive():
            started.wait(0.02)

    def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, stop the runners (their jobs stay resumable), close everything."""
        with self._readiness_lock:
            self._serving = False
            self.grpc.set_serving(False)
        self._readiness_stop.set()
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        self.orchestrator.stop()
        self.webhooks.stop()
        self.retention.stop()
        self.watchdog.stop()
        self.grpc.stop(grace)
        if self._rest_thread is not None:
            self._rest_thread.join(timeout=grace + 5)
        if self._metrics_server is not None:
            self._metrics_server.shutdown()  # type: ignore[attr-defined]
            self._metrics_server.server_close()  # type: ignore[attr-defined]
        for pool in self.backends.pools.values():
            pool.stop()
        self.backends.splitter.close()
        self.backends.stitcher.close()
        self.store.close()


def open_store(settings: Settings) -> JobStore:
    """The job store on PostgreSQL (DATABASE_URL) or SQLite, waiting up to DATABASE_WAIT_SEC for
    the database to answer, so a replica started during a database restart comes up after it."""
    database = open_database(settings.database_url, settings.database, settings.database_pool_size)

    def ping(tx: Transaction) -> None:
        tx.execute("SELECT 1")

    try:
        wait_until_reachable(database, settings.database_wait_sec, ping)
    except Exception:
        database.close()
        raise
    log.info("job database: %s", database.name)
    return JobStore(database, watch_poll_sec=settings.job_poll_sec)


def build_gateway(settings: Settings) -> Gateway:
    """Everything wired but not started (no port bound, no thread running)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(settings)
    client = s3_client(settings.s3_region, settings.s3_endpoint_url) if settings.s3_enabled else None
    shared = S3Blobs(client, settings.s3_bucket, settings.s3_blob_prefix) if settings.blob_store == "s3" else None
    files = JobFiles(settings.data_dir, shared)
    s3 = None
    if client is not None:
        s3 = S3Store(client, settings.s3_bucket, settings.s3_prefix, settings.s3_url_expiry_sec)
    pools = build_pools(settings)
    live = LivePublisher(settings.data_dir, store, files)
    backends = Backends(SplitterClient(settings.splitter_target), StitcherClient(settings.stitcher_target),
                        pools, s3, live)

    def endpoint_counts() -> dict[str, int]:
        totals: dict[str, int] = {}
        for pool in pools.values():
            for key, value in pool.counts().items():
                totals[key] = totals.get(key, 0) + value
        return totals

    space = DiskSpace(settings.data_dir, settings.min_free_disk_mb * 2**20)
    metrics = GatewayMetrics(store.count_by_status, endpoint_counts)
    metrics.follow_free_space(space.free_bytes)
    run_settings = RunSettings(
        max_concurrent_chunks=settings.max_concurrent_chunks, max_attempts=settings.generator_max_attempts,
        retry_backoff_sec=settings.retry_backoff_sec, chunk_target_sec=settings.chunk_target_sec,
        job_timeout_sec=settings.job_timeout_sec, stitcher_wait_sec=settings.stitcher_wait_sec,
        min_lane_sec=settings.min_lane_sec,
        clip_frames=settings.clip_frames, audio_context_sec=settings.audio_context_sec,
        seam_fade_sec=settings.seam_fade_sec, quality_report=settings.quality_report, space=space,
        disk_full_wait_sec=settings.disk_full_wait_sec,
    )
    views = JobViews(store, s3, live)
    webhooks = WebhookNotifier(
        store,
        WebhookSettings(settings.webhook_secret, settings.webhook_max_attempts, settings.webhook_retry_backoff_sec,
                        settings.webhook_timeout_sec, settings.webhook_progress_interval_sec,
                        settings.webhook_allow_private),
        describe=lambda record: job_json(views.view(record)) | views.progress_of(record),
        on_delivery=lambda outcome: metrics.webhook_deliveries.labels(outcome).inc(),
    )
    leases = LeaseSettings(lease_sec=settings.job_lease_sec, poll_sec=settings.job_poll_sec)
    # Jobs resumed at start and jobs taken over from another replica alike are followed by webhooks.
    orchestrator = Orchestrator(store, files, backends, run_settings, metrics, leases,
                                on_resume=lambda job_id: webhooks.watch(job_id, resumed=True))
    metrics.follow_driven_jobs(lambda: len(orchestrator.driving()))
    intake = build_intake(settings, s3, metrics, space, pools)
    service = JobService(settings, store, files, orchestrator, metrics, views, intake, webhooks, s3, live)
    retention = Retention(store, files, s3, settings.result_ttl_hours, live)
    watchdog = DispatchWatchdog(pools, metrics, settings.dispatch_stall_sec, settings.dispatch_watchdog_sec)
    return Gateway(settings, store, files, backends, orchestrator, service, metrics, webhooks,
                   build_guard(settings, metrics), retention, watchdog)


def main() -> None:
    setup_logging("gateway")
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        log.error("bad configuration: %s", exc)
        sys.exit(2)
    try:
        gateway = build_gateway(settings)
    except ConfigError as exc:
        log.error("bad configuration: %s", exc)
        sys.exit(2)
    except (DatabaseUnavailableError, DatabaseInUseError) as exc:
        log.error("%s", exc)
        sys.exit(1)
    stopping = threading.Event()
    stop_on_signals(stopping)
    with exit_if_port_unavailable(log):
        gateway.start()
    wait_until_set(stopping)
    gateway.stop()
    log.info("gateway stopped")


if __name__ == "__main__":
    main()
