"""Published ports: HostConfig.PortBindings read into bindings, host ports chosen (pure).

The Engine API carries ports as ``{"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}``; a
``HostPort`` may be empty (any free port) or a range (any free port in it). Choosing is
pure: the caller passes which host ports are taken and a probe that asks the host.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pallet.errors import Conflict, InvalidArgument

PROTOS = ("tcp", "udp", "sctp")
EPHEMERAL = (32768, 60999)  # Linux's default ip_local_port_range, which dockerd uses too


@dataclass(frozen=True)
class Wanted:
    """One requested binding: a container port and where on the host to publish it."""

    proto: str
    container_port: int
    host_ip: str  # "" = every address
    host_lo: int  # 0 = any free port
    host_hi: int


@dataclass(frozen=True)
class Published:
    proto: str
    container_port: int
    host_ip: str
    host_port: int

    def overlaps(self, other: Published) -> bool:
        if self.proto != other.proto or self.host_port != other.host_port:
            return False
        return self.host_ip in ("", other.host_ip) or other.host_ip == ""


def parse_key(key: str) -> tuple[int, str]:
    """``"80/tcp"`` -> (80, "tcp"); the protocol defaults to tcp."""
    num, _, proto = str(key).partition("/")
    proto = proto.lower() or "tcp"
    if proto not in PROTOS:
        raise InvalidArgument(f"invalid proto: {proto}")
    return _port(num, key), proto


def _port(text: str, spec: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise InvalidArgument(f"invalid port specification: \"{spec}\"") from None
    if not 0 < n < 65536:
        raise InvalidArgument(f"invalid port specification: \"{spec}\"")
    return n


def _host_ip(text: str) -> str:
    text = text.strip("[]")
    if text in ("", "0.0.0.0", "::"):
        return ""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise InvalidArgument(f"invalid IP address: {text}") from None


def wanted(port_bindings: dict[str, Any] | None, exposed: Iterable[str],
           publish_all: bool) -> list[Wanted]:
    """Every binding the container asks for, validated; ``publish_all`` (-P) publishes
    each exposed port that has no binding on a free host port."""
    out: list[Wanted] = []
    bound: set[tuple[int, str]] = set()
    for key, hosts in sorted((port_bindings or {}).items()):
        cport, proto = parse_key(key)
        bound.add((cport, proto))
        for h in hosts or [{}]:
            if not isinstance(h, dict):
                raise InvalidArgument(f"invalid port binding for {key}")
            hp = str(h.get("HostPort") or "")
            lo = hi = 0
            if hp and hp != "0":
                a, dash, b = hp.partition("-")
                lo = _port(a, hp)
                hi = _port(b, hp) if dash else lo
                if hi < lo:
                    raise InvalidArgument(f"invalid port range: {hp}")
            out.append(Wanted(proto, cport, _host_ip(str(h.get("HostIp") or "")), lo, hi))
    if publish_all:
        for key in sorted(exposed):
            cport, proto = parse_key(key)
            if (cport, proto) not in bound:
                out.append(Wanted(proto, cport, "", 0, 0))
    return out


def choose(want: Iterable[Wanted], taken: Iterable[Published],
           free: Callable[[str, str, int], bool],
           ephemeral: tuple[int, int] = EPHEMERAL) -> list[Published]:
    """A host port for each binding: the asked one, else the first free one in its range
    (or the ephemeral range). ``free(proto, ip, port)`` asks the host whether nothing
    else listens there. Raises Conflict with dockerd's words when a fixed port is taken."""
    have = list(taken)
    out: list[Published] = []
    for w in want:
        lo, hi = (w.host_lo, w.host_hi) if w.host_lo else ephemeral
        chosen: Published | None = None
        for port in range(lo, hi + 1):
            p = Published(w.proto, w.container_port, w.host_ip, port)
            if any(p.overlaps(o) for o in have):
                continue
            if not free(w.proto, w.host_ip, port):
                continue
            chosen = p
            break
        if chosen is None:
            where = f"{w.host_ip or '0.0.0.0'}:{w.host_lo}" if w.host_lo == w.host_hi else \
                f"{w.host_ip or '0.0.0.0'}:{w.host_lo}-{w.host_hi}"
            if not w.host_lo:
                raise Conflict("no free host port in the ephemeral range "
                               f"{ephemeral[0]}-{ephemeral[1]}")
            raise Conflict(f"Bind for {where} failed: port is already allocated")
        have.append(chosen)
        out.append(chosen)
    return out


def settings(published: Iterable[Published], exposed: Iterable[str]) -> dict[str, Any]:
    """NetworkSettings.Ports as dockerd shapes it: every exposed port, null if unpublished."""
    out: dict[str, Any] = {}
    for key in exposed:
        cport, proto = parse_key(key)
        out.setdefault(f"{cport}/{proto}", None)
    for p in published:
        key = f"{p.container_port}/{p.proto}"
        out[key] = (out.get(key) or []) + [{"HostIp": p.host_ip or "0.0.0.0",
                                            "HostPort": str(p.host_port)}]
    return out


def listing(ports: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The ``Ports`` of GET /containers/json from NetworkSettings.Ports."""
    out: list[dict[str, Any]] = []
    for key, binds in (ports or {}).items():
        cport, proto = parse_key(key)
        if not binds:
            out.append({"PrivatePort": cport, "Type": proto})
            continue
        for b in binds:
            out.append({"IP": b["HostIp"], "PrivatePort": cport,
                        "PublicPort": int(b["HostPort"]), "Type": proto})
    return out
