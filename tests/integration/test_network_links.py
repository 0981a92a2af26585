"""Bridges, veths and namespaces on the real kernel: two namespaces on a private bridge
talk to each other, what the container sees is what was asked, detach cuts them off,
rate limits hold, and nothing is left after.

Traffic goes only between this test's own namespaces and its own bridge, on a subnet
of 10.234.0.0/16 (and a random ULA /64) that the host does not route anywhere else.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from pallet.errors import Conflict, InvalidArgument, NotFound, PalletError
from pallet.linux import netns
from pallet.linux.netlink import Link, RtNetlink
from pallet.network import links
from pallet.network.routes import host_routes

pytestmark = pytest.mark.root

BUSYBOX = "/bin/busybox"


@dataclass
class Net:
    bridge: str
    v4: ipaddress.IPv4Network
    v6: ipaddress.IPv6Network

    def ip4(self, host: int) -> str:
        return str(self.v4[host])

    def cidr4(self, host: int) -> str:
        return f"{self.v4[host]}/{self.v4.prefixlen}"

    def ip6(self, host: int) -> str:
        return str(self.v6[host])

    def cidr6(self, host: int) -> str:
        return f"{self.v6[host]}/{self.v6.prefixlen}"


def free_subnet() -> tuple[ipaddress.IPv4Network, ipaddress.IPv6Network]:
    taken = host_routes()
    for _ in range(50):
        v4 = ipaddress.IPv4Network(f"10.234.{secrets.randbelow(256)}.0/24")
        v6 = ipaddress.IPv6Network(f"fd{secrets.token_hex(1)}:{secrets.token_hex(2)}:"
                                   f"{secrets.token_hex(2)}::/64")
        if not any(v4.overlaps(r) or v6.overlaps(r) for r in taken if r.version in (4, 6)
                   and r.prefixlen > 0):
            return v4, v6
    pytest.fail("no free 10.234.x.0/24 on this host")


def mounts_under(path: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if path in line]


@pytest.fixture
def net() -> Iterator[Net]:
    v4, v6 = free_subnet()
    name = f"ptest{secrets.token_hex(3)}"
    n = Net(name, v4, v6)
    try:
        links.ensure_bridge(name, [n.cidr4(1), n.cidr6(1)])
        yield n
    finally:
        links.remove_bridge(name)
        assert links.list_links((name,)) == []


@pytest.fixture
def nsdir(tmp_path: object) -> Iterator[str]:
    """Where this test's namespaces live; afterwards none is mounted, nor the dir."""
    d = os.path.join(str(tmp_path), "netns")
    try:
        yield d
    finally:
        for name in os.listdir(d) if os.path.isdir(d) else []:
            netns.remove(os.path.join(d, name))
        assert mounts_under(d) == []


@pytest.fixture
def new_ns(nsdir: str) -> Iterator[Callable[[], str]]:
    made: list[str] = []

    def make() -> str:
        path = os.path.join(nsdir, f"c{len(made)}")
        netns.create(path)
        made.append(path)
        return path

    try:
        yield make
    finally:
        for path in made:
            netns.remove(path)


@pytest.fixture
def host_if() -> Iterator[Callable[[], str]]:
    """Fresh host veth names; each one (and its ifb) is gone after the test."""
    names: list[str] = []

    def make() -> str:
        names.append(f"pveth{secrets.token_hex(4)}")
        return names[-1]

    try:
        yield make
    finally:
        for name in names:
            links.detach(name)
        ifbs = tuple(links.ifb_name(n) for n in names)
        assert links.list_links(tuple(names) + ifbs) == []


def in_ns(path: str, *argv: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nsenter", f"--net={path}", *argv], capture_output=True,
                          text=True, timeout=timeout, check=False)


def ping(path: str, ip: str) -> bool:
    return in_ns(path, BUSYBOX, "ping", "-c", "1", "-W", "2", ip).returncode == 0


def link_in(path: str, name: str) -> tuple[Link, list[str]]:
    def look() -> tuple[Link, list[str]]:
        with RtNetlink() as nl:
            link = nl.link(name)
            assert link is not None, f"{name} not in {path}"
            return link, [a for _i, a in nl.addrs(link.index)]

    return netns.run_in(path, look)


def index_in(path: str, name: str) -> int | None:
    def look() -> int | None:
        with RtNetlink() as nl:
            return nl.link_index(name)

    return netns.run_in(path, look)


def sysctl(key: str) -> str:
    with open(f"/proc/sys/{key}") as f:
        return f.read().strip()


# --- namespaces ---------------------------------------------------------------------------


def test_netns_create_run_in_remove(nsdir: str) -> None:
    path = os.path.join(nsdir, "one")
    mine = os.readlink("/proc/thread-self/ns/net")
    netns.create(path)
    try:
        assert oct(os.stat(nsdir).st_mode & 0o777) == "0o700"
        inside = netns.run_in(path, lambda: os.readlink("/proc/thread-self/ns/net"))
        assert inside != mine and inside.startswith("net:[")
        assert os.readlink("/proc/thread-self/ns/net") == mine
        assert os.stat(path).st_ino == int(inside[5:-1])  # the file is that namespace

        def lo() -> tuple[bool, list[str]]:
            with RtNetlink() as nl:
                link = nl.link("lo")
                assert link is not None
                return link.up, sorted(a for _i, a in nl.addrs(link.index))

        assert netns.run_in(path, lo) == (True, ["127.0.0.1/8", "::1/128"])
        with pytest.raises(FileExistsError):
            netns.create(path)
    finally:
        netns.remove(path)
    netns.remove(path)  # gone already: no error
    assert not os.path.exists(path)
    assert mounts_under(nsdir) == []


def test_run_in_raises_the_functions_error_here(new_ns: Callable[[], str]) -> None:
    path = new_ns()

    def fail() -> None:
        raise KeyError("inside")

    with pytest.raises(KeyError, match="inside"):
        netns.run_in(path, fail)
    with pytest.raises(FileNotFoundError):
        netns.run_in(path + "-missing", lambda: None)


def test_namespaces_made_concurrently(nsdir: str) -> None:
    paths = [os.path.join(nsdir, f"n{i}") for i in range(8)]
    errors: list[BaseException] = []

    def churn(mine: list[str]) -> None:
        try:
            for p in mine:
                netns.create(p)
            for p in mine:
                netns.remove(p)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=(paths[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert os.listdir(nsdir) == []
    assert mounts_under(nsdir) == []


# --- bridges ------------------------------------------------------------------------------


def test_ensure_bridge_is_idempotent(net: Net) -> None:
    links.ensure_bridge(net.bridge, [net.cidr4(1), net.cidr6(1)])
    links.ensure_bridge(net.bridge, [net.cidr4(1)], mtu=1400)
    with RtNetlink() as nl:
        link = nl.link(net.bridge)
        assert link is not None
        assert (link.kind, link.up, link.mtu) == ("bridge", True, 1400)
        assert sorted(a for _i, a in nl.addrs(link.index) if not a.startswith("fe80:")) == \
            sorted([net.cidr4(1), net.cidr6(1)])
    assert sysctl("net/ipv4/ip_forward") == "1"
    assert sysctl("net/ipv6/conf/all/forwarding") == "1"
    assert sysctl(f"net/ipv4/conf/{net.bridge}/route_localnet") == "1"


def test_ensure_bridge_refuses_a_device_of_another_kind() -> None:
    name = f"ptest{secrets.token_hex(3)}"
    with RtNetlink() as nl:
        nl.link_add(name, "ifb")
    try:
        with pytest.raises(Conflict, match="not a bridge"):
            links.ensure_bridge(name, [])
    finally:
        links.remove_bridge(name)
    assert links.list_links((name,)) == []


def test_names_are_checked() -> None:
    with pytest.raises(InvalidArgument, match="1 to 15"):
        links.ensure_bridge("pbr-0123456789ab", [])
    with pytest.raises(InvalidArgument):
        links.attach("/nonexistent", "pallet0", "pveth0123456789a", "eth0", [], [])
    with pytest.raises(InvalidArgument):
        links.attach("/nonexistent", "pallet0", "pveth01234567", "eth/0", [], [])
    with pytest.raises(InvalidArgument, match="address"):
        links.attach("/nonexistent", "pallet0", "pveth01234567", "eth0", ["10.1.2.3/40"], [])
    with pytest.raises(InvalidArgument, match="MAC"):
        links.attach("/nonexistent", "pallet0", "pveth01234567", "eth0", [], [], mac="zz")
    assert len(links.ifb_name("pveth01234567")) <= 15


# --- containers ---------------------------------------------------------------------------


def test_two_namespaces_talk_through_the_bridge(net: Net, new_ns: Callable[[], str],
                                               host_if: Callable[[], str]) -> None:
    a, b = new_ns(), new_ns()
    ha, hb = host_if(), host_if()
    with RtNetlink() as nl:
        bridge_before = nl.link(net.bridge)
    # the host may have an eth0 too: what is done to the container's must not touch it
    host_eth0 = "net/ipv6/conf/eth0/disable_ipv6"
    host_eth0_before = sysctl(host_eth0) if os.path.exists(f"/proc/sys/{host_eth0}") else None
    links.attach(a, net.bridge, ha, "eth0", [net.cidr4(2)], [net.ip4(1)],
                 mac="02:42:0a:ea:00:02", mtu=1400)
    links.attach(b, net.bridge, hb, "eth0", [net.cidr4(3), net.cidr6(3)],
                 [net.ip4(1), net.ip6(1)])

    link, addrs = link_in(a, "eth0")
    assert (link.mac, link.mtu, link.up) == ("02:42:0a:ea:00:02", 1400, True)
    assert addrs == [net.cidr4(2)]  # IPv6 is off: not even a link-local address
    assert in_ns(a, "cat", "/proc/sys/net/ipv6/conf/eth0/disable_ipv6").stdout.strip() == "1"
    if host_eth0_before is not None:
        assert sysctl(host_eth0) == host_eth0_before
    assert f"default via {net.ip4(1)} dev eth0" in in_ns(a, "ip", "-4", "route").stdout
    _link, addrs_b = link_in(b, "eth0")
    assert {net.cidr4(3), net.cidr6(3)} <= set(addrs_b)
    assert f"default via {net.ip6(1)} dev eth0" in in_ns(b, "ip", "-6", "route").stdout

    with RtNetlink() as nl:
        bridge = nl.link_index(net.bridge)
        # the bridge keeps its own MAC as ports join (containers' ARP entries stay good)
        bridge_now = nl.link(net.bridge)
        assert bridge_before is not None and bridge_now is not None
        assert bridge_now.mac == bridge_before.mac
        for name, mtu in ((ha, 1400), (hb, 1500)):
            host = nl.link(name)
            assert host is not None
            assert (host.kind, host.master, host.up, host.mtu) == ("veth", bridge, True, mtu)
    for name in (ha, hb):
        with open(f"/sys/class/net/{name}/brport/hairpin_mode") as f:
            assert f.read().strip() == "1"

    assert ping(a, net.ip4(3))
    assert ping(b, net.ip4(2))
    assert ping(a, net.ip4(1))  # the gateway: the bridge's own address
    assert ping(b, net.ip6(1))

    links.detach(ha)
    assert links.list_links((ha,)) == []
    assert not ping(b, net.ip4(2))
    assert index_in(a, "eth0") is None
    links.detach(ha)  # gone already: no error


def test_the_host_side_takes_big_tcp_segments(net: Net, new_ns: Callable[[], str],
                                              host_if: Callable[[], str]) -> None:
    """The bridge and the host end of a veth take IPv4 segments as large as the device
    does ("BIG TCP", what the host sends to containers); the container's end keeps
    64 KiB (what it sends may leave by a NIC that takes no more); bytes arrive whole."""
    a = new_ns()
    ha = host_if()
    links.attach(a, net.bridge, ha, "eth0", [net.cidr4(2)], [net.ip4(1)])
    with RtNetlink() as nl:
        host, bridge = nl.link(ha), nl.link(net.bridge)
    inside, _addrs = link_in(a, "eth0")
    assert host is not None and bridge is not None
    if not host.gso_ipv4_max_size:
        pytest.skip("this kernel has no per-device IPv4 GSO size (before 6.3)")
    assert host.tso_max_size > 65536
    assert host.gso_ipv4_max_size == host.tso_max_size
    assert bridge.gso_ipv4_max_size == bridge.tso_max_size > 65536
    assert inside.gso_ipv4_max_size == 65536

    # the host sends through the bridge with its big segments; every byte arrives
    server = netns.run_in(a, lambda: socket.create_server((net.ip4(2), 0)))
    port = server.getsockname()[1]
    got: list[bytes] = []

    def drain() -> None:
        conn, _ = server.accept()
        with conn:
            digest = hashlib.sha256()
            while chunk := conn.recv(1 << 20):
                digest.update(chunk)
            got.append(digest.digest())

    reader = threading.Thread(target=drain)
    reader.start()
    data = secrets.token_bytes(1 << 20) * 32
    try:
        with socket.create_connection((net.ip4(2), port), timeout=20) as client:
            client.sendall(data)
        reader.join(timeout=30)
    finally:
        server.close()
    assert got == [hashlib.sha256(data).digest()]


def test_second_network_and_detach_in(net: Net, new_ns: Callable[[], str],
                                      host_if: Callable[[], str]) -> None:
    a = new_ns()
    h0, h1 = host_if(), host_if()
    links.attach(a, net.bridge, h0, "eth0", [net.cidr4(2)], [net.ip4(1)])
    links.attach(a, net.bridge, h1, "eth1", [net.cidr4(12)], [], hairpin=False)
    with open(f"/sys/class/net/{h1}/brport/hairpin_mode") as f:
        assert f.read().strip() == "0"
    assert in_ns(a, "ip", "-4", "route", "show", "default").stdout.count("default") == 1
    links.detach_in(a, "eth1")
    assert links.list_links((h1,)) == []
    assert links.list_links((h0,)) == [h0]
    links.detach_in(a, "eth1")  # gone already: no error


def test_failed_attach_leaves_nothing(net: Net, new_ns: Callable[[], str],
                                      host_if: Callable[[], str]) -> None:
    a = new_ns()
    # a gateway outside the subnet cannot be routed to: the veth made before goes again
    h = host_if()
    with pytest.raises(PalletError, match="route"):
        links.attach(a, net.bridge, h, "eth0", [net.cidr4(2)], ["192.0.2.254"])
    assert links.list_links((h,)) == []
    assert index_in(a, "eth0") is None
    # a name taken inside the namespace
    with pytest.raises(Conflict):
        links.attach(a, net.bridge, host_if(), "lo", [net.cidr4(2)], [])
    with pytest.raises(NotFound, match="bridge"):
        links.attach(a, "ptestmissing0", host_if(), "eth0", [], [])
    with pytest.raises(NotFound, match="namespace"):
        links.attach(a + "-missing", net.bridge, host_if(), "eth0", [], [])
    # a host name taken
    taken = host_if()
    links.attach(a, net.bridge, taken, "eth0", [net.cidr4(2)], [])
    b = new_ns()
    with pytest.raises(Conflict):
        links.attach(b, net.bridge, taken, "eth0", [net.cidr4(3)], [])
    assert index_in(b, "eth0") is None


# --- rate limits --------------------------------------------------------------------------


def transfer_seconds(src: str, dst: str, dst_ip: str, size: int) -> float:
    """Seconds to send ``size`` bytes from namespace ``src`` to a listener in ``dst``."""
    server = netns.run_in(dst, lambda: socket.create_server((dst_ip, 0)))
    port = server.getsockname()[1]
    received: list[int] = []

    def drain() -> None:
        conn, _ = server.accept()
        with conn:
            total = 0
            while chunk := conn.recv(65536):
                total += len(chunk)
            received.append(total)

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        client = netns.run_in(src, lambda: socket.create_connection((dst_ip, port), timeout=20))
        start = time.monotonic()
        with client:
            client.sendall(b"x" * size)
        reader.join(timeout=30)
        elapsed = time.monotonic() - start
    finally:
        server.close()
    assert received == [size]
    return elapsed


def test_rates(net: Net, new_ns: Callable[[], str], host_if: Callable[[], str]) -> None:
    a, b = new_ns(), new_ns()
    ha, hb = host_if(), host_if()
    links.attach(a, net.bridge, ha, "eth0", [net.cidr4(2)], [])
    links.attach(b, net.bridge, hb, "eth0", [net.cidr4(3)], [])
    assert transfer_seconds(a, b, net.ip4(3), 400_000) < 0.2

    links.set_rates(ha, 8_000_000, 4_000_000)  # receives 1 MB/s, sends 500 kB/s
    shown = subprocess.run(["tc", "qdisc", "show", "dev", ha], capture_output=True,
                           text=True, check=True).stdout
    assert "tbf" in shown and "rate 8Mbit" in shown and "ingress ffff:" in shown
    ifb = links.ifb_name(ha)
    shown = subprocess.run(["tc", "qdisc", "show", "dev", ifb], capture_output=True,
                           text=True, check=True).stdout
    assert "rate 4Mbit" in shown
    # 400 kB over a 20 kB bucket: about 0.38 s receiving, 0.78 s sending
    assert transfer_seconds(b, a, net.ip4(2), 400_000) > 0.3
    assert transfer_seconds(a, b, net.ip4(3), 400_000) > 0.6

    links.set_rates(ha, None, 4_000_000)  # replaces: only the send limit is left
    shown = subprocess.run(["tc", "qdisc", "show", "dev", ha], capture_output=True,
                           text=True, check=True).stdout
    assert "tbf" not in shown and "ingress" in shown
    links.set_rates(ha, None, None)
    shown = subprocess.run(["tc", "qdisc", "show", "dev", ha], capture_output=True,
                           text=True, check=True).stdout
    assert "tbf" not in shown and "ingress" not in shown
    assert links.list_links((ifb,)) == []

    links.set_rates(ha, None, 1_000_000)
    links.detach(ha)  # takes the ifb with it
    assert links.list_links((ha, ifb)) == []


def test_rates_are_checked(host_if: Callable[[], str]) -> None:
    for bad in (0, -5, 1.5, True):
        with pytest.raises(InvalidArgument, match="positive"):
            links.set_rates("pveth01234567", bad, None)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument, match="positive"):
            links.set_rates("pveth01234567", None, bad)  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        links.set_rates(host_if(), 1_000_000, None)
