"""Where a registry name is spoken to: host, scheme, mirrors; and how often to retry.

Pure: no I/O, unit-tested. The rules, Docker's:

- ``docker.io`` (and its aliases ``index.docker.io``, ``registry-1.docker.io``) is served at
  ``registry-1.docker.io``.
- Plain HTTP only for loopback (127.0.0.0/8, ``localhost``, ::1) and for registries the user
  marks insecure (``host``, ``host:port`` or a CIDR holding the registry's IP address);
  HTTPS for everything else. (Docker first tries TLS without verification for an insecure
  registry; we go straight to HTTP, which is what a test or LAN registry serves.)
- Mirrors are tried in order, before the registry itself, for pulls only. A mirror entry
  is ``host[:port]`` or a URL whose scheme says how to speak to it.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from yarl import URL

from pallet.errors import InvalidArgument
from pallet.image.registry.credentials import DOCKER_HUB_ALIASES

DOCKER_HUB_ENDPOINT = "registry-1.docker.io"


@dataclass(frozen=True)
class Endpoint:
    """One server to send a registry's requests to.

    ``registry`` names whose credentials to present: the registry itself, or the mirror's
    own host (a mirror does not hold the upstream's accounts).
    """

    host: str
    scheme: str
    registry: str
    mirror: bool = False

    def url(self, path: str) -> URL:
        return URL(f"{self.scheme}://{self.host}/v2/{path}")


def canonical_registry(registry: str) -> str:
    """Docker Hub's aliases folded to ``docker.io``; other names as given."""
    return "docker.io" if registry in DOCKER_HUB_ALIASES else registry


def split_host(hostport: str) -> tuple[str, str]:
    """(host, port) of ``host[:port]``; IPv6 literals in brackets, or bare without a port."""
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") else ""
    if hostport.count(":") == 1:
        host, _, port = hostport.partition(":")
        return host, port
    return hostport, ""  # a name, or a bare IPv6 address


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def is_loopback(hostport: str) -> bool:
    host, _ = split_host(hostport)
    if host == "localhost":
        return True
    ip = _ip(host)
    return ip is not None and ip.is_loopback


def plain_http(hostport: str, insecure: Collection[str]) -> bool:
    """May ``hostport`` be spoken to without TLS?"""
    if is_loopback(hostport):
        return True
    host, _ = split_host(hostport)
    ip = _ip(host)
    for entry in insecure:
        if entry in (hostport, host):
            return True
        if "/" in entry and ip is not None:
            try:
                if ip in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue  # not a CIDR after all: a name that cannot match an IP
    return False


def origin(registry: str, insecure: Collection[str]) -> Endpoint:
    """The registry's own endpoint."""
    name = canonical_registry(registry)
    host = DOCKER_HUB_ENDPOINT if name == "docker.io" else name
    if not host:
        raise InvalidArgument("empty registry name", op="resolve registry", obj=registry)
    scheme = "http" if plain_http(host, insecure) else "https"
    return Endpoint(host, scheme, name)


def mirror(entry: str, insecure: Collection[str]) -> Endpoint:
    """A mirror from ``host[:port]`` or ``scheme://host[:port][/]``."""
    if "://" in entry:
        url = URL(entry)
        if url.scheme not in ("http", "https") or not url.host or url.path not in ("", "/"):
            raise InvalidArgument(f"invalid registry mirror: {entry}", obj=entry)
        host = url.raw_authority
        return Endpoint(host, url.scheme, host, mirror=True)
    host = entry.rstrip("/")
    scheme = "http" if plain_http(host, insecure) else "https"
    return Endpoint(host, scheme, host, mirror=True)


def pull_endpoints(
    registry: str, insecure: Collection[str], mirrors: Mapping[str, list[str]]
) -> list[Endpoint]:
    """Mirrors first, then the registry: where to read from, in order."""
    name = canonical_registry(registry)
    entries = [e for key, es in mirrors.items() if canonical_registry(key) == name for e in es]
    return [*(mirror(e, insecure) for e in entries), origin(registry, insecure)]


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff for connection errors and 5xx: bounded in tries and in time.

    ``attempts`` counts every try, the first included; no retry starts after ``deadline``
    seconds from the first try. Delays double from ``first_delay`` up to ``max_delay``,
    each shortened by up to a quarter at random so parallel pulls do not retry in lockstep.
    """

    attempts: int = 5
    first_delay: float = 0.25
    max_delay: float = 4.0
    deadline: float = 60.0

    def next_delay(self, failures: int, elapsed: float) -> float | None:
        """Seconds to wait after the ``failures``-th failed try (1-based), None to give up."""
        base: float = min(self.max_delay, self.first_delay * 2.0 ** (failures - 1))
        if failures >= self.attempts or elapsed + base >= self.deadline:
            return None
        return base * (1 - random.random() / 4)
