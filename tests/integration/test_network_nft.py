"""pallet's nft table on the real kernel: applied, replaced and removed whole; and
published ports carried end to end into network namespaces on test bridges.

Every test uses a table, bridges and namespaces of its own (random names), so it never
touches a running palletd's table; finalizers remove all of them. Traffic goes only to
addresses of this host and of the test's own namespaces.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from pallet.network import firewall, nft, routes
from pallet.network.firewall import Bridge, Port

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("nft") is None, reason="nft (nftables) is not installed"),
]

# One connection at a time: read a line, answer it with the peer's address; bounded in
# connections and time so it ends by itself even if the test dies.
SERVER = r"""
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(8)
s.settimeout(60)
print("ready", flush=True)
for _ in range(32):
    c, peer = s.accept()
    with c:
        c.settimeout(10)
        data = c.makefile("rb").readline().strip()
        c.sendall(data + b" from " + peer[0].encode() + b"\n")
"""

CLIENT = r"""
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])),
                                  timeout=float(sys.argv[4])) as c:
        c.sendall(sys.argv[3].encode() + b"\n")
        print(c.makefile("rb").readline().decode().strip())
except OSError as exc:
    print(type(exc).__name__)
"""

# What this file made, so its last test can check that none of it is left.
MADE: dict[str, set[str]] = {"tables": set(), "links": set(), "netns": set()}


def sh(*argv: str) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, f"{' '.join(argv)}: {proc.stderr.strip()}"
    return proc.stdout


def write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


@pytest.fixture
def table() -> Iterator[str]:
    name = f"pallet_tnft{secrets.token_hex(4)}"  # palletd fixtures use pallet_t<hex>
    MADE["tables"].add(name)
    yield name
    nft.apply(firewall.teardown(name))
    assert not nft.exists(name)


def free_subnet() -> ipaddress.IPv4Network:
    """A 10.235.x.0/24 that no route of the host (another test's bridge) uses yet."""
    busy = [r for r in routes.host_routes() if r.version == 4]
    for x in secrets.SystemRandom().sample(range(1, 255), 254):
        net = ipaddress.IPv4Network(f"10.235.{x}.0/24")
        if not any(net.overlaps(r) for r in busy):
            return net
    pytest.skip("no free 10.235.x.0/24 on this host")


@dataclass
class Lab:
    """A bridge with namespaces on it: a network with its containers."""

    bridge: str
    subnet: ipaddress.IPv4Network
    gateway: str
    ns: dict[str, str] = field(default_factory=dict)  # who -> namespace name
    addr: dict[str, str] = field(default_factory=dict)  # who -> its address

    def as_bridge(self, **kw: bool) -> Bridge:
        return Bridge(self.bridge, (str(self.subnet),), **{"internal": False, **kw})

    def connect(self, who: str, host: str, port: int, msg: str, timeout: float = 5) -> str:
        """From ``who``'s namespace: the server's answer, or the name of the error."""
        return sh("ip", "netns", "exec", self.ns[who], sys.executable, "-c", CLIENT, host,
                  str(port), msg, str(timeout)).strip()


class Labs:
    """Makes bridges, namespaces and servers; undoes all of it in reverse, every step
    even when one fails."""

    def __init__(self) -> None:
        self.undo: list[Callable[[], None]] = []

    def _do(self, *argv: str, undo: tuple[str, ...] = ()) -> None:
        sh(*argv)
        if undo:
            self.undo.append(lambda: self._quiet(undo))

    @staticmethod
    def _quiet(argv: tuple[str, ...]) -> None:
        subprocess.run(argv, capture_output=True, timeout=30, check=False)

    def make(self, *who: str) -> Lab:
        tag = secrets.token_hex(3)
        subnet = free_subnet()
        hosts = subnet.hosts()
        lab = Lab(f"ptb{tag}", subnet, str(next(hosts)))
        br = lab.bridge
        MADE["links"].add(br)
        self._do("ip", "link", "add", br, "type", "bridge", undo=("ip", "link", "del", br))
        self._do("ip", "addr", "add", f"{lab.gateway}/{subnet.prefixlen}", "dev", br)
        self._do("ip", "link", "set", br, "up")
        # what the links module sets on a pallet bridge: 127.0.0.1 may be routed out of
        # it (then masqueraded), and packets that enter it may be forwarded. Forwarding
        # is turned on for this bridge only: the test changes nothing host-wide.
        write(f"/proc/sys/net/ipv4/conf/{br}/route_localnet", "1")
        write(f"/proc/sys/net/ipv4/conf/{br}/forwarding", "1")
        for w in who:
            addr = str(next(hosts))
            name, host_end, peer = f"pallet-test-{tag}-{w}", f"ptv{tag}{w}", f"ptp{tag}{w}"
            MADE["netns"].add(name)
            MADE["links"].update((host_end, peer))
            self._do("ip", "netns", "add", name, undo=("ip", "netns", "del", name))
            # the veth goes with its namespace; deleting the host end is the fallback
            self._do("ip", "link", "add", host_end, "type", "veth", "peer", "name", peer,
                     undo=("ip", "link", "del", host_end))
            self._do("ip", "link", "set", peer, "netns", name)
            self._do("ip", "link", "set", host_end, "master", br, "up")
            # as the links module does: where br_netfilter bridges a DNAT'd packet, a
            # container reaching its own published port gets it back through its port
            write(f"/sys/class/net/{host_end}/brport/hairpin_mode", "1")
            inside = ("ip", "netns", "exec", name)
            self._do(*inside, "ip", "link", "set", peer, "name", "eth0")
            self._do(*inside, "ip", "addr", "add", f"{addr}/{subnet.prefixlen}", "dev", "eth0")
            self._do(*inside, "ip", "link", "set", "eth0", "up")
            self._do(*inside, "ip", "link", "set", "lo", "up")
            self._do(*inside, "ip", "route", "add", "default", "via", lab.gateway)
            lab.ns[w], lab.addr[w] = name, addr
        return lab

    def serve(self, lab: Lab, who: str, port: int = 8080) -> int:
        """A TCP server in ``who``'s namespace, stopped before the namespace goes."""
        proc = subprocess.Popen(["ip", "netns", "exec", lab.ns[who], sys.executable, "-c",
                                 SERVER, str(port)], stdout=subprocess.PIPE, text=True)

        def stop() -> None:
            proc.kill()
            proc.wait(timeout=10)
            assert proc.stdout is not None
            proc.stdout.close()

        self.undo.append(stop)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        return port

    def cleanup(self) -> None:
        errors = []
        for fn in reversed(self.undo):
            try:
                fn()
            except Exception as exc:  # every step runs; the first failure is reported
                errors.append(exc)
        if errors:
            raise errors[0]


@pytest.fixture
def labs() -> Iterator[Labs]:
    made = Labs()
    yield made
    made.cleanup()


def host_port() -> int:
    """A port nothing on the host listens on (what the engine's port allocator makes sure)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def talk(host: str, port: int, msg: str, timeout: float = 5) -> str:
    """From the host: the server's answer, or the name of the error."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as c:
            c.sendall(msg.encode() + b"\n")
            return c.makefile("rb").readline().decode().strip()
    except OSError as exc:
        return type(exc).__name__


# --- the table ------------------------------------------------------------------------------


def test_apply_list_replace_teardown(table: str) -> None:
    bridges = [Bridge("ptbx0", ("10.235.0.0/24",), False)]
    first = [Port("tcp", "", 18080, "10.235.0.2", 80, "ptbx0")]
    assert not nft.exists(table)
    assert nft.listing(table) == ""

    nft.apply(firewall.ruleset(table, bridges, first))
    assert nft.exists(table)
    text = nft.listing(table)
    assert f"table inet {table}" in text
    assert "tcp . 18080 : 10.235.0.2 . 80" in text
    assert '"ptbx0"' in text

    # a second apply of the same state changes nothing (reconcile is apply)
    nft.apply(firewall.ruleset(table, bridges, first))
    assert nft.listing(table) == text

    second = [Port("udp", "127.0.0.1", 5353, "10.235.0.3", 53, "ptbx0")]
    nft.apply(firewall.ruleset(table, bridges, second))
    text = nft.listing(table)
    assert "18080" not in text
    assert "127.0.0.1 . udp . 5353 : 10.235.0.3 . 53" in text

    nft.apply(firewall.teardown(table))
    assert not nft.exists(table)
    assert nft.listing(table) == ""
    nft.apply(firewall.teardown(table))  # absent: still fine


def test_removing_a_network_removes_its_rules(table: str) -> None:
    one = Bridge("ptbx1", ("10.235.1.0/24",), False)
    two = Bridge("ptbx2", ("10.235.2.0/24", "fd00:235:2::/64"), False)
    nft.apply(firewall.ruleset(table, [one, two],
                               [Port("tcp", "", 18081, "10.235.2.2", 80, "ptbx2"),
                                Port("tcp", "", 18081, "fd00:235:2::2", 80, "ptbx2")]))
    text = nft.listing(table)
    assert "ptbx2" in text
    assert "fd00:235:2::2 . 80" in text
    nft.apply(firewall.ruleset(table, [one], []))
    text = nft.listing(table)
    assert "ptbx1" in text
    assert "ptbx2" not in text
    assert "10.235.2." not in text
    assert "fd00:235:2" not in text


def test_a_bad_script_changes_nothing(table: str) -> None:
    nft.apply(firewall.ruleset(table, [Bridge("ptbx3", ("10.235.3.0/24",), False)], []))
    before = nft.listing(table)
    with pytest.raises(nft.NftFailed) as err:
        nft.apply(f"table inet {table}\ndelete table inet {table}\nthis is not nft\n")
    assert "syntax error" in str(err.value)
    assert nft.listing(table) == before


def test_the_check_runs_without_committing(table: str) -> None:
    nft.check(firewall.ruleset(table, [Bridge("ptbx4", ("10.235.4.0/24",), False)], []))
    assert not nft.exists(table)


def test_apply_of_three_bridges_and_fifty_ports(table: str) -> None:
    bridges = [Bridge(f"ptbx{i}", (f"10.235.{i}.0/24",), False) for i in range(5, 8)]
    ports = [Port("tcp", "", 20000 + i, f"10.235.{5 + i % 3}.{2 + i}", 80, f"ptbx{5 + i % 3}")
             for i in range(50)]
    script = firewall.ruleset(table, bridges, ports)
    start = time.monotonic()
    nft.apply(script)
    took = time.monotonic() - start
    assert nft.listing(table).count(" : 10.235.") == 50
    assert took < 5.0, f"apply took {took:.2f}s"  # tens of milliseconds, measured


# --- published ports, end to end ---------------------------------------------------------


def test_published_port_reaches_the_container(table: str, labs: Labs) -> None:
    lab = labs.make("a", "b")
    port = labs.serve(lab, "a")
    hp, local_only = host_port(), host_port()
    nft.apply(firewall.ruleset(table, [lab.as_bridge()], [
        Port("tcp", "", hp, lab.addr["a"], port, lab.bridge),
        Port("tcp", "127.0.0.1", local_only, lab.addr["a"], port, lab.bridge)]))

    # from the host, on loopback and on the bridge's gateway address: the container
    # sees the gateway (masqueraded), never 127.0.0.1
    assert talk("127.0.0.1", hp, "lo") == f"lo from {lab.gateway}"
    assert talk(lab.gateway, hp, "gw") == f"gw from {lab.gateway}"
    # another container on the same bridge, through the host's address
    assert lab.connect("b", lab.gateway, hp, "peer") == f"peer from {lab.gateway}"
    # hairpin: the container to its own published port
    assert lab.connect("a", lab.gateway, hp, "self") == f"self from {lab.gateway}"
    # a port published on 127.0.0.1 only: there, and not on another address
    assert talk("127.0.0.1", local_only, "only") == f"only from {lab.gateway}"
    assert talk(lab.gateway, local_only, "nope") == "ConnectionRefusedError"


def test_removed_port_is_gone(table: str, labs: Labs) -> None:
    lab = labs.make("a")
    port = labs.serve(lab, "a")
    hp = host_port()
    bridges = [lab.as_bridge()]
    nft.apply(firewall.ruleset(table, bridges,
                               [Port("tcp", "", hp, lab.addr["a"], port, lab.bridge)]))
    assert talk("127.0.0.1", hp, "x") == f"x from {lab.gateway}"
    nft.apply(firewall.ruleset(table, bridges, []))
    assert talk("127.0.0.1", hp, "y") == "ConnectionRefusedError"


def test_networks_are_isolated_but_published_ports_are_not(table: str, labs: Labs) -> None:
    one, two = labs.make("a"), labs.make("c")
    port = labs.serve(one, "a")
    hp = host_port()
    nft.apply(firewall.ruleset(table, [one.as_bridge(), two.as_bridge()],
                               [Port("tcp", "", hp, one.addr["a"], port, one.bridge)]))
    # straight to a container on another pallet network: dropped
    assert two.connect("c", one.addr["a"], port, "direct", timeout=1) == "TimeoutError"
    # through a published port (here via its own gateway, an address of the host): as
    # dockerd, allowed, and masqueraded on the way into the other network
    assert two.connect("c", two.gateway, hp, "published") == f"published from {one.gateway}"


def test_an_internal_network_keeps_to_itself(table: str, labs: Labs) -> None:
    inner, outer = labs.make("a", "b"), labs.make("c")
    port = labs.serve(inner, "a")
    labs.serve(outer, "c", port)
    nft.apply(firewall.ruleset(table, [inner.as_bridge(internal=True), outer.as_bridge()],
                               []))
    # within the network: fine
    assert inner.connect("b", inner.addr["a"], port, "in") == f"in from {inner.addr['b']}"
    # out of it, and into it from another network: dropped
    assert inner.connect("a", outer.addr["c"], port, "out", timeout=1) == "TimeoutError"
    assert outer.connect("c", inner.addr["a"], port, "into", timeout=1) == "TimeoutError"


def _br_netfilter() -> bool:
    try:
        with open("/proc/sys/net/bridge/bridge-nf-call-iptables") as f:
            return f.read().strip() == "1"
    except OSError:
        return False


@pytest.mark.skipif(not _br_netfilter(), reason="without br_netfilter, frames between ports "
                    "of one bridge never reach nft (icc=false needs isolated bridge ports)")
def test_icc_false_keeps_containers_apart_but_published_ports_open(
        table: str, labs: Labs) -> None:
    lab = labs.make("a", "b")
    port = labs.serve(lab, "a")
    hp = host_port()
    nft.apply(firewall.ruleset(table, [lab.as_bridge(icc=False)],
                               [Port("tcp", "", hp, lab.addr["a"], port, lab.bridge)]))
    assert lab.connect("b", lab.addr["a"], port, "direct", timeout=1) == "TimeoutError"
    assert lab.connect("b", lab.gateway, hp, "published") == f"published from {lab.gateway}"
    assert talk("127.0.0.1", hp, "host") == f"host from {lab.gateway}"


def test_nothing_of_this_file_is_left() -> None:
    """Runs last here (by order in the file): every finalizer above did its work."""
    tables = sh("nft", "list", "tables")
    assert [t for t in MADE["tables"] if f" {t}\n" in tables + "\n"] == []
    links = {line.split(":")[1].strip().split("@")[0]
             for line in sh("ip", "-o", "link", "show").splitlines()}
    assert sorted(MADE["links"] & links) == []
    netns = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    assert sorted(MADE["netns"] & netns) == []
