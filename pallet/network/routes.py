"""The host's routes, read from /proc, so a new network never takes a subnet the host
already reaches some other way (a VPN, a LAN, another engine's bridge)."""

from __future__ import annotations

import os
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

IPNetwork = IPv4Network | IPv6Network


def _read(path: str) -> list[str]:
    try:
        with open(path, encoding="ascii") as f:
            return f.read().splitlines()
    except FileNotFoundError:  # no IPv6 in this kernel, or no /proc/net at all
        return []


def _v4(lines: list[str]) -> list[IPNetwork]:
    """/proc/net/route: ``Iface Destination Gateway Flags RefCnt Use Metric Mask ...`` with
    addresses as hex words in host (little-endian) byte order."""
    out: list[IPNetwork] = []
    for line in lines[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        dest = IPv4Address(int.from_bytes(bytes.fromhex(fields[1]), "little"))
        mask = int.from_bytes(bytes.fromhex(fields[7]), "little")
        prefix = bin(mask).count("1")
        if prefix:
            out.append(IPv4Network((dest, prefix), strict=False))
    return out


def _v6(lines: list[str]) -> list[IPNetwork]:
    """/proc/net/ipv6_route: ``dest destlen src srclen nexthop metric refcnt use flags
    iface`` with the address as 32 hex digits and the prefix length in hex."""
    out: list[IPNetwork] = []
    for line in lines:
        fields = line.split()
        if len(fields) < 10:
            continue
        prefix = int(fields[1], 16)
        if prefix:
            out.append(IPv6Network((IPv6Address(int(fields[0], 16)), prefix), strict=False))
    return out


def host_routes(proc: str = "/proc") -> list[IPNetwork]:
    """Destinations of the host's routes (IPv4 main table, then IPv6), without default
    routes, each once, in the kernel's order."""
    found = _v4(_read(os.path.join(proc, "net/route"))) + _v6(
        _read(os.path.join(proc, "net/ipv6_route")))
    return list(dict.fromkeys(found))
