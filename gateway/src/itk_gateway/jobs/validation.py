"""Checks on what clients send, before any work starts.

Sizes: width and height must lie in 1..4096 (the seed API's range). The gateway passes them on
unchanged; each generator backend decides the size it renders: the preview backend rounds down
to even numbers (H.264 4:2:0 needs them, at least 2), InfiniteTalk maps the request to the nearest
of its resolution buckets (the 480p or 720p family) by aspect ratio. The stitcher then works at
the size the parts actually have.

Audio is not decoded here: the splitter decides, and its INVALID_ARGUMENT becomes a validation
error before the job is accepted. Videos given as the reference are checked in reference.py.
"""

from __future__ import annotations

import io
import math
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from PIL import Image, UnidentifiedImageError

from itk_gateway.errors import InvalidInputError
from itk_gateway.options import JobOptions

MAX_DIMENSION = 4096
MAX_PROMPT_CHARS = 4000
MAX_URL_CHARS = 2048
# Lanes a job may ask for (the splitter's limit).
MAX_LANES = 64
# 32 hex digits (128 random bits) since ids became unguessable; 8 in ids made before that.
JOB_ID_PATTERN = re.compile(r"^job-[0-9]{1,20}-(?:[0-9a-f]{32}|[0-9a-f]{8})$")
IMAGE_FORMATS = {"PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF"}
SAMPLING_FIELDS = {
    "preset": str, "steps": int, "shift": float, "text_guidance": float, "audio_guidance": float,
    "motion_frames": int, "teacache": bool, "color_correction": bool, "resolution": str,
}
# Inclusive bounds of the numeric settings (0 = the preset's value). Beyond them a value is a
# mistake (or an attack: 2^40 steps), refused before any work rather than failing the job later.
SAMPLING_BOUNDS = {
    "steps": (0, 1000), "shift": (0.0, 100.0), "text_guidance": (0.0, 100.0), "audio_guidance": (0.0, 100.0),
    "motion_frames": (0, 1000),
}
PRESETS = {"", "quality", "fast"}
RESOLUTIONS = {"", "480p", "720p"}
VIDEO_EXTEND_MODES = {"", "hold", "pingpong"}


def new_job_id() -> str:
    """`job-<unix seconds>-<32 hex>`: the seed API's shape, with 128 random bits so that an id
    cannot be guessed (ownership is still checked on every access)."""
    return f"job-{int(time.time())}-{secrets.token_hex(16)}"


def is_job_id(value: str) -> bool:
    return bool(JOB_ID_PATTERN.fullmatch(value))


def new_seed() -> int:
    return secrets.randbelow(2**31 - 1) + 1


# Remote GPU providers a deployment may add as pools (GENERATOR_POOLS); named in the error when absent.
REMOTE_PROVIDERS = ("runpod", "beam", "modal")


@dataclass
class OptionRules:
    """What the deployment allows: configured pools, S3, and alias names for pools."""

    pools: list[str]
    default_pool: str
    aliases: dict[str, str]
    s3_enabled: bool
    webhooks_enabled: bool = False
    # Why a webhook URL may not be used (None: it may); see jobs/webhooks.py.
    webhook_url_problem: Callable[[str], str | None] = lambda _url: None


def resolve_pool(requested: str, rules: OptionRules) -> str:
    """The pool a request's `provider` selects.

    A pool of that name wins over an alias of it, so a deployment with a `runpod` pool sends seed
    clients' default `runpod` there, and one without keeps the alias to its default pool.
    """
    name = (requested or "").strip() or rules.default_pool
    if name not in rules.pools:
        name = rules.aliases.get(name, name)
    if name not in rules.pools:
        # Aliases are listed too: seed clients know the pools by those names (e.g. "runpod").
        aliases = [f"{alias} (= {pool})" for alias, pool in sorted(rules.aliases.items())
                   if pool in rules.pools and alias not in rules.pools]
        configured = ", ".join(rules.pools + aliases)
        if name in REMOTE_PROVIDERS:
            raise InvalidInputError(
                f"provider: {name} is not configured on this deployment; configured providers: {configured}"
            )
        raise InvalidInputError(f"provider: unknown provider {requested!r}; configured providers: {configured}")
    return name


def check_dimension(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"{name}: must be an integer")
    if not 1 <= value <= MAX_DIMENSION:
        raise InvalidInputError(f"{name}: must be between 1 and {MAX_DIMENSION}, got {value}")
    return value


def check_sampling(raw: dict[str, Any] | None) -> dict[str, Any]:
    sampling: dict[str, Any] = {}
    for key, value in (raw or {}).items():
        kind = SAMPLING_FIELDS.get(key)
        if kind is None:
            raise InvalidInputError(f"sampling.{key}: unknown setting; known: {', '.join(SAMPLING_FIELDS)}")
        if kind is bool and not isinstance(value, bool):
            raise InvalidInputError(f"sampling.{key}: must be true or false")
        if kind in (int, float) and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise InvalidInputError(f"sampling.{key}: must be a number")
        if kind in (int, float) and not math.isfinite(value):
            raise InvalidInputError(f"sampling.{key}: must be a finite number")
        if kind is int and int(value) != value:
            raise InvalidInputError(f"sampling.{key}: must be an integer")
        if kind in (int, float):
            low, high = SAMPLING_BOUNDS[key]
            if not low <= value <= high:
                raise InvalidInputError(f"sampling.{key}: must be between {low} and {high}, got {value:g}")
        if kind is str and not isinstance(value, str):
            raise InvalidInputError(f"sampling.{key}: must be a string")
        sampling[key] = kind(value)
    if sampling.get("preset", "") not in PRESETS:
        raise InvalidInputError(f"sampling.preset: must be one of quality, fast; got {sampling['preset']!r}")
    if sampling.get("resolution", "") not in RESOLUTIONS:
        raise InvalidInputError(f"sampling.resolution: must be 480p or 720p; got {sampling['resolution']!r}")
    return sampling


def check_options(options: JobOptions, rules: OptionRules) -> JobOptions:
    """Validate and normalise in place (provider alias -> pool name, seed 0 -> random)."""
    check_dimension("width", options.width)
    check_dimension("height", options.height)
    options.pool = resolve_pool(options.pool, rules)
    if len(options.prompt) > MAX_PROMPT_CHARS:
        raise InvalidInputError(f"prompt: at most {MAX_PROMPT_CHARS} characters")
    if options.push_to_s3 and not rules.s3_enabled:
        raise InvalidInputError("push_to_s3: S3 is not configured on this server (S3_BUCKET is unset)")
    if options.seed < 0 or options.seed >= 2**63:
        raise InvalidInputError("seed: must be between 0 and 2^63-1")
    if options.seed == 0:
        options.seed = new_seed()
    if not math.isfinite(options.chunk_target_sec) or not 0 <= options.chunk_target_sec <= 3600:
        raise InvalidInputError("chunk_target_sec: must be between 0 (server default) and 3600")
    if isinstance(options.lanes, bool) or not isinstance(options.lanes, int) or not 0 <= options.lanes <= MAX_LANES:
        raise InvalidInputError(
            f"lanes: must be an integer between 0 (one per generator) and {MAX_LANES}, got {options.lanes!r}")
    options.sampling = check_sampling(options.sampling)
    options.webhook_url = check_webhook_url(options.webhook_url)
    if options.webhook_url and not rules.webhooks_enabled:
        raise InvalidInputError("webhook_url: webhooks are not configured on this server (WEBHOOK_SECRET is unset)")
    if options.webhook_url and (problem := rules.webhook_url_problem(options.webhook_url)):
        raise InvalidInputError(f"webhook_url: {problem}")
    if options.video_extend not in VIDEO_EXTEND_MODES:
        raise InvalidInputError(f"video_extend: must be hold or pingpong; got {options.video_extend!r}")
    return options


def check_webhook_url(url: str) -> str:
    url = (url or "").strip()
    if not url:
        return ""
    if len(url) > MAX_URL_CHARS:
        raise InvalidInputError(f"webhook_url: at most {MAX_URL_CHARS} characters")
    parsed = urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise InvalidInputError(f"webhook_url: must be an http:// or https:// URL with a host, got {url!r}")
    return url


SNIFF_BYTES = 64


def audio_format(head: bytes) -> str | None:
    """The audio container the first bytes of a file belong to (WAV, MP3, FLAC, OGG, M4A), or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "WAV"
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "MP3"
    if head[:4] == b"fLaC":
        return "FLAC"
    if head[:4] == b"OggS":
        return "OGG"
    if head[4:8] == b"ftyp" and head[8:11] == b"M4A":
        return "M4A"
    return None


def check_image(name: str, data: bytes | Path, max_pixels: int) -> tuple[int, int]:
    """Decode the image fully with Pillow; return its size. Rejects non-images and huge images.
    A path is read by Pillow as it decodes, never whole into memory."""
    if isinstance(data, bytes) and not data:
        raise InvalidInputError(f"{name}: empty")
    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as image:
            if image.format not in IMAGE_FORMATS:
                raise InvalidInputError(
                    f"{name}: unsupported image format {image.format}; use one of {', '.join(sorted(IMAGE_FORMATS))}"
                )
            width, height = image.size
            if width * height > max_pixels:
                raise InvalidInputError(f"{name}: {width}x{height} image exceeds {max_pixels} pixels")
            image.load()
    except InvalidInputError:
        raise
    except Image.DecompressionBombError as exc:
        raise InvalidInputError(f"{name}: image exceeds {max_pixels} pixels") from exc
    except UnidentifiedImageError as exc:
        if isinstance(data, bytes):
            head = data[:SNIFF_BYTES]
        else:
            with data.open("rb") as handle:
                head = handle.read(SNIFF_BYTES)
        kind = audio_format(head)
        if kind is not None:
            # The commonest way to get here is a recording sent in the portrait's place.
            raise InvalidInputError(
                f"{name}: this is an audio file ({kind}), not a portrait image or a video; "
                "are the image and the audio swapped? The portrait or video goes in the image field, "
                "the recording in the audio field") from exc
        raise InvalidInputError(f"{name}: not a decodable image") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        # Truncated or corrupt files fail while decoding.
        raise InvalidInputError(f"{name}: image could not be decoded ({exc})") from exc
    if width < 1 or height < 1:
        raise InvalidInputError(f"{name}: image has no pixels")
    return width, height


def check_audio_present(name: str, size: int) -> None:
    if size <= 0:
        raise InvalidInputError(f"{name}: audio is empty")
