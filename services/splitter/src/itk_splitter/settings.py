"""The splitter's settings, read from the environment."""

from __future__ import annotations

from dataclasses import dataclass, field

from itk_common.config import ConfigError, env_float, env_int, env_str

from .options import OptionsError, SplitOptions

# What each variable does; names and defaults come from the reads below (scripts/gen_config_docs.py).
SETTINGS_HELP: dict[str, str | tuple[str, ...]] = {
    "BIND_HOST": "Listen address.",
    "GRPC_PORT": "gRPC port.",
    "CHUNK_TARGET_SEC": "Target chunk length when the request does not set one.",
    "SILENCE_THRESHOLD_DB": "A 40 ms frame is silent below this RMS level (dBFS).",
    "MIN_SILENCE_MS": "A pause must last this long to be a cut candidate (0: any pause).",
    "MIN_CHUNK_SEC": "No chunk is shorter, unless the whole recording is (0: no minimum).",
    "MIN_LANE_SEC": "No lane is shorter, for requests that plan lanes and leave it unset (0: no minimum).",
    "SEAM_FADE_SEC": "Longest cross-fade on each side of a seam, for requests that leave it unset (0: a hard cut).",
    "TARGET_LUFS": "Loudness the whole recording is normalised to (InfiniteTalk's training level).",
    "MAX_UPLOAD_MB": "Largest audio upload.",
    "DECODE_THREADS": "FFmpeg decoder threads per request.",
}

_ENV_OF_OPTION = {
    "chunk_target_sec": "CHUNK_TARGET_SEC",
    "silence_threshold_db": "SILENCE_THRESHOLD_DB",
    "min_silence_sec": "MIN_SILENCE_MS",
    "min_chunk_sec": "MIN_CHUNK_SEC",
    "target_lufs": "TARGET_LUFS",
    "min_lane_sec": "MIN_LANE_SEC",
    "seam_fade_sec": "SEAM_FADE_SEC",
}


@dataclass(frozen=True)
class SplitterSettings:
    # Defaults for every option a request leaves at 0.
    defaults: SplitOptions = field(default_factory=SplitOptions)
    # Uploads larger than this are refused before decoding.
    max_upload_bytes: int = 1024 * 1024 * 1024
    # Uploads are kept in memory up to this size and spill to a temporary file beyond it.
    spool_memory_bytes: int = 64 * 1024 * 1024
    # Decoder threads per request; one keeps a busy pod's requests from fighting over cores.
    decode_threads: int = 1


def settings_from_env() -> SplitterSettings:
    """Read CHUNK_TARGET_SEC, SILENCE_THRESHOLD_DB, MIN_SILENCE_MS, MIN_CHUNK_SEC, TARGET_LUFS, MIN_LANE_SEC,
    SEAM_FADE_SEC, MAX_UPLOAD_MB."""
    defaults = SplitOptions(
        chunk_target_sec=env_float("CHUNK_TARGET_SEC", 45.0),
        silence_threshold_db=env_float("SILENCE_THRESHOLD_DB", -40.0),
        min_silence_sec=env_int("MIN_SILENCE_MS", 500, minimum=0) / 1000.0,
        min_chunk_sec=env_float("MIN_CHUNK_SEC", 2.0, minimum=0.0),
        target_lufs=env_float("TARGET_LUFS", -23.0),
        min_lane_sec=env_float("MIN_LANE_SEC", 30.0, minimum=0.0),
        seam_fade_sec=env_float("SEAM_FADE_SEC", 0.4, minimum=0.0),
    )
    try:
        defaults.validated()
    except OptionsError as exc:
        raise ConfigError(f"{_ENV_OF_OPTION.get(exc.field, exc.field)}: {exc}") from exc
    return SplitterSettings(
        defaults=defaults,
        max_upload_bytes=env_int("MAX_UPLOAD_MB", 1024, minimum=1) * 1024 * 1024,
        decode_threads=env_int("DECODE_THREADS", 1, minimum=1),
    )


def bind_address_from_env() -> tuple[str, int]:
    return env_str("BIND_HOST", "127.0.0.1"), env_int("GRPC_PORT", 50051, minimum=0)
