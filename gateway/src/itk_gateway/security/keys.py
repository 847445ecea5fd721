"""API keys and the principals they stand for.

Keys come from `API_KEYS` (`name=key,...`: the keys themselves, for small setups and tests) and
`API_KEYS_FILE` (one `name:sha256-hex-of-key[:admin]` per line, so the file holds no secret; it
is re-read when it changes, so keys are added and revoked without a restart). `API_ADMIN_NAMES`
marks keys as admin by name, in either source. Only SHA-256 digests are kept in memory.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from itk_common.config import ConfigError

log = logging.getLogger(__name__)
KEY_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
# How often the keys file is looked at for changes, at most.
FILE_CHECK_SEC = 1.0


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's name (the owner of the jobs it creates) and whether it sees all jobs."""

    name: str
    admin: bool = False

    def can_see(self, owner: str) -> bool:
        return self.admin or owner == self.name


# Authentication off (loopback without keys): one tenant who sees everything.
ANONYMOUS = Principal("", admin=True)


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def parse_inline_keys(raw: str) -> dict[str, str]:
    """`name=key,...` -> {sha256 digest: name}."""
    keys: dict[str, str] = {}
    for entry in raw.split(","):
        if not entry.strip():
            continue
        name, sep, key = entry.partition("=")
        name, key = name.strip(), key.strip()
        if not sep or not KEY_NAME.fullmatch(name) or not key:
            raise ConfigError(f"API_KEYS entry for {name or '?'!r} must look like name=key "
                              "(name: letters, digits, _ . @ -)")
        if len(key) < 16:
            raise ConfigError(f"API_KEYS: the key of {name!r} is shorter than 16 characters")
        keys[digest(key)] = name
    return keys


def parse_keys_file(text: str, source: str) -> tuple[dict[str, str], set[str]]:
    """Lines `name:sha256[:admin]` (blank lines and `#` comments skipped) -> ({digest: name}, admins)."""
    keys: dict[str, str] = {}
    admins: set[str] = set()
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = [f.strip() for f in line.split(":")]
        well_formed = (len(fields) in (2, 3) and KEY_NAME.fullmatch(fields[0])
                       and SHA256_HEX.fullmatch(fields[1].lower()))
        if not well_formed:
            raise ConfigError(f"{source} line {number}: expected name:sha256-hex-of-key[:admin]")
        if len(fields) == 3 and fields[2] != "admin":
            raise ConfigError(f"{source} line {number}: the third field may only be 'admin'")
        keys[fields[1].lower()] = fields[0]
        if len(fields) == 3:
            admins.add(fields[0])
    return keys, admins


class KeyRing:
    """Resolves presented keys to principals; follows changes of the keys file."""

    def __init__(self, inline: str = "", path: Path | None = None, admin_names: set[str] | None = None) -> None:
        self._inline = parse_inline_keys(inline)
        self._admin_names = set(admin_names or ())
        self._path = path
        self._lock = threading.Lock()
        self._file_keys: dict[str, str] = {}
        self._file_admins: set[str] = set()
        self._file_stamp: tuple[int, int] | None = None
        self._checked = 0.0
        if path is not None:
            self._load_file(strict=True)

    @property
    def configured(self) -> bool:
        """Whether any key source is set (a keys file that is empty still counts: it locks the door)."""
        return bool(self._inline) or self._path is not None

    def _load_file(self, strict: bool) -> None:
        assert self._path is not None
        try:
            stat = os.stat(self._path)
        except FileNotFoundError:
            # Not there (yet): on Kubernetes an optional Secret created later appears in the mounted
            # folder within a minute, and is picked up then without a restart. Until then: no keys.
            if strict or self._file_keys:
                log.warning("API_KEYS_FILE %s does not exist: no key from it is accepted", self._path)
            self._file_keys, self._file_admins, self._file_stamp = {}, set(), None
            return
        try:
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp == self._file_stamp:
                return
            keys, admins = parse_keys_file(self._path.read_text(), f"API_KEYS_FILE {self._path}")
        except (OSError, ConfigError) as exc:
            if strict:
                raise ConfigError(f"API_KEYS_FILE: {exc}") from exc
            # A half-written or briefly missing file (a Secret being updated) keeps the last good keys.
            log.warning("keeping the previous API keys: %s", exc)
            return
        self._file_keys, self._file_admins, self._file_stamp = keys, admins, stamp
        log.info("loaded %d API key(s) from %s", len(keys), self._path)

    def lookup(self, key: str) -> Principal | None:
        if not key:
            return None
        if self._path is not None:
            with self._lock:
                now = time.monotonic()
                if now - self._checked >= FILE_CHECK_SEC:
                    self._checked = now
                    self._load_file(strict=False)
        hashed = digest(key)
        name = self._inline.get(hashed) or self._file_keys.get(hashed)
        if name is None:
            return None
        return Principal(name, admin=name in self._admin_names or name in self._file_admins)
