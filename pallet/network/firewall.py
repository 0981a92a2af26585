"""Firewall rules for bridge networks and published ports, as one nftables script (pure).

Every rule pallet needs lives in one ``inet`` table of its own (one table serves IPv4 and
IPv6: the kernel has done NAT in ``inet`` tables since 5.2). The script replaces that
table whole in one transaction, so applying the state pallet has IS the reconcile, and
an empty state leaves an empty table. Nothing here names another table or chain, and
no base chain gets a policy other than accept: a drop below only ever matches packets
entering or leaving a pallet bridge.

What the rules do, as dockerd's iptables rules with ``userland-proxy: false``:

  nat prerouting/output   packets for a local address (127.0.0.1 too, from the host)
                          whose protocol and port are published: DNAT to the container
  nat postrouting         masquerade a bridge's subnet leaving by another interface;
                          masquerade host-sourced packets DNAT'd into a bridge (needs
                          route_localnet on the bridge for 127.0.0.1); masquerade DNAT'd
                          packets that come back into the bridge they came from (hairpin;
                          where br_netfilter runs, the kernel bridges such a packet, so a
                          container reaching its own port needs hairpin_mode on its port)
  filter forward          internal bridges: nothing in or out; different pallet bridges
                          never talk, except through published ports; nothing from
                          outside enters a bridge unless published or a reply;
                          icc=false: no IP traffic between the bridge's own containers
                          (this one matches bridged frames only where br_netfilter runs
                          them through IP hooks, as dockerd's rule does)

Ports published on an internal bridge are left out, as dockerd publishes nothing there.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Network, IPv6Network

from pallet.errors import Conflict, InvalidArgument
from pallet.network.ipam import parse_subnet

FAMILY = "inet"  # the nft address family of pallet's table

# nft's own identifier syntax (no quoting of table names in nft 1.0.x)
_TABLE_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
# what the kernel takes as an interface name, less what could break a quoted string
_IFNAME_RE = re.compile(r"[A-Za-z0-9_.@+-]{1,15}")

_V4_ANY = ipaddress.ip_address("0.0.0.0")
_V6_ANY = ipaddress.ip_address("::")


class Proto(StrEnum):
    TCP = "tcp"
    UDP = "udp"
    SCTP = "sctp"


@dataclass(frozen=True)
class Bridge:
    """A pallet bridge: its interface name and subnets (CIDR, IPv4 and/or IPv6)."""

    name: str
    subnets: tuple[str, ...]
    internal: bool = False
    masquerade: bool = True
    icc: bool = True


@dataclass(frozen=True)
class Port:
    """One published port: ``host_ip`` "" (or 0.0.0.0 / ::) means every local address
    of the container address's family; ``bridge`` is the ifname the container is on."""

    proto: str
    host_ip: str
    host_port: int
    container_ip: str
    container_port: int
    bridge: str


@dataclass(frozen=True)
class _Net:
    name: str
    v4: tuple[IPv4Network, ...]
    v6: tuple[IPv6Network, ...]
    internal: bool
    masquerade: bool
    icc: bool


@dataclass(frozen=True, order=True)
class _Dnat:
    version: int
    daddr: str  # "" = any local address
    proto: str
    host_port: int
    to_addr: str
    to_port: int


def validate_table(table: str) -> str:
    if not isinstance(table, str) or not _TABLE_RE.fullmatch(table):
        raise InvalidArgument(f"invalid firewall table name {table!r}: a letter, then at "
                              "most 63 of [A-Za-z0-9_]")
    return table


def _ifname(name: str) -> str:
    if not isinstance(name, str) or not _IFNAME_RE.fullmatch(name) or name in (".", ".."):
        raise InvalidArgument(f"invalid bridge name {name!r}: at most 15 of "
                              "[A-Za-z0-9_.@+-]")
    return name


def _q(name: str) -> str:
    return f'"{name}"'  # names are validated by _ifname: nothing in them needs escaping


def _net(b: Bridge) -> _Net:
    name = _ifname(b.name)
    v4: list[IPv4Network] = []
    v6: list[IPv6Network] = []
    for text in b.subnets:
        try:
            net = parse_subnet(str(text))
        except InvalidArgument as exc:
            raise InvalidArgument(f"bridge {name}: {exc}") from exc
        (v4 if isinstance(net, IPv4Network) else v6).append(net)  # type: ignore[arg-type]
    return _Net(name, tuple(sorted(set(v4))), tuple(sorted(set(v6))), bool(b.internal),
                bool(b.masquerade), bool(b.icc))


def _port_number(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise InvalidArgument(f"invalid {what} {value!r}: must be 1-65535")
    return value


def _dnat(p: Port, nets: dict[str, _Net]) -> _Dnat | None:
    proto = str(p.proto).lower()
    if proto not in tuple(Proto):
        raise InvalidArgument(f"invalid proto: {p.proto}")
    host_port = _port_number(p.host_port, "host port")
    to_port = _port_number(p.container_port, "container port")
    try:
        to_addr = ipaddress.ip_address(str(p.container_ip))
    except ValueError:
        raise InvalidArgument(f"invalid container IP address: {p.container_ip!r}") from None
    net = nets.get(_ifname(p.bridge))
    if net is None:
        raise InvalidArgument(f"port {host_port}/{proto} is published on bridge {p.bridge}, "
                              "which is not a pallet bridge")
    subnets: tuple[IPv4Network | IPv6Network, ...] = (*net.v4, *net.v6)
    if not any(to_addr in n for n in subnets):
        raise InvalidArgument(f"container address {to_addr} is not on bridge {net.name}")
    if net.internal:
        return None
    daddr = ""
    if p.host_ip:
        try:
            host = ipaddress.ip_address(str(p.host_ip).strip("[]"))
        except ValueError:
            raise InvalidArgument(f"invalid IP address: {p.host_ip}") from None
        if host.version != to_addr.version:
            raise InvalidArgument(f"cannot publish {host}:{host_port} to {to_addr}: the "
                                  "addresses are of different IP families")
        if host not in (_V4_ANY, _V6_ANY):
            daddr = host.compressed
    return _Dnat(to_addr.version, daddr, proto, host_port, to_addr.compressed, to_port)


def _map(name: str, key: str, value: str, elements: list[str]) -> list[str]:
    return [f"\tmap {name} {{",
            f"\t\ttype {key} : {value}",
            "\t\telements = {",
            *(f"\t\t\t{e}," for e in elements),
            "\t\t}",
            "\t}"]


def _published(dnats: list[_Dnat]) -> tuple[list[str], list[str]]:
    """Maps of the published ports, and the rules of the chain that looks them up."""
    maps: list[str] = []
    rules: list[str] = []
    for version, ip, addr_t in ((4, "ip", "ipv4_addr"), (6, "ip6", "ipv6_addr")):
        own = [d for d in dnats if d.version == version]
        specific = [f"{d.daddr} . {d.proto} . {d.host_port} : {d.to_addr} . {d.to_port}"
                    for d in own if d.daddr]
        anyaddr = [f"{d.proto} . {d.host_port} : {d.to_addr} . {d.to_port}"
                   for d in own if not d.daddr]
        # a port published on one address is looked up before the every-address ones
        if specific:
            maps += _map(f"published{version}_addr",
                         f"{addr_t} . inet_proto . inet_service",
                         f"{addr_t} . inet_service", specific)
            rules.append(f"\t\tdnat {ip} to {ip} daddr . meta l4proto . th dport "
                         f"map @published{version}_addr")
        if anyaddr:
            maps += _map(f"published{version}", "inet_proto . inet_service",
                         f"{addr_t} . inet_service", anyaddr)
            rules.append(f"\t\tmeta nfproto ipv{version} dnat {ip} to meta l4proto . "
                         f"th dport map @published{version}")
    return maps, rules


def _set(items: Iterable[str]) -> str:
    return "{ " + ", ".join(items) + " }"


def _one_or_set(items: Iterable[str]) -> str:
    listed = list(items)
    return listed[0] if len(listed) == 1 else _set(listed)


def _chain(name: str, hook: str, rules: list[str]) -> list[str]:
    head = [f"\tchain {name} {{"]
    if hook:
        head.append(f"\t\t{hook}; policy accept;")
    return [*head, *rules, "\t}"]


def _postrouting(nets: list[_Net]) -> list[str]:
    rules: list[str] = []
    for n in nets:
        if n.internal:
            continue
        for ip, subnets in (("ip", n.v4), ("ip6", n.v6)):
            if not subnets:
                continue
            src = _one_or_set(str(s) for s in subnets)
            if n.masquerade:
                rules.append(f"\t\t{ip} saddr {src} oifname != {_q(n.name)} masquerade")
            # a container to a published port on its own bridge (its own port too): its
            # peer must answer through the host, not straight to an address it never
            # talked to. Matched by source, not iifname: where br_netfilter bridges the
            # DNAT'd packet there is no input interface at postrouting.
            rules.append(f"\t\t{ip} saddr {src} oifname {_q(n.name)} ct status dnat "
                         "masquerade")
    if nets:
        # the host (127.0.0.1, or any address of its own) to a published port: the
        # container must answer through the host, whatever the source was
        rules.append("\t\toifname @bridges ct status dnat fib saddr type local masquerade")
    return rules


def _forward(nets: list[_Net]) -> list[str]:
    rules: list[str] = []
    for n in nets:
        if n.internal:
            rules.append(f"\t\tiifname {_q(n.name)} oifname != {_q(n.name)} drop")
            rules.append(f"\t\toifname {_q(n.name)} iifname != {_q(n.name)} drop")
    if not nets:
        return rules
    rules.append("\t\toifname @bridges ct state established,related accept")
    rules.append("\t\toifname @bridges ct status dnat accept")
    talk = [n for n in nets if n.icc]
    if talk:
        rules.append(f"\t\tiifname . oifname {_set(f'{_q(n.name)} . {_q(n.name)}' for n in talk)}"
                     " accept")
    # isolation: bridge to another pallet bridge (and icc=false inside one bridge)
    rules.append("\t\tiifname @bridges oifname @bridges drop")
    rules.append("\t\tiifname @bridges accept")
    rules.append("\t\toifname @bridges drop")
    return rules


def ruleset(table: str, bridges: Iterable[Bridge], ports: Iterable[Port]) -> str:
    """The whole script for ``nft -f -``: (re)creates pallet's table with every rule the
    given bridges and published ports need, dropping whatever the table held before."""
    validate_table(table)
    nets = sorted((_net(b) for b in bridges), key=lambda n: n.name)
    by_name: dict[str, _Net] = {}
    for n in nets:
        if n.name in by_name:
            raise InvalidArgument(f"bridge {n.name} is listed twice")
        by_name[n.name] = n
    dnats: list[_Dnat] = []
    seen: dict[tuple[int, str, str, int], _Dnat] = {}
    for p in ports:
        d = _dnat(p, by_name)
        if d is None:
            continue
        key = (d.version, d.daddr, d.proto, d.host_port)
        if key in seen:
            if seen[key] == d:
                continue
            shown = d.daddr or ("0.0.0.0" if d.version == 4 else "::")
            raise Conflict(f"Bind for {shown}:{d.host_port} failed: port is already allocated")
        seen[key] = d
        dnats.append(d)
    dnats.sort()
    maps, published = _published(dnats)
    lines = [f"table {FAMILY} {table}", f"delete table {FAMILY} {table}",
             f"table {FAMILY} {table} {{",
             "\tset bridges {", "\t\ttype ifname"]
    if nets:
        lines.append(f"\t\telements = {_set(_q(n.name) for n in nets)}")
    lines.append("\t}")
    lines += maps
    # packets that reached this host for 127.0.0.0/8 from outside are never published:
    # DNAT before routing would slip them past the kernel's martian check
    lines += _chain("prerouting", "type nat hook prerouting priority dstnat",
                    ["\t\tip daddr 127.0.0.0/8 return", "\t\tip6 daddr ::1 return",
                     "\t\tfib daddr type local jump published"])
    lines += _chain("output", "type nat hook output priority -100",
                    ["\t\tfib daddr type local jump published"])
    lines += _chain("published", "", published)
    lines += _chain("postrouting", "type nat hook postrouting priority srcnat",
                    _postrouting(nets))
    lines += _chain("forward", "type filter hook forward priority filter", _forward(nets))
    lines.append("}")
    return "\n".join(lines) + "\n"


def teardown(table: str) -> str:
    """A script that removes pallet's table, and does nothing when there is none."""
    validate_table(table)
    return f"table {FAMILY} {table}\ndelete table {FAMILY} {table}\n"
