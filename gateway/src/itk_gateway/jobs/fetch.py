"""Fetching `image_url` / `audio_url` inputs, refusing server-side request forgery.

Every hop (the URL and each redirect) is checked before anything is sent: only http and https;
the host name is resolved here and every address it resolves to must be public (not loopback,
private, link-local, cloud metadata, multicast, reserved or unspecified) unless the host or the
address is on the allow-list; the connection then goes to the address that was checked (the
Host header and TLS server name stay the URL's host), so DNS cannot answer differently between
the check and the connection. Redirects are followed by hand, at most `max_redirects`.

The body streams into the job's upload, whose size limit (MAX_UPLOAD_MB, image and audio
together) applies as it arrives; a connect timeout and a total deadline bound the download.
Failures are client errors naming the field, the URL's host and the reason.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

import httpx

from itk_gateway.errors import InvalidInputError, PayloadTooLargeError
from itk_gateway.security.limits import Slots

REDIRECTS = {301, 302, 303, 307, 308}
USER_AGENT = "infinitetalk-gateway (input fetch)"
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class FetchError(InvalidInputError):
    """A URL input could not be fetched (400); the message names the host and the reason."""


class FetchTooLargeError(PayloadTooLargeError):
    """A URL input is larger than the upload limit (413)."""


def refused_reason(address: IpAddress) -> str | None:
    """Why an address may not be fetched from by default, or None when it is public."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return refused_reason(address.ipv4_mapped)
    checks = (
        ("unspecified", address.is_unspecified), ("loopback", address.is_loopback),
        ("link-local (cloud metadata)", address.is_link_local), ("multicast", address.is_multicast),
        ("private", address.is_private), ("reserved", address.is_reserved),
        ("non-public", not address.is_global),
    )
    for reason, hit in checks:
        if hit:
            return f"a {reason} address"
    return None


@dataclass
class AllowList:
    """Trusted hosts: `name`, `name:port`, an IP address or a CIDR network."""

    names: set[str] = field(default_factory=set)
    networks: list[IpNetwork] = field(default_factory=list)

    @classmethod
    def parse(cls, entries: list[str]) -> AllowList:
        allow = cls()
        for entry in entries:
            text = entry.strip().lower()
            if not text:
                continue
            try:
                allow.networks.append(ipaddress.ip_network(text.strip("[]"), strict=False))
            except ValueError:
                allow.names.add(text)
        return allow

    def allows_host(self, host: str, port: int) -> bool:
        host = host.lower().strip("[]")
        return host in self.names or f"{host}:{port}" in self.names

    def allows_address(self, address: IpAddress) -> bool:
        return any(address in network for network in self.networks)


@dataclass(frozen=True)
class FetchSettings:
    allow: AllowList
    connect_timeout_sec: float = 10.0
    total_timeout_sec: float = 120.0
    max_redirects: int = 5


Resolver = Callable[[str, int], list[IpAddress]]
T = TypeVar("T")
# getaddrinfo has no timeout of its own; lookups run here and are waited for at most the connect timeout.
_LOOKUPS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="url-dns")


def resolve(host: str, port: int) -> list[IpAddress]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos))


def pinned(url: httpx.URL, address: IpAddress) -> tuple[httpx.URL, dict[str, str], dict[str, str]]:
    """A request for `url` that connects to `address`, the one that was checked, instead of
    resolving the host again (whose DNS could answer differently the second time): the target,
    its Host header and, for https, the name to verify the certificate against."""
    target = url.copy_with(host=str(address))
    extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
    return target, {"Host": url.netloc.decode("ascii")}, extensions


def first_that_connects(addresses: list[IpAddress], attempt: Callable[[IpAddress], T]) -> T:
    """`attempt` on each checked address in turn until one takes the connection, as a resolving
    client would (`localhost` is ::1, then 127.0.0.1); the last one's failure is raised. A request
    fails with ConnectError before it has sent or received anything, so trying again is safe."""
    for address in addresses[:-1]:
        try:
            return attempt(address)
        except httpx.ConnectError:
            continue
    return attempt(addresses[-1])


class UrlFetcher:
    def __init__(self, settings: FetchSettings, resolver: Resolver = resolve) -> None:
        self.settings = settings
        self.resolver = resolver
        # No proxies from the environment and no automatic redirects: every hop is checked here.
        self.client = httpx.Client(trust_env=False, follow_redirects=False, headers={"User-Agent": USER_AGENT})

    def close(self) -> None:
        self.client.close()

    def fetch(self, name: str, url: str, write: Callable[[bytes], None], max_bytes: int | None = None) -> str:
        """Stream `url` into `write` (which enforces the size limit as bytes arrive); a declared
        Content-Length over `max_bytes` is refused before any byte is read. Returns the host the
        file finally came from."""
        deadline = time.monotonic() + self.settings.total_timeout_sec
        try:
            current = httpx.URL(url.strip())
        except (httpx.InvalidURL, TypeError) as exc:
            raise FetchError(f"{name}: not a valid URL ({exc})") from exc
        for _hop in range(self.settings.max_redirects + 1):
            host = self._check_url(name, current)
            addresses = self._checked_addresses(name, current, host)
            try:
                location = first_that_connects(addresses, partial(
                    self._get, name, current, host, deadline=deadline, write=write, max_bytes=max_bytes))
            except httpx.TimeoutException as exc:
                raise FetchError(f"{name}: {host} timed out ({type(exc).__name__})") from exc
            except httpx.ConnectError as exc:
                raise FetchError(f"{name}: could not connect to {host} ({exc})") from exc
            except httpx.HTTPError as exc:
                raise FetchError(f"{name}: downloading from {host} failed ({type(exc).__name__}: {exc})") from exc
            if location is None:
                return host
            try:
                current = current.join(location)
            except httpx.InvalidURL as exc:
                raise FetchError(f"{name}: {host} redirected to an invalid URL ({exc})") from exc
        raise FetchError(f"{name}: more than {self.settings.max_redirects} redirects (last host {current.host})")

    @staticmethod
    def _check_url(name: str, url: httpx.URL) -> str:
        if url.scheme not in ("http", "https"):
            raise FetchError(f"{name}: only http and https URLs are allowed, not {url.scheme or 'no scheme'!r}")
        if not url.host:
            raise FetchError(f"{name}: the URL has no host")
        return url.host

    def _checked_addresses(self, name: str, url: httpx.URL, host: str) -> list[IpAddress]:
        port = url.port or (443 if url.scheme == "https" else 80)
        lookup = _LOOKUPS.submit(self.resolver, host, port)
        try:
            addresses = lookup.result(timeout=self.settings.connect_timeout_sec)
        except FutureTimeout as exc:
            raise FetchError(f"{name}: host {host} timed out in DNS") from exc
        except (OSError, UnicodeError) as exc:
            raise FetchError(f"{name}: host {host} could not be resolved ({exc})") from exc
        if not addresses:
            raise FetchError(f"{name}: host {host} has no addresses")
        allow = self.settings.allow
        if not allow.allows_host(host, port):
            for address in addresses:
                reason = refused_reason(address)
                if reason is not None and not allow.allows_address(address):
                    shown = host if host == str(address) else f"{host} ({address})"
                    # Name the setting that trusts it: an in-cluster store or a test server is
                    # what a person meets this with, and the fix is on the gateway's side.
                    trusted = f"{host}:{port}"
                    raise FetchError(f"{name}: host {shown} is not allowed: {reason}; to fetch from it, "
                                     f"add it to the gateway's URL_FETCH_ALLOW_HOSTS (e.g. {trusted})")
        return addresses

    def _get(self, name: str, url: httpx.URL, host: str, address: IpAddress, deadline: float,
             write: Callable[[bytes], None], max_bytes: int | None) -> str | None:
        """One request to the checked address; the redirect target, or None once the body is written."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchError(f"{name}: {host} timed out after {self.settings.total_timeout_sec:g} s")
        target, headers, extensions = pinned(url, address)
        timeout = httpx.Timeout(remaining, connect=min(self.settings.connect_timeout_sec, remaining))
        with self.client.stream("GET", target, headers=headers, extensions=extensions, timeout=timeout) as reply:
            if reply.status_code in REDIRECTS and reply.headers.get("location"):
                return reply.headers["location"]
            if reply.status_code >= 400:
                phrase = reply.reason_phrase or "error"
                raise FetchError(f"{name}: {host} answered {reply.status_code} {phrase}")
            if reply.status_code != 200:
                raise FetchError(f"{name}: {host} answered {reply.status_code}, not the file")
            declared = reply.headers.get("content-length", "")
            if max_bytes is not None and declared.isdigit() and int(declared) > max_bytes:
                raise FetchTooLargeError(f"{name}: the file from {host} is too large "
                                         f"({int(declared)} bytes, {max_bytes} allowed)")
            try:
                # As received (no chunk size: httpx would buffer up to it), so the deadline is
                # checked on every read even when a server trickles.
                for data in reply.iter_bytes():
                    if time.monotonic() > deadline:
                        raise FetchError(f"{name}: {host} timed out after {self.settings.total_timeout_sec:g} s")
                    write(data)
            except PayloadTooLargeError as exc:
                raise FetchTooLargeError(f"{name}: the file from {host} is too large ({exc.message})") from exc
        return None


class FetchSlots(Slots):
    """URL downloads running at once, per key and in total: a job with URL inputs takes a slot
    when it is created (refused, never queued, when none is free) and gives it back once its
    inputs are in, so slow servers can tie up at most these many downloads."""

    def refusal(self, key: str) -> str | None:
        """None when a slot was taken; else why not, for the client."""
        full = self.take(key)
        if full == Slots.PER_CALLER:
            return (f"too many URL downloads in flight: at most {self.per_caller} per key (URL_FETCHES_PER_KEY); "
                    "retry when one has finished, or upload the files")
        if full == Slots.TOTAL:
            return (f"too many URL downloads in flight on this gateway: at most {self.total} "
                    "(URL_FETCHES_TOTAL); retry later, or upload the files")
        return None

