"""The embedded DNS server in real network namespaces: listeners bound to 127.0.0.11:53
inside a fresh netns, served by a DnsServer on this process's loop, asked from inside
the netns (busybox nslookup, and dnspython from a thread that entered it).

Forwarding goes to a fake upstream on 127.0.0.1 in the host netns; no packet leaves the
machine. Every netns is deleted and every socket closed when a test ends.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import TypeVar

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.reversename
import pytest

from pallet.errors import NotFound, SystemFailure
from pallet.linux.netns import run_in
from pallet.network.dns import RESOLVER_ADDRESS, DnsServer, open_listeners
from tests.unit.test_network_dns import (
    MANY,
    FakeUpstream,
    addresses,
    lookup,
    query,
    records_of,
    reverse,
)

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("ip") is None, reason="needs iproute2's ip"),
]

MARK = "pallet-test"
T = TypeVar("T")


def netns_add() -> str:
    name = f"{MARK}-dns-{os.getpid()}-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    except BaseException:
        netns_del(name)
        raise
    return name


def netns_del(name: str) -> None:
    subprocess.run(["ip", "netns", "del", name], check=True)
    assert not os.path.exists(f"/run/netns/{name}")


@pytest.fixture
def netns_factory() -> Iterator[Callable[[], str]]:
    """Makes fresh netns with lo up and returns their paths."""
    made: list[str] = []

    def make() -> str:
        made.append(netns_add())
        return f"/run/netns/{made[-1]}"

    yield make
    for name in made:
        netns_del(name)


@pytest.fixture
def netns(netns_factory: Callable[[], str]) -> str:
    return netns_factory()


async def in_netns(path: str, fn: Callable[[], T]) -> T:
    """``fn()`` in a fresh thread inside the netns at ``path``, awaited without blocking
    the loop that serves the DNS sockets (the pool thread only waits for it)."""
    return await asyncio.to_thread(run_in, path, fn)


def udp(name: str, rdtype: str = "A", **kw: object) -> Callable[[], dns.message.Message]:
    return lambda: dns.query.udp(query(name, rdtype, **kw), RESOLVER_ADDRESS, timeout=5)


def tcp(name: str, rdtype: str = "A") -> Callable[[], dns.message.Message]:
    return lambda: dns.query.tcp(query(name, rdtype), RESOLVER_ADDRESS, timeout=5)


@asynccontextmanager
async def container(
    server: DnsServer, path: str, key: str = "c1",
    records: Callable[[str], list[str]] = lookup,
) -> AsyncIterator[tuple[socket.socket, socket.socket]]:
    udp_sock, tcp_sock = open_listeners(path)
    try:
        await server.add(key, udp_sock, tcp_sock, records, reverse)
        yield udp_sock, tcp_sock
    finally:
        await server.remove(key)
        udp_sock.close()
        tcp_sock.close()


@asynccontextmanager
async def dns_server(upstreams: list[str], timeout: float = 1.0) -> AsyncIterator[DnsServer]:
    server = DnsServer(upstreams=upstreams, timeout=timeout)
    try:
        yield server
    finally:
        await server.close()
        assert server.keys() == []


@asynccontextmanager
async def upstream() -> AsyncIterator[FakeUpstream]:
    up = FakeUpstream()
    await up.start()
    try:
        yield up
    finally:
        up.close()


def test_open_listeners_binds_inside_the_netns(netns: str) -> None:
    udp_sock, tcp_sock = open_listeners(netns)
    try:
        assert udp_sock.getsockname() == (RESOLVER_ADDRESS, 53)
        assert tcp_sock.getsockname() == (RESOLVER_ADDRESS, 53)
        assert udp_sock.type == socket.SOCK_DGRAM and tcp_sock.type == socket.SOCK_STREAM
        for s in (udp_sock, tcp_sock):
            assert not s.getblocking()
            assert not s.get_inheritable()
        assert tcp_sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        # the port is taken in the netns, not in ours (where 127.0.0.11 is free to bind)
        with pytest.raises(SystemFailure, match="Address already in use"):
            open_listeners(netns)
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            probe.bind((RESOLVER_ADDRESS, 0))
        finally:
            probe.close()
    finally:
        udp_sock.close()
        tcp_sock.close()


def test_open_listeners_errors(netns_factory: Callable[[], str], tmp_path: object) -> None:
    with pytest.raises(NotFound):
        open_listeners(os.path.join(str(tmp_path), "no-such-netns"))
    path = netns_factory()
    with pytest.raises(SystemFailure, match=r"listen on 192\.0\.2\.1:53 in .*: Cannot assign"):
        open_listeners(path, "192.0.2.1")  # an address the netns does not have
    not_a_netns = os.path.join(str(tmp_path), "file")
    open(not_a_netns, "w").close()
    with pytest.raises(SystemFailure):
        open_listeners(not_a_netns)


def test_busybox_nslookup_finds_a_container_by_name(netns: str) -> None:
    if shutil.which("busybox") is None:
        pytest.skip("needs busybox")

    async def scenario() -> str:
        async with dns_server([]) as server, container(server, netns):
            proc = await asyncio.create_subprocess_exec(
                "nsenter", f"--net={netns}", "busybox", "nslookup", "web", RESOLVER_ADDRESS,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )
            out, _ = await asyncio.wait_for(proc.communicate(), 30)
            assert proc.returncode == 0, out
            return out.decode()

    out = asyncio.run(scenario())
    assert "Address: 10.1.0.2" in out, out
    assert f"Server:\t\t{RESOLVER_ADDRESS}" in out, out


def test_names_aliases_and_ptr_from_inside(netns: str) -> None:
    async def scenario() -> None:
        async with dns_server([]) as server, container(server, netns):
            assert addresses(await in_netns(netns, udp("WEB"))) == ["10.1.0.2"]
            assert addresses(await in_netns(netns, udp("db.mynet", "AAAA"))) == ["fd00::3"]
            empty = await in_netns(netns, udp("web", "AAAA"))
            assert empty.rcode() == dns.rcode.NOERROR and empty.answer == []
            name = dns.reversename.from_address("10.1.0.2").to_text()
            ptr = await in_netns(netns, udp(name, "PTR"))
            assert [rd.to_text() for rd in ptr.answer[0]] == ["web.mynet."]
            assert addresses(await in_netns(netns, tcp("db", "A"))) == ["10.1.0.3"]

    asyncio.run(scenario())


def test_unknown_names_are_forwarded_from_the_host_netns(netns: str) -> None:
    async def scenario() -> None:
        async with upstream() as up, dns_server([up.address]) as server, container(
            server, netns
        ):
            # 127.0.0.1:<port> exists only in the host netns: an answer proves the
            # query went out from palletd's side
            assert addresses(await in_netns(netns, udp("example.test"))) == ["192.0.2.10"]
            assert addresses(await in_netns(netns, tcp("example.test"))) == ["192.0.2.10"]
            nx = await in_netns(netns, udp("missing.test"))
            assert nx.rcode() == dns.rcode.NXDOMAIN
            truncated = await in_netns(netns, udp("big.test"))
            assert truncated.flags & dns.flags.TC
            assert sorted(addresses(await in_netns(netns, tcp("big.test")))) == sorted(MANY)
            assert addresses(await in_netns(netns, udp("web"))) == ["10.1.0.2"]
            assert up.seen == [("udp", "example.test."), ("tcp", "example.test."),
                               ("udp", "missing.test."), ("udp", "big.test."),
                               ("tcp", "big.test.")]

    asyncio.run(scenario())


def test_servfail_without_upstreams(netns: str) -> None:
    async def scenario() -> None:
        async with dns_server([]) as server, container(server, netns):
            reply = await in_netns(netns, udp("example.test"))
            assert reply.rcode() == dns.rcode.SERVFAIL

    asyncio.run(scenario())


def test_each_container_sees_its_own_names(netns_factory: Callable[[], str]) -> None:
    paths = [netns_factory() for _ in range(3)]

    async def scenario() -> None:
        async with dns_server([]) as server:
            for i, path in enumerate(paths):
                await server.add(f"c{i}", *open_listeners(path),
                                 records_of(f"peer{i}", f"10.3.0.{i + 1}"), reverse)
            assert sorted(server.keys()) == ["c0", "c1", "c2"]
            for i, path in enumerate(paths):
                assert addresses(await in_netns(path, udp(f"peer{i}"))) == [f"10.3.0.{i + 1}"]
                other = await in_netns(path, udp(f"peer{(i + 1) % 3}"))
                assert other.rcode() == dns.rcode.SERVFAIL

    asyncio.run(scenario())


def test_remove_stops_serving_and_closes_the_sockets(netns: str) -> None:
    def connect() -> None:
        with socket.create_connection((RESOLVER_ADDRESS, 53), timeout=5):
            pass

    async def scenario() -> None:
        async with dns_server([]) as server:
            udp_sock, tcp_sock = open_listeners(netns)
            await server.add("c1", udp_sock, tcp_sock, lookup, reverse)
            assert addresses(await in_netns(netns, tcp("web"))) == ["10.1.0.2"]
            await server.remove("c1")
            assert udp_sock.fileno() == -1 and tcp_sock.fileno() == -1
            assert server.keys() == []
            with pytest.raises(ConnectionRefusedError):
                await in_netns(netns, connect)
            # the address is free again: a restarted palletd can bind it
            again = open_listeners(netns)
            for s in again:
                s.close()

    asyncio.run(scenario())
