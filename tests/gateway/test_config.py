"""Reading the gateway's environment: defaults, the seed's names, pools, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from itk_common.config import ConfigError
from itk_gateway.config import Settings

VARIABLES = ("DATA_DIR", "TEMP_DIR", "DB_PATH", "GENERATOR_TARGETS", "GENERATOR_POOLS", "POOL_ALIASES",
             "PROVIDER_ALIASES", "MAX_CONCURRENT_CHUNKS", "DEFAULT_POOL", "DEFAULT_PROVIDER", "GENERATOR_TARGETS_FILE",
             "PORT", "S3_BUCKET")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_defaults() -> None:
    settings = Settings.from_env()
    assert settings.port == 8080 and settings.grpc_port == 50050
    assert settings.data_dir == Path("/tmp/infinitetalk")
    assert settings.database == Path("/tmp/infinitetalk/jobs.sqlite3")
    assert settings.pool_targets() == {"infinitetalk": ["127.0.0.1:50052"]}
    assert settings.pool_aliases == {"runpod": "infinitetalk"}
    assert settings.max_concurrent_chunks == 8 and settings.max_upload_mb == 200
    assert not settings.s3_enabled


def test_seed_names_and_pools(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEMP_DIR", "/srv/itk")
    monkeypatch.setenv("MAX_CONCURRENT_CHUNKS", "3")
    monkeypatch.setenv("GENERATOR_TARGETS", "gen-a:50052, gen-b:50052")
    monkeypatch.setenv("GENERATOR_POOLS", "fast=fast-gen:50052;hq=hq-1:1,hq-2:2")
    monkeypatch.setenv("POOL_ALIASES", "runpod=infinitetalk,beam=fast")
    settings = Settings.from_env()
    assert settings.data_dir == Path("/srv/itk") and settings.max_concurrent_chunks == 3
    assert settings.pool_targets() == {"infinitetalk": ["gen-a:50052", "gen-b:50052"],
                                       "fast": ["fast-gen:50052"], "hq": ["hq-1:1", "hq-2:2"]}
    assert settings.pool_aliases == {"runpod": "infinitetalk", "beam": "fast"}
    monkeypatch.setenv("DATA_DIR", "/data")
    assert Settings.from_env().data_dir == Path("/data")


def test_former_pool_variable_names_still_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """DEFAULT_PROVIDER / PROVIDER_ALIASES were the pool settings' names; deployments using them keep working,
    and the new names win when both are set."""
    monkeypatch.setenv("GENERATOR_POOLS", "fast=fast-gen:50052")
    monkeypatch.setenv("DEFAULT_PROVIDER", "fast")
    monkeypatch.setenv("PROVIDER_ALIASES", "quick=fast")
    settings = Settings.from_env()
    assert settings.default_pool == "fast" and settings.pool_aliases == {"quick": "fast"}
    monkeypatch.setenv("DEFAULT_POOL", "infinitetalk")
    monkeypatch.setenv("POOL_ALIASES", "runpod=infinitetalk")
    settings = Settings.from_env()
    assert settings.default_pool == "infinitetalk" and settings.pool_aliases == {"runpod": "infinitetalk"}


@pytest.mark.parametrize(("name", "value", "words"), [
    ("MAX_CONCURRENT_CHUNKS", "many", "MAX_CONCURRENT_CHUNKS"),
    ("MAX_CONCURRENT_CHUNKS", "0", "at least 1"),
    ("GENERATOR_POOLS", "fast", "name=host:port"),
    ("POOL_ALIASES", "runpod", "POOL_ALIASES entry 'runpod' must look like alias=pool"),
    ("PROVIDER_ALIASES", "runpod", "PROVIDER_ALIASES entry 'runpod' must look like alias=pool"),
    ("PORT", "-1", "PORT"),
])
def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch, name: str, value: str, words: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=words):
        Settings.from_env()


def test_one_variable_per_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENERATOR_POOLS", "fast=fast-gen:50052")
    monkeypatch.setenv("GENERATOR_POOL_RUNPOD", "generator-runpod:50052")
    monkeypatch.setenv("GENERATOR_POOL_BEAM", "generator-beam:50052, generator-beam-2:50052")
    assert Settings.from_env().pool_targets() == {
        "infinitetalk": ["127.0.0.1:50052"], "fast": ["fast-gen:50052"], "runpod": ["generator-runpod:50052"],
        "beam": ["generator-beam:50052", "generator-beam-2:50052"]}


def test_security_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from itk_gateway.metrics import GatewayMetrics
    from itk_gateway.server import build_guard

    for name in ("AUTH", "API_KEYS", "API_KEYS_FILE", "METRICS_PORT", "CORS_ALLOWED_ORIGINS", "TRUSTED_HOSTS"):
        monkeypatch.delenv(name, raising=False)
    defaults = Settings.from_env()
    assert defaults.auth == "auto" and not defaults.auth_required and defaults.metrics_port is None
    assert defaults.cors_allowed_origins == [] and defaults.trusted_hosts == ["*"]
    assert (defaults.rate_limit_per_sec, defaults.max_active_jobs_per_key, defaults.result_ttl_hours) == (20, 20, 72)
    monkeypatch.setenv("BIND_HOST", "0.0.0.0")
    monkeypatch.setenv("METRICS_PORT", "9090")
    monkeypatch.setenv("CORS_ALLOWED_ORIGINS", "https://a.example, https://b.example")
    settings = Settings.from_env()
    assert settings.auth_required and settings.metrics_port == 9090
    assert settings.cors_allowed_origins == ["https://a.example", "https://b.example"]
    metrics = GatewayMetrics(dict, dict)
    for keys, words in (("alice", "name=key"), ("alice=short", "shorter than 16"), ("a b=0123456789abcdef", "name")):
        monkeypatch.setenv("API_KEYS", keys)
        with pytest.raises(ConfigError, match=words):
            build_guard(Settings.from_env(), metrics)
    monkeypatch.delenv("API_KEYS")
    bad_file = tmp_path / "keys"
    bad_file.write_text("alice:not-a-digest\n")
    monkeypatch.setenv("API_KEYS_FILE", str(bad_file))
    with pytest.raises(ConfigError, match="line 1"):
        build_guard(Settings.from_env(), metrics)


def test_shared_database_and_blob_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "BLOB_STORE", "JOB_LEASE_SEC", "JOB_POLL_SEC"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings.from_env()
    assert not settings.shared_database and settings.blob_store == "local"
    assert settings.job_lease_sec == 20.0 and settings.job_poll_sec == 1.0
    monkeypatch.setenv("DATABASE_URL", "postgresql://itk:secret@db:5432/itk")
    monkeypatch.setenv("BLOB_STORE", "s3")
    monkeypatch.setenv("S3_BUCKET", "jobs")
    monkeypatch.setenv("JOB_LEASE_SEC", "9")
    monkeypatch.setenv("JOB_POLL_SEC", "3")
    settings = Settings.from_env()
    assert settings.shared_database and settings.blob_store == "s3" and settings.job_lease_sec == 9.0


@pytest.mark.parametrize(("variables", "message"), [
    ({"DATABASE_URL": "mysql://db/itk"}, "DATABASE_URL must be a postgresql:// URL"),
    ({"BLOB_STORE": "nfs"}, "BLOB_STORE must be local or s3"),
    ({"BLOB_STORE": "s3"}, "BLOB_STORE=s3 needs S3_BUCKET"),
    ({"JOB_LEASE_SEC": "3", "JOB_POLL_SEC": "2"}, "JOB_POLL_SEC=2 must be at most a third of JOB_LEASE_SEC=3"),
])
def test_shared_state_settings_are_checked(monkeypatch: pytest.MonkeyPatch, variables: dict[str, str],
                                           message: str) -> None:
    for name in ("DATABASE_URL", "BLOB_STORE", "JOB_LEASE_SEC", "JOB_POLL_SEC"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        Settings.from_env()


def test_zero_lane_length_and_seam_fade_are_values_and_unset_leaves_them_to_the_splitter(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MIN_LANE_SEC", raising=False)
    monkeypatch.delenv("SEAM_FADE_SEC", raising=False)
    settings = Settings.from_env()
    assert settings.min_lane_sec is None and settings.seam_fade_sec is None
    monkeypatch.setenv("MIN_LANE_SEC", "0")
    monkeypatch.setenv("SEAM_FADE_SEC", "0")
    settings = Settings.from_env()
    assert settings.min_lane_sec == 0.0 and settings.seam_fade_sec == 0.0
    monkeypatch.setenv("SEAM_FADE_SEC", "6")
    with pytest.raises(ConfigError, match="SEAM_FADE_SEC must be at most 5"):
        Settings.from_env()
