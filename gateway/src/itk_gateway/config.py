"""The gateway's settings, read once from the environment.

MAX_CONCURRENT_CHUNKS defaults to 8 rather than the Infinitetalk REST API's 3: it fed one remote worker,
while here a job spreads over a pool whose capacity is the real global limit. Every variable,
its default and what it does: docs/configuration.md (generated from SETTINGS_HELP and the reads below).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from itk_common.catalogue import CLIP_FRAMES, MOTION_FRAMES, ClipGrid
from itk_common.config import ConfigError, env_bool, env_float, env_int, env_list, env_str

# gRPC worker threads never given to long calls (streams, uploads): short calls and the health
# check, which Kubernetes' readiness probe asks, always find one.
GRPC_SHORT_CALL_WORKERS = 8

# What each variable does; names and defaults come from the reads below (scripts/gen_config_docs.py
# writes docs/configuration.md from both, and its --check fails when they disagree).
SETTINGS_HELP: dict[str, str | tuple[str, ...]] = {
    "BIND_HOST": "Address the REST and gRPC servers listen on (`0.0.0.0` in Kubernetes).",
    "PORT": "REST bridge port (the Infinitetalk REST API's name).",
    "GRPC_PORT": "Public gRPC API port.",
    "TEMP_DIR": "The seed API's data folder; used as `DATA_DIR` when that is unset.",
    "DATA_DIR": (
        "`TEMP_DIR`",
        "Inputs, chunk WAVs, generated parts and results live under it.",
    ),
    "DB_PATH": (
        "`<DATA_DIR>/jobs.sqlite3`",
        "SQLite database of jobs and chunks (WAL mode), when `DATABASE_URL` is unset.",
    ),
    "DATABASE_URL": "`postgresql://user:password@host:5432/db`: jobs in PostgreSQL, shared by several replicas.",
    "DATABASE_WAIT_SEC": "At start, wait this long for the database to answer before exiting.",
    "DATABASE_POOL_SIZE": "Most PostgreSQL connections one replica opens (its job and API threads share them).",
    "JOB_LEASE_SEC": "A replica's hold on a job it drives; renewed every third of it, taken over after it.",
    "JOB_POLL_SEC": "How often a replica checks its jobs for cancels and looks for jobs to take over.",
    "BLOB_STORE": "`local`: job files in `DATA_DIR` (one replica, or a ReadWriteMany volume); `s3`: in S3.",
    "S3_BLOB_PREFIX": "Key prefix of job files with `BLOB_STORE=s3`.",
    "SPLITTER_TARGET": "Splitter gRPC address.",
    "STITCHER_TARGET": "Stitcher gRPC address.",
    "GENERATOR_TARGETS": "Default pool `host:port,...`; each host resolves to all its addresses.",
    "GENERATOR_TARGETS_FILE": "One `host:port` per line, re-read on every refresh; replaces `GENERATOR_TARGETS`.",
    "GENERATOR_POOLS": "More pools: `name=host:port,host:port;name2=host:port`.",
    "GENERATOR_POOL_<NAME>": (
        "—",
        "One pool per variable, named `<name>` in lower case; adds to `GENERATOR_POOLS`.",
        "read by pools_from_variables, one variable per pool",
    ),
    "DEFAULT_POOL": "Name of the default pool; an empty or omitted `provider` selects it.",
    "DEFAULT_PROVIDER": (
        "—",
        "Former name of `DEFAULT_POOL`, still read when that is unset.",
    ),
    "POOL_ALIASES": (
        "`runpod=infinitetalk`",
        "`alias=pool,...`: other names for pools (Infinitetalk REST API clients send `runpod`).",
    ),
    "PROVIDER_ALIASES": (
        "—",
        "Former name of `POOL_ALIASES`, still read when that is unset.",
    ),
    "GENERATOR_RESOLVE_INTERVAL_SEC": ("Re-resolve targets and probe endpoints this often (and after failures; "
                                       "every second while chunks wait and no generator is ready)."),
    "GENERATOR_MAX_ATTEMPTS": "Failed attempts per chunk before the job fails (busy refusals count 1/5).",
    "GENERATOR_RETRY_BACKOFF_SEC": "First pause before a retry; doubles per attempt, at most 30 s.",
    "GENERATOR_WAIT_SEC": "A chunk fails after its pool had no ready endpoint this long (0 = wait forever).",
    "MAX_CONCURRENT_CHUNKS": (
        "Chunks of one job in flight at once (the Infinitetalk REST API's name; pool capacity is the global "
        "limit)."
    ),
    "CHUNK_TARGET_SEC": "Target chunk length passed to the splitter (0 = the splitter's default).",
    "MIN_LANE_SEC": (
        "the splitter's",
        "No lane (continuous stream) is shorter; a shorter recording gets fewer lanes. 0 = no minimum; unset = "
        "the splitter's `MIN_LANE_SEC`.",
    ),
    "CLIP_FRAMES": "The generators' clip length (4n+1); lanes are cut on it; generators of another grid are refused.",
    "AUDIO_CONTEXT_SEC": "Audio around each piece's lane, which it is sent whole (up to 10 min), for its features.",
    "SEAM_FADE_SEC": (
        "the splitter's",
        "Longest cross-fade on each side of a seam between lanes, never beyond its pause. 0 = a hard cut; unset ="
        " the splitter's `SEAM_FADE_SEC`.",
    ),
    "MAX_UPLOAD_MB": "Largest image + audio upload in MiB (decoded); larger requests get 413.",
    "MAX_IMAGE_PIXELS": "Largest accepted image (width × height).",
    "MAX_VIDEO_SEC": "Longest accepted source video (dubbing), in seconds.",
    "MAX_VIDEO_PIXELS": "Largest accepted source video frame (width × height; 4096x2160).",
    "VIDEO_MAX_SIDE": "Source videos are normalised to at most this long side (never enlarged).",
    "URL_FETCH_ALLOW_HOSTS": "`host,host:port,10.0.0.0/8,...`: trusted hosts URL inputs may reach on any address.",
    "URL_FETCH_CONNECT_TIMEOUT_SEC": "Connecting to a URL's server.",
    "URL_FETCH_TIMEOUT_SEC": "A whole URL download, redirects included.",
    "URL_FETCH_MAX_REDIRECTS": "Redirects followed per URL.",
    "URL_FETCHES_PER_KEY": "URL downloads of one key running at once; more get 429.",
    "URL_FETCHES_TOTAL": "URL downloads running at once over all keys; more get 429.",
    "GRPC_WORKERS": "Threads serving gRPC calls; `GRPC_STREAMS_TOTAL` of them at most for long calls, the rest keep "
                    "short calls and health answering.",
    "GRPC_STREAMS_PER_KEY": "Long gRPC calls (CreateJob uploads, WatchJob, StreamSegments, DownloadVideo) one key "
                            "(or, without keys, one address) holds open at once; more get RESOURCE_EXHAUSTED.",
    "GRPC_STREAMS_TOTAL": "Long gRPC calls open at once over all callers; at most `GRPC_WORKERS` - 8.",
    "URL_ACCEPT_WAIT_SEC": "Creates with URL inputs wait this long for them, then 202 (fetched in the background).",
    "JOB_TIMEOUT_SEC": "A job running longer than this (from its creation) ends `TIMED_OUT`; 0 = no limit.",
    "SPLIT_ACCEPT_TIMEOUT_SEC": "Job creation waits this long for the splitter's first chunk (or its refusal).",
    "S3_BUCKET": "Bucket for `push_to_s3` results; unset = `push_to_s3` is rejected.",
    "S3_REGION": "Bucket region.",
    "S3_ENDPOINT_URL": "Endpoint of an S3-compatible store (MinIO, moto).",
    "S3_PREFIX": "Key prefix of uploaded results.",
    "S3_URL_EXPIRY_SEC": "Lifetime of presigned `video_url`s (a fresh one on every GET).",
    "AWS_ACCESS_KEY_ID": (
        "—",
        "S3 credentials (read by boto3).",
        "read by boto3",
    ),
    "AWS_SECRET_ACCESS_KEY": (
        "—",
        "S3 credentials (read by boto3).",
        "read by boto3",
    ),
    "WEBHOOK_SECRET": "Signing secret of webhooks (`whsec_<base64>` or any text); unset = `webhook_url` is rejected.",
    "WEBHOOK_MAX_ATTEMPTS": "Deliveries tried per event before giving up.",
    "WEBHOOK_RETRY_BACKOFF_SEC": "First pause before a retry; doubles per attempt, at most 10 minutes.",
    "WEBHOOK_TIMEOUT_SEC": "How long one delivery may take.",
    "WEBHOOK_PROGRESS_INTERVAL_SEC": "At most one `job.progress` event per job this often.",
    "WEBHOOK_ALLOW_PRIVATE": "Allow webhook URLs on loopback, private or link-local addresses.",
    "IDEMPOTENCY_TTL_SEC": "How long an `Idempotency-Key` is remembered.",
    "SSE_KEEPALIVE_SEC": "A comment line on idle event streams this often, so proxies keep them open.",
    "STITCHER_WAIT_SEC": "A stitch is retried while the stitcher is away this long (0 = job deadline).",
    "QUALITY_REPORT": "The stitcher computes each completed job's quality report (`quality`); `false` = none.",
    "AUTH": "`auto`: API keys required unless bound to loopback without keys; `required`; `off`.",
    "API_KEYS": "`name=key,...`: accepted keys and the names their jobs belong to.",
    "API_KEYS_FILE": "One `name:sha256-hex-of-key[:admin]` per line; re-read when it changes.",
    "API_ADMIN_NAMES": "Key names that see and manage every job.",
    "RATE_LIMIT_PER_SEC": "Requests per second per key (or address); 0 = off.",
    "RATE_LIMIT_BURST": "Requests a key (or address) may send at once beyond the steady rate (the bucket's size).",
    "MAX_ACTIVE_JOBS_PER_KEY": "Jobs queued or running per key; 0 = no limit.",
    "MAX_UPLOADS_IN_FLIGHT_MB": "Upload bytes being received over all requests at once; 0 = no limit.",
    "BODY_READ_TIMEOUT_SEC": "A request body (or gRPC `CreateJob` upload) that sends nothing for this long is "
                             "dropped (408; gRPC: CANCELLED).",
    "CORS_ALLOWED_ORIGINS": "Origins allowed to call from a browser (`*` for any); unset = CORS off.",
    "TRUSTED_HOSTS": "`Host` names served (`api.example.com,*.example.com`); others get 400.",
    "METRICS_PORT": "Serve `/metrics` on this port without a key (else on `PORT`, with a key).",
    "RESULT_TTL_HOURS": "Finished jobs (result, files, row) are deleted this long after they end; 0 = kept.",
    "MIN_FREE_DISK_MB": "Below this much free space on `DATA_DIR` new jobs get 507 and `/ready` says not ready.",
    "DISK_FULL_WAIT_SEC": "A running job whose volume filled up waits this long for space before failing.",
    "DISPATCH_STALL_SEC": "Work waiting this long beside idle generators is a stall (logged, recovered); 0 = off.",
    "DISPATCH_WATCHDOG_SEC": "How often the dispatch watchdog looks.",
}


def env_bounded(name: str, default: float, minimum: float, maximum: float) -> float:
    value = env_float(name, default, minimum=minimum)
    if value > maximum:
        raise ConfigError(f"{name} must be at most {maximum:g}, got {value:g}")
    return value


def env_optional_bounded(name: str, minimum: float, maximum: float = math.inf) -> float | None:
    """A number in [minimum, maximum], or None when the variable is unset or empty (0 is a value)."""
    if not os.environ.get(name, "").strip():
        return None
    return env_bounded(name, 0.0, minimum, maximum)


def env_clip_frames(name: str, default: int) -> int:
    """Frames per clip of the generators' stream: 4n+1, as the video VAE needs."""
    value = env_int(name, default, minimum=5)
    if (value - 1) % 4:
        raise ConfigError(f"{name} must be 4n+1 (81, 21, ...), got {value}")
    return value


def parse_pools(raw: str) -> dict[str, list[str]]:
    """`name=host:port,host:port;name2=...` -> {name: [targets]}."""
    pools: dict[str, list[str]] = {}
    for entry in raw.split(";"):
        if not entry.strip():
            continue
        name, sep, targets = entry.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ConfigError(f"GENERATOR_POOLS entry {entry!r} must look like name=host:port,host:port")
        pools[name] = [t.strip() for t in targets.split(",") if t.strip()]
    return pools


POOL_VARIABLE_PREFIX = "GENERATOR_POOL_"


def pools_from_variables(environ: dict[str, str]) -> dict[str, list[str]]:
    """`GENERATOR_POOL_<NAME>=host:port,...` -> {name: [targets]}: one variable per pool, so
    deployment pieces (a Kubernetes component per remote GPU provider) can each add theirs."""
    pools: dict[str, list[str]] = {}
    for variable, value in environ.items():
        if variable.startswith(POOL_VARIABLE_PREFIX) and value.strip():
            name = variable[len(POOL_VARIABLE_PREFIX):].lower()
            if not name:
                raise ConfigError(f"{variable} needs a pool name after {POOL_VARIABLE_PREFIX}")
            pools[name] = [t.strip() for t in value.split(",") if t.strip()]
    return pools


def parse_aliases(raw: str, variable: str = "POOL_ALIASES") -> dict[str, str]:
    aliases: dict[str, str] = {}
    for entry in raw.split(","):
        if not entry.strip():
            continue
        alias, sep, pool = entry.partition("=")
        if not sep or not alias.strip() or not pool.strip():
            raise ConfigError(f"{variable} entry {entry!r} must look like alias=pool")
        aliases[alias.strip()] = pool.strip()
    return aliases


def _pool_aliases_variable() -> tuple[str, str]:
    """POOL_ALIASES's value and the variable it came from (PROVIDER_ALIASES, its former name, too)."""
    if env_str("POOL_ALIASES", "").strip():
        return env_str("POOL_ALIASES", ""), "POOL_ALIASES"
    if env_str("PROVIDER_ALIASES", "").strip():
        return env_str("PROVIDER_ALIASES", ""), "PROVIDER_ALIASES"
    return "runpod=infinitetalk", "POOL_ALIASES"


@dataclass
class Settings:
    bind_host: str = "127.0.0.1"
    port: int = 8080
    grpc_port: int = 50050
    data_dir: Path = Path("/tmp/infinitetalk")
    db_path: Path | None = None
    database_url: str = ""
    database_wait_sec: float = 120.0
    database_pool_size: int = 20
    job_lease_sec: float = 20.0
    job_poll_sec: float = 1.0
    blob_store: str = "local"
    s3_blob_prefix: str = "work/"
    splitter_target: str = "127.0.0.1:50051"
    stitcher_target: str = "127.0.0.1:50053"
    generator_targets: list[str] = field(default_factory=lambda: ["127.0.0.1:50052"])
    generator_targets_file: Path | None = None
    generator_pools: dict[str, list[str]] = field(default_factory=dict)
    default_pool: str = "infinitetalk"
    pool_aliases: dict[str, str] = field(default_factory=lambda: {"runpod": "infinitetalk"})
    resolve_interval_sec: float = 10.0
    generator_max_attempts: int = 4
    retry_backoff_sec: float = 1.0
    generator_wait_sec: float = 600.0
    max_concurrent_chunks: int = 8
    chunk_target_sec: float = 45.0
    # None (unset): the splitter's own MIN_LANE_SEC / SEAM_FADE_SEC apply; 0 is a value (no minimum, a hard cut).
    min_lane_sec: float | None = None
    clip_frames: int = CLIP_FRAMES
    audio_context_sec: float = 2.0
    seam_fade_sec: float | None = None
    max_upload_mb: int = 200
    max_image_pixels: int = 40_000_000
    max_video_sec: float = 600.0
    max_video_pixels: int = 4096 * 2160
    video_max_side: int = 1280
    url_allow_hosts: list[str] = field(default_factory=list)
    url_connect_timeout_sec: float = 10.0
    url_timeout_sec: float = 120.0
    url_max_redirects: int = 5
    url_fetches_per_key: int = 4
    url_fetches_total: int = 32
    url_accept_wait_sec: float = 3.0
    job_timeout_sec: float = 0.0
    split_accept_timeout_sec: float = 120.0
    s3_bucket: str = ""
    s3_region: str = ""
    s3_endpoint_url: str = ""
    s3_prefix: str = "videos/"
    s3_url_expiry_sec: int = 3600
    webhook_secret: str = ""
    webhook_max_attempts: int = 8
    webhook_retry_backoff_sec: float = 1.0
    webhook_timeout_sec: float = 10.0
    webhook_progress_interval_sec: float = 10.0
    webhook_allow_private: bool = False
    idempotency_ttl_sec: float = 86400.0
    sse_keepalive_sec: float = 15.0
    stitcher_wait_sec: float = 600.0
    quality_report: bool = True
    auth: str = "auto"
    api_keys: str = ""
    api_keys_file: Path | None = None
    api_admin_names: list[str] = field(default_factory=list)
    rate_limit_per_sec: float = 20.0
    rate_limit_burst: float = 40.0
    max_active_jobs_per_key: int = 20
    max_uploads_in_flight_mb: int = 2048
    body_read_timeout_sec: float = 30.0
    cors_allowed_origins: list[str] = field(default_factory=list)
    trusted_hosts: list[str] = field(default_factory=lambda: ["*"])
    metrics_port: int | None = None
    result_ttl_hours: float = 72.0
    min_free_disk_mb: int = 256
    disk_full_wait_sec: float = 600.0
    dispatch_stall_sec: float = 60.0
    dispatch_watchdog_sec: float = 5.0
    grpc_workers: int = 128
    grpc_streams_per_key: int = 16
    grpc_streams_total: int = 96

    @property
    def clip_grid(self) -> ClipGrid:
        """The plan's clip grid, which every generator of a pool must share (checked at registration)."""
        return ClipGrid(self.clip_frames, MOTION_FRAMES)

    @property
    def database(self) -> Path:
        return self.db_path or self.data_dir / "jobs.sqlite3"

    @property
    def shared_database(self) -> bool:
        return bool(self.database_url)

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024

    @property
    def auth_required(self) -> bool:
        """`auto`: on whenever keys are configured or the servers listen beyond loopback."""
        from itk_gateway.security.guard import is_loopback

        if self.auth != "auto":
            return self.auth == "required"
        return bool(self.api_keys) or self.api_keys_file is not None or not is_loopback(self.bind_host)

    @property
    def s3_enabled(self) -> bool:
        return bool(self.s3_bucket)

    def pool_targets(self) -> dict[str, list[str]]:
        """Every configured pool by name; the default pool first."""
        pools = {self.default_pool: list(self.generator_targets)}
        pools.update({k: v for k, v in self.generator_pools.items() if k != self.default_pool})
        return pools

    @classmethod
    def from_env(cls) -> Settings:
        data_dir = Path(env_str("DATA_DIR", env_str("TEMP_DIR", "/tmp/infinitetalk")))
        db_path = env_str("DB_PATH", "")
        targets_file = env_str("GENERATOR_TARGETS_FILE", "")
        keys_file = env_str("API_KEYS_FILE", "")
        auth = env_str("AUTH", "auto").lower()
        if auth not in ("auto", "required", "off"):
            raise ConfigError(f"AUTH must be auto, required or off, got {auth!r}")
        metrics_port = env_str("METRICS_PORT", "")
        database_url = env_str("DATABASE_URL", "")
        if database_url and not database_url.startswith(("postgresql://", "postgres://")):
            raise ConfigError("DATABASE_URL must be a postgresql:// URL (leave it unset for SQLite)")
        blob_store = env_str("BLOB_STORE", "local").lower()
        if blob_store not in ("local", "s3"):
            raise ConfigError(f"BLOB_STORE must be local or s3, not {blob_store!r}")
        if blob_store == "s3" and not env_str("S3_BUCKET", ""):
            raise ConfigError("BLOB_STORE=s3 needs S3_BUCKET")
        lease = env_float("JOB_LEASE_SEC", 20.0, minimum=1.0)
        poll = env_float("JOB_POLL_SEC", 1.0, minimum=0.05)
        if poll * 3 > lease:
            raise ConfigError(f"JOB_POLL_SEC={poll:g} must be at most a third of JOB_LEASE_SEC={lease:g}")
        grpc_workers = env_int("GRPC_WORKERS", 128, minimum=16)
        grpc_streams_total = env_int("GRPC_STREAMS_TOTAL", 96, minimum=1)
        if grpc_streams_total > grpc_workers - GRPC_SHORT_CALL_WORKERS:
            raise ConfigError(f"GRPC_STREAMS_TOTAL={grpc_streams_total} must leave {GRPC_SHORT_CALL_WORKERS} of "
                              f"GRPC_WORKERS={grpc_workers} for short calls and health")
        return cls(
            bind_host=env_str("BIND_HOST", "127.0.0.1"),
            port=env_int("PORT", 8080, minimum=0),
            grpc_port=env_int("GRPC_PORT", 50050, minimum=0),
            data_dir=data_dir,
            db_path=Path(db_path) if db_path else None,
            database_url=database_url,
            database_wait_sec=env_float("DATABASE_WAIT_SEC", 120.0, minimum=0.0),
            database_pool_size=env_int("DATABASE_POOL_SIZE", 20, minimum=2),
            job_lease_sec=lease,
            job_poll_sec=poll,
            blob_store=blob_store,
            s3_blob_prefix=env_str("S3_BLOB_PREFIX", "work/"),
            splitter_target=env_str("SPLITTER_TARGET", "127.0.0.1:50051"),
            stitcher_target=env_str("STITCHER_TARGET", "127.0.0.1:50053"),
            generator_targets=env_list("GENERATOR_TARGETS", ["127.0.0.1:50052"]),
            generator_targets_file=Path(targets_file) if targets_file else None,
            generator_pools={**parse_pools(os.environ.get("GENERATOR_POOLS", "")),
                             **pools_from_variables(dict(os.environ))},
            # DEFAULT_PROVIDER / PROVIDER_ALIASES: the names these had before "provider" was kept for
            # the remote GPU vendors; still read so older deployments keep their pools.
            default_pool=env_str("DEFAULT_POOL", env_str("DEFAULT_PROVIDER", "infinitetalk")),
            pool_aliases=parse_aliases(*_pool_aliases_variable()),
            resolve_interval_sec=env_float("GENERATOR_RESOLVE_INTERVAL_SEC", 10.0, minimum=0.1),
            generator_max_attempts=env_int("GENERATOR_MAX_ATTEMPTS", 4, minimum=1),
            retry_backoff_sec=env_float("GENERATOR_RETRY_BACKOFF_SEC", 1.0, minimum=0.0),
            generator_wait_sec=env_float("GENERATOR_WAIT_SEC", 600.0, minimum=0.0),
            max_concurrent_chunks=env_int("MAX_CONCURRENT_CHUNKS", 8, minimum=1),
            chunk_target_sec=env_float("CHUNK_TARGET_SEC", 45.0, minimum=0.0),
            min_lane_sec=env_optional_bounded("MIN_LANE_SEC", 0.0),
            clip_frames=env_clip_frames("CLIP_FRAMES", CLIP_FRAMES),
            audio_context_sec=env_bounded("AUDIO_CONTEXT_SEC", 2.0, 0.0, 30.0),
            seam_fade_sec=env_optional_bounded("SEAM_FADE_SEC", 0.0, 5.0),
            max_upload_mb=env_int("MAX_UPLOAD_MB", 200, minimum=1),
            max_image_pixels=env_int("MAX_IMAGE_PIXELS", 40_000_000, minimum=1),
            max_video_sec=env_float("MAX_VIDEO_SEC", 600.0, minimum=1.0),
            max_video_pixels=env_int("MAX_VIDEO_PIXELS", 4096 * 2160, minimum=1),
            video_max_side=env_int("VIDEO_MAX_SIDE", 1280, minimum=16),
            url_allow_hosts=env_list("URL_FETCH_ALLOW_HOSTS", []),
            url_connect_timeout_sec=env_float("URL_FETCH_CONNECT_TIMEOUT_SEC", 10.0, minimum=0.1),
            url_timeout_sec=env_float("URL_FETCH_TIMEOUT_SEC", 120.0, minimum=0.1),
            url_max_redirects=env_int("URL_FETCH_MAX_REDIRECTS", 5, minimum=0),
            url_fetches_per_key=env_int("URL_FETCHES_PER_KEY", 4, minimum=1),
            url_fetches_total=env_int("URL_FETCHES_TOTAL", 32, minimum=1),
            url_accept_wait_sec=env_float("URL_ACCEPT_WAIT_SEC", 3.0, minimum=0.0),
            job_timeout_sec=env_float("JOB_TIMEOUT_SEC", 0.0, minimum=0.0),
            split_accept_timeout_sec=env_float("SPLIT_ACCEPT_TIMEOUT_SEC", 120.0, minimum=1.0),
            s3_bucket=env_str("S3_BUCKET", ""),
            s3_region=env_str("S3_REGION", ""),
            s3_endpoint_url=env_str("S3_ENDPOINT_URL", ""),
            s3_prefix=env_str("S3_PREFIX", "videos/"),
            s3_url_expiry_sec=env_int("S3_URL_EXPIRY_SEC", 3600, minimum=1),
            webhook_secret=env_str("WEBHOOK_SECRET", ""),
            webhook_max_attempts=env_int("WEBHOOK_MAX_ATTEMPTS", 8, minimum=1),
            webhook_retry_backoff_sec=env_float("WEBHOOK_RETRY_BACKOFF_SEC", 1.0, minimum=0.0),
            webhook_timeout_sec=env_float("WEBHOOK_TIMEOUT_SEC", 10.0, minimum=0.1),
            webhook_progress_interval_sec=env_float("WEBHOOK_PROGRESS_INTERVAL_SEC", 10.0, minimum=0.0),
            webhook_allow_private=env_bool("WEBHOOK_ALLOW_PRIVATE", False),
            idempotency_ttl_sec=env_float("IDEMPOTENCY_TTL_SEC", 86400.0, minimum=1.0),
            sse_keepalive_sec=env_float("SSE_KEEPALIVE_SEC", 15.0, minimum=0.1),
            stitcher_wait_sec=env_float("STITCHER_WAIT_SEC", 600.0, minimum=0.0),
            quality_report=env_bool("QUALITY_REPORT", True),
            auth=auth,
            api_keys=os.environ.get("API_KEYS", ""),
            api_keys_file=Path(keys_file) if keys_file else None,
            api_admin_names=env_list("API_ADMIN_NAMES", []),
            rate_limit_per_sec=env_float("RATE_LIMIT_PER_SEC", 20.0, minimum=0.0),
            rate_limit_burst=env_float("RATE_LIMIT_BURST", 40.0, minimum=1.0),
            max_active_jobs_per_key=env_int("MAX_ACTIVE_JOBS_PER_KEY", 20, minimum=0),
            max_uploads_in_flight_mb=env_int("MAX_UPLOADS_IN_FLIGHT_MB", 2048, minimum=0),
            body_read_timeout_sec=env_float("BODY_READ_TIMEOUT_SEC", 30.0, minimum=0.0),
            cors_allowed_origins=env_list("CORS_ALLOWED_ORIGINS", []),
            trusted_hosts=env_list("TRUSTED_HOSTS", ["*"]),
            metrics_port=env_int("METRICS_PORT", 0, minimum=0) if metrics_port else None,
            result_ttl_hours=env_float("RESULT_TTL_HOURS", 72.0, minimum=0.0),
            min_free_disk_mb=env_int("MIN_FREE_DISK_MB", 256, minimum=0),
            disk_full_wait_sec=env_float("DISK_FULL_WAIT_SEC", 600.0, minimum=0.0),
            dispatch_stall_sec=env_float("DISPATCH_STALL_SEC", 60.0, minimum=0.0),
            dispatch_watchdog_sec=env_float("DISPATCH_WATCHDOG_SEC", 5.0, minimum=0.05),
            grpc_workers=grpc_workers,
            grpc_streams_per_key=env_int("GRPC_STREAMS_PER_KEY", 16, minimum=1),
            grpc_streams_total=grpc_streams_total,
        )
