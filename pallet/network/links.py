"""Bridges, veth pairs and rate limits on the host: what the engine applies for a bridge
network and for each container on it. Every function blocks (the engine runs them in a
thread); none changes the namespace of the calling thread.

A container on a bridge network::

    bridge (pallet0 / pbr-…, gateway addresses)          container netns
       └── pveth…  (host end: port, hairpin, up)  ══veth══  eth0 (mac, addrs, routes)
           ingress qdisc ─mirred→ pifb… (tbf)   = what the container sends, limited
           root tbf                             = what the container receives, limited

attach() is on the `docker run` path: a handful of netlink requests and one short-lived
thread in the container's namespace, no subprocess. Only rate limits run `tc`.

Kernel and netlink failures come out as pallet errors: Conflict for a name that is
taken, NotFound for a missing bridge or namespace, SystemFailure (with the errno) else.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator

from pallet.errors import (
    Conflict,
    InvalidArgument,
    NotFound,
    NotSupported,
    PalletError,
    SystemFailure,
)
from pallet.linux import netns
from pallet.linux.netlink import (
    TC_H_INGRESS,
    TC_H_ROOT,
    Link,
    RtNetlink,
    format_cidr,
    parse_cidr,
    parse_ip,
    parse_mac,
)

MAX_IFNAME = 15  # IFNAMSIZ less the NUL
_BAD_NAME_CHARS = frozenset("/: \t\n\r\f\v")
_PROC_SYS = "/proc/sys"
_TBF_LATENCY = "50ms"
_GSO_LEGACY_MAX = 65536  # the largest TCP segment before "BIG TCP"


# --- bridges ------------------------------------------------------------------------------


def ensure_bridge(name: str, addrs: list[str], mtu: int | None = None) -> None:
    """The bridge ``name``, up, with the gateway addresses ``addrs`` ("172.18.0.1/16"):
    made if missing, completed if not. Turns on forwarding (IPv4, and IPv6 when an
    address is IPv6) and route_localnet on the bridge, so DNAT from 127.0.0.1 to a
    container works."""
    _check_name(name, "bridge")
    wanted = [_cidr(a) for a in addrs]
    if mtu is not None:
        _check_mtu(mtu)
    with _errors(f"bridge {name}"), RtNetlink() as nl:
        link = nl.link(name)
        if link is None:
            with contextlib.suppress(FileExistsError):  # or a concurrent caller made it
                nl.link_add_bridge(name, mtu)
            link = nl.link(name)
            if link is None:
                raise NotFound(f"bridge {name} vanished while being created", obj=name)
        if link.kind != "bridge":
            raise Conflict(f"cannot create network: {name} exists and is not a bridge "
                           f"({link.kind or 'device'})", op="ensure_bridge", obj=name)
        if mtu is not None and link.mtu != mtu:
            nl.link_set(link.index, mtu=mtu)
        have = {a for _i, a in nl.addrs(link.index)}
        for cidr in wanted:
            if cidr not in have:
                with contextlib.suppress(FileExistsError):  # a concurrent caller's
                    nl.addr_add(link.index, cidr)
        if not link.up:
            nl.link_set(link.index, up=True)
    _sysctl("net/ipv4/ip_forward", "1")
    if any(parse_cidr(a)[0] == socket.AF_INET6 for a in wanted):
        _sysctl("net/ipv6/conf/all/forwarding", "1")
    _sysctl(f"net/ipv4/conf/{name}/route_localnet", "1")


def remove_bridge(name: str) -> None:
    """Delete the bridge ``name`` if it is there (its ports are released, not deleted)."""
    _check_name(name, "bridge")
    with _errors(f"bridge {name}"), RtNetlink() as nl:
        nl.link_del_name(name)


# --- containers ---------------------------------------------------------------------------


def attach(netns_path: str, bridge: str, host_ifname: str, ifname: str, addrs: list[str],
           gateways: list[str], mac: str | None = None, mtu: int | None = None,
           hairpin: bool = True) -> None:
    """Join the namespace at ``netns_path`` to ``bridge``: a veth pair whose host end
    ``host_ifname`` is a port of the bridge, and whose other end is ``ifname`` inside,
    with ``mac``, ``addrs`` and a default route via each of ``gateways``. Without an IPv6
    address IPv6 is turned off on ``ifname`` (as Docker does). On failure nothing of it
    is left."""
    _check_name(bridge, "bridge")
    _check_name(host_ifname, "interface")
    _check_name(ifname, "interface")
    cidrs = [_cidr(a) for a in addrs]
    gws = [_ip(g) for g in gateways]
    if mac is not None:
        try:
            parse_mac(mac)
        except ValueError as exc:
            raise InvalidArgument(f"invalid MAC address: {mac}", obj=mac) from exc
    if mtu is not None:
        _check_mtu(mtu)
    v6 = any(parse_cidr(c)[0] == socket.AF_INET6 for c in cidrs)
    with _errors(f"endpoint {host_ifname}"), RtNetlink() as nl:
        br_link = nl.link(bridge)
        if br_link is None:
            raise NotFound(f"bridge {bridge} not found", op="attach", obj=bridge)
        br = br_link.index
        try:
            fd = netns.fd_of(netns_path)
        except FileNotFoundError as exc:
            raise NotFound(f"network namespace {netns_path} not found", op="attach",
                           obj=netns_path) from exc
        try:
            host = nl.link_add_veth(host_ifname, ifname, fd, mtu=mtu, peer_mac=mac,
                                    master=br, up=True)
            try:
                if hairpin:
                    nl.set_hairpin(host.index, True)
                _widen_gso(nl, host)
                if br_link.gso_ipv4_max_size <= _GSO_LEGACY_MAX:  # its first port, likely
                    _widen_gso(nl, nl.link(bridge))  # its size as its ports allow now
                netns.run_in_fd(fd, lambda: _configure_inside(ifname, cidrs, gws, v6))
            except BaseException:
                with contextlib.suppress(OSError):  # the veth goes; the first error stays
                    nl.link_del(host.index)
                raise
        finally:
            os.close(fd)


def _widen_gso(nl: RtNetlink, link: Link | None) -> None:
    """Let the host build TCP segments as large as the device ``link`` takes ("BIG TCP"
    for IPv4, kernel 6.3 and later; up to 512 KiB for a veth) instead of 64 KiB.

    Set on a bridge and on the host ends of its veths, which carry what the host sends
    to a container's address: that traffic then crosses the bridge and the veth in up to
    eight times fewer pieces. (A published port on a host address does not gain: the
    socket's segment size comes from the route of the address it connects to, loopback,
    before the DNAT.) Not set on a container's end: what a container sends may leave
    through a NIC that takes 64 KiB, and a larger segment would be cut up in software
    there. The kernel lowers a bridge's size by itself when a port that takes less joins
    it. Best effort: a kernel that refuses keeps 64 KiB."""
    if link is None or not link.gso_ipv4_max_size:
        return  # gone, or a kernel without per-device IPv4 sizes
    if link.tso_max_size > link.gso_ipv4_max_size:
        with contextlib.suppress(OSError):
            nl.link_set(link.index, gso_ipv4_max_size=link.tso_max_size)


def detach(host_ifname: str) -> None:
    """Delete the host end of a container's veth (its peer goes with it) and the ifb
    device of its rate limit; nothing happens for what is gone already."""
    _check_name(host_ifname, "interface")
    with _errors(f"endpoint {host_ifname}"), RtNetlink() as nl:
        nl.link_del_name(host_ifname)
        nl.link_del_name(ifb_name(host_ifname))


def release(host_ifname: str) -> None:
    """Stop the host end of a veth whose namespace is about to be removed: the kernel
    deletes the pair with the namespace, off the caller's path, where an explicit delete
    waits ~18 ms for the device to unregister. The ifb of a rate limit lives outside the
    namespace: it is deleted here. Nothing happens for what is gone already."""
    _check_name(host_ifname, "interface")
    with _errors(f"endpoint {host_ifname}"), RtNetlink() as nl:
        index = nl.link_index(host_ifname)
        if index is not None:
            nl.link_set(index, up=False)
        nl.link_del_name(ifb_name(host_ifname))


def detach_in(netns_path: str, ifname: str) -> None:
    """Delete the interface ``ifname`` inside the namespace at ``netns_path`` (the host end
    of a veth goes with it); nothing happens if either is gone."""
    _check_name(ifname, "interface")

    def delete() -> None:
        with RtNetlink() as nl:
            nl.link_del_name(ifname)

    with _errors(f"interface {ifname} in {netns_path}"):
        try:
            netns.run_in(netns_path, delete)
        except FileNotFoundError:
            return


def list_links(prefixes: tuple[str, ...]) -> list[str]:
    """Names of the host's links that start with any of ``prefixes``."""
    with _errors("links"), RtNetlink() as nl:
        return sorted(link.name for link in nl.links() if link.name.startswith(prefixes))


# --- rate limits --------------------------------------------------------------------------


def set_rates(host_ifname: str, ingress_bps: int | None, egress_bps: int | None) -> None:
    """Limit a container's bandwidth, in bits per second, through its host veth end:
    ``ingress_bps`` what it receives (a tbf qdisc on the host end's egress),
    ``egress_bps`` what it sends (the host end's ingress redirected to an ifb device that
    has the tbf: this kernel has no policer). None lifts that limit. Each call replaces
    the limits set before."""
    _check_name(host_ifname, "interface")
    for label, rate in (("ingress", ingress_bps), ("egress", egress_bps)):
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int)
                                 or rate <= 0):
            raise InvalidArgument(f"invalid network {label} rate {rate!r}: it must be a "
                                  "positive number of bits per second", obj=host_ifname)
    ifb = ifb_name(host_ifname)
    commands = []
    with _errors(f"endpoint {host_ifname}"), RtNetlink() as nl:
        index = nl.link_index(host_ifname)
        if index is None:
            raise NotFound(f"interface {host_ifname} not found", op="set_rates",
                           obj=host_ifname)
        nl.qdisc_del(index, TC_H_ROOT)
        nl.qdisc_del(index, TC_H_INGRESS)
        nl.link_del_name(ifb)
        if ingress_bps is not None:
            commands.append(f"qdisc add dev {host_ifname} root {_tbf(ingress_bps)}")
        if egress_bps is not None:
            nl.link_add(ifb, "ifb", up=True)
            commands += [
                f"qdisc add dev {ifb} root {_tbf(egress_bps)}",
                f"qdisc add dev {host_ifname} handle ffff: ingress",
                f"filter add dev {host_ifname} parent ffff: protocol all prio 1 "
                f"u32 match u32 0 0 action mirred egress redirect dev {ifb}",
            ]
        if not commands:
            return
        try:
            _tc(commands, host_ifname)
        except BaseException:
            nl.qdisc_del(index, TC_H_ROOT)
            nl.qdisc_del(index, TC_H_INGRESS)
            nl.link_del_name(ifb)
            raise


def ifb_name(host_ifname: str) -> str:
    """The ifb device that carries the send limit of ``host_ifname`` ("pifb" + 11 hex)."""
    return "pifb" + hashlib.sha1(host_ifname.encode()).hexdigest()[:11]


def _tbf(rate_bps: int) -> str:
    # The bucket holds 20 ms at the rate, and never less than a few full-size frames,
    # or a big (GSO) packet could never pass.
    burst = max(rate_bps // 8 // 50, 16 * 1024)
    return f"tbf rate {rate_bps}bit burst {burst} latency {_TBF_LATENCY}"


def _tc(commands: list[str], what: str) -> None:
    tc = shutil.which("tc") or next(
        (p for p in ("/usr/sbin/tc", "/sbin/tc") if os.access(p, os.X_OK)), None)
    if tc is None:
        raise NotSupported("network rate limits need tc (iproute2), which is not installed",
                           op="set_rates", obj=what)
    proc = subprocess.run([tc, "-batch", "-"], input="\n".join(commands) + "\n",
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemFailure(f"setting network rate limits on {what}: "
                            f"{proc.stderr.strip() or proc.stdout.strip()}",
                            op="set_rates", obj=what)


# --- inside the container's namespace -----------------------------------------------------


def _configure_inside(ifname: str, cidrs: list[str], gateways: list[str], v6: bool) -> None:
    """Runs in a thread inside the container's namespace: addresses before up (so no
    IPv6 autoconfiguration races them), routes after (a gateway must be reachable)."""
    with RtNetlink() as nl:
        index = nl.link_index(ifname)
        if index is None:
            raise OSError(errno.ENODEV, f"interface {ifname!r} is not in the namespace")
        if not v6:
            # /proc/sys/net shows the namespace of the thread that opens it.
            _sysctl(f"net/ipv6/conf/{ifname}/disable_ipv6", "1", missing_ok=True)
        for cidr in cidrs:
            nl.addr_add(index, cidr)
        nl.link_set(index, up=True)
        for gw in gateways:
            nl.route_add("default", gw, index)


# --- helpers ------------------------------------------------------------------------------


def _sysctl(key: str, value: str, missing_ok: bool = False) -> None:
    """Write /proc/sys/``key`` unless it holds ``value`` already."""
    path = os.path.join(_PROC_SYS, key)
    try:
        with open(path, "r+", encoding="ascii") as f:
            if f.read().strip() != value:
                f.seek(0)
                f.write(value)
    except FileNotFoundError:
        if not missing_ok:
            raise


def _check_name(name: str, what: str) -> None:
    if not name or len(name.encode()) > MAX_IFNAME or name in (".", "..") or any(
            c in _BAD_NAME_CHARS for c in name):
        raise InvalidArgument(f"invalid {what} name {name!r}: it must be 1 to {MAX_IFNAME} "
                              "characters with no '/', ':' or whitespace", obj=name)


def _check_mtu(mtu: int) -> None:
    if isinstance(mtu, bool) or not isinstance(mtu, int) or not 68 <= mtu <= 65535:
        raise InvalidArgument(f"invalid MTU {mtu!r}: it must be between 68 and 65535")


def _cidr(text: str) -> str:
    """``text`` as the kernel will report it back ("fd00:0::1/64" -> "fd00::1/64")."""
    try:
        return format_cidr(*parse_cidr(text))
    except ValueError as exc:
        raise InvalidArgument(f"invalid address {text!r}", obj=text) from exc


def _ip(text: str) -> str:
    try:
        parse_ip(text)
    except ValueError as exc:
        raise InvalidArgument(f"invalid gateway address {text!r}", obj=text) from exc
    return text


@contextlib.contextmanager
def _errors(obj: str) -> Iterator[None]:
    """Kernel errors as pallet errors, naming the object."""
    try:
        yield
    except PalletError:
        raise
    except OSError as exc:
        code = exc.errno or 0
        text = f"{obj}: {exc.strerror or exc}"
        if code == errno.EEXIST:
            raise Conflict(text, obj=obj) from exc
        if code in (errno.ENODEV, errno.ENOENT):
            raise NotFound(text, obj=obj) from exc
        raise SystemFailure(text, obj=obj, errno=code) from exc

