"""The embedded DNS server: answer() on wire bytes, upstream parsing, and DnsServer
serving plain loopback sockets (no netns, no root) against a fake upstream server.

Nothing here sends a packet anywhere but 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.reversename
import dns.rrset
import pytest

from pallet.errors import InvalidArgument
from pallet.network.dns import (
    MAX_TCP_CLIENTS,
    TTL,
    DnsServer,
    answer,
    host_nameservers,
    parse_upstream,
    upstreams_from,
)

RECORDS = {
    "web": ["10.1.0.2"],
    "db": ["10.1.0.3", "fd00::3"],
    "db.mynet": ["10.1.0.3", "fd00::3"],
    "v6only": ["fd00::4"],
    "0123456789ab": ["10.1.0.2"],
}
NAMES = {"10.1.0.2": "web.mynet", "fd00::3": "db.mynet"}


def lookup(name: str) -> list[str]:
    return RECORDS.get(name, [])


def reverse(ip: str) -> str | None:
    return NAMES.get(ip)


def query(name: str | dns.name.Name, rdtype: str = "A", **kw: object) -> dns.message.Message:
    return dns.message.make_query(name, rdtype, **kw)  # type: ignore[arg-type]


def ask(q: dns.message.Message, *, tcp: bool = False) -> dns.message.Message | None:
    wire = answer(q.to_wire(), lookup, reverse, tcp=tcp)
    return None if wire is None else dns.message.from_wire(wire)


def addresses(reply: dns.message.Message) -> list[str]:
    return [rd.to_text() for rrset in reply.answer for rd in rrset]


# --- answer(): records palletd knows ------------------------------------------------


def test_a_record_of_a_container_name() -> None:
    q = query("web.")
    reply = ask(q)
    assert reply is not None
    assert reply.id == q.id
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.QR and reply.flags & dns.flags.RA
    assert not reply.flags & dns.flags.TC
    assert addresses(reply) == ["10.1.0.2"]
    assert reply.answer[0].ttl == TTL == 600
    assert reply.answer[0].rdtype == dns.rdatatype.A
    assert reply.question == q.question


def test_aaaa_record_and_a_record_split_by_family() -> None:
    v6 = ask(query("db.", "AAAA"))
    v4 = ask(query("db.", "A"))
    assert v6 is not None and v4 is not None
    assert addresses(v6) == ["fd00::3"]
    assert addresses(v4) == ["10.1.0.3"]


def test_names_are_case_insensitive_and_the_reply_echoes_the_question() -> None:
    seen: list[str] = []

    def spy(name: str) -> list[str]:
        seen.append(name)
        return lookup(name)

    q = query("WeB.")
    wire = answer(q.to_wire(), spy, reverse)
    assert wire is not None
    reply = dns.message.from_wire(wire)
    assert seen == ["web"]
    assert addresses(reply) == ["10.1.0.2"]
    assert reply.answer[0].name.to_text() == "WeB."  # as asked, like moby


def test_network_qualified_names_and_short_ids() -> None:
    reply = ask(query("DB.MyNet."))
    assert reply is not None and addresses(reply) == ["10.1.0.3"]
    reply = ask(query("0123456789ab"))
    assert reply is not None and addresses(reply) == ["10.1.0.2"]


def test_all_addresses_of_a_shared_alias() -> None:
    many = [f"10.1.1.{i}" for i in range(1, 6)]
    wire = answer(query("svc.").to_wire(), lambda n: many if n == "svc" else [], reverse)
    assert wire is not None
    assert sorted(addresses(dns.message.from_wire(wire))) == sorted(many)


def test_unknown_name_is_forwarded() -> None:
    assert ask(query("example.com.")) is None
    assert ask(query("nosuchcontainer.")) is None


def test_known_name_without_the_asked_family_answers_empty_noerror() -> None:
    for q in (query("web.", "AAAA"), query("v6only.", "A"), query("web.", "MX")):
        reply = ask(q)
        assert reply is not None, q
        assert reply.rcode() == dns.rcode.NOERROR
        assert reply.answer == []


def test_other_types_of_known_names_are_forwarded_as_moby_does() -> None:
    assert ask(query("web.", "TXT")) is None
    assert ask(query("web.", "SRV")) is None


def test_other_classes_are_forwarded() -> None:
    q = dns.message.make_query("web.", "TXT", rdclass="CH")
    assert answer(q.to_wire(), lookup, reverse) is None


def test_ptr_for_container_addresses() -> None:
    reply = ask(query(dns.reversename.from_address("10.1.0.2"), "PTR"))
    assert reply is not None
    assert [rd.to_text() for rd in reply.answer[0]] == ["web.mynet."]
    assert reply.answer[0].ttl == TTL
    reply = ask(query(dns.reversename.from_address("fd00::3"), "PTR"))
    assert reply is not None
    assert [rd.to_text() for rd in reply.answer[0]] == ["db.mynet."]


def test_ptr_upper_case_reverse_name() -> None:
    reply = ask(query("2.0.1.10.IN-ADDR.ARPA.", "PTR"))
    assert reply is not None and [rd.to_text() for rd in reply.answer[0]] == ["web.mynet."]


def test_ptr_unknown_or_partial_reverse_names_are_forwarded() -> None:
    assert ask(query(dns.reversename.from_address("10.9.9.9"), "PTR")) is None
    assert ask(query("1.10.in-addr.arpa.", "PTR")) is None
    assert ask(query("web.", "PTR")) is None


def test_root_name_is_not_looked_up() -> None:
    def boom(name: str) -> list[str]:
        raise AssertionError(name)

    assert answer(query(".").to_wire(), boom, reverse) is None


# --- answer(): size limits ----------------------------------------------------------

MANY = [f"10.2.{i // 250}.{i % 250 + 1}" for i in range(100)]  # 100 A records: ~1.6 kB


def many(name: str) -> list[str]:
    return MANY if name == "big" else []


def test_udp_reply_is_truncated_to_512_without_edns() -> None:
    wire = answer(query("big.").to_wire(), many, reverse)
    assert wire is not None and len(wire) <= 512
    reply = dns.message.from_wire(wire)
    assert reply.flags & dns.flags.TC
    assert 0 < len(addresses(reply)) < 100


def test_udp_reply_uses_the_edns_size() -> None:
    wire = answer(query("big.", use_edns=0, payload=4096).to_wire(), many, reverse)
    assert wire is not None
    reply = dns.message.from_wire(wire)
    assert not reply.flags & dns.flags.TC
    assert len(addresses(reply)) == 100


def test_tcp_reply_is_whole() -> None:
    wire = answer(query("big.").to_wire(), many, reverse, tcp=True)
    assert wire is not None
    reply = dns.message.from_wire(wire)
    assert not reply.flags & dns.flags.TC and len(addresses(reply)) == 100


# --- answer(): malformed input, as miekg/dns treats it --------------------------------


def header(qid: int = 0x1234, flags: int = 0x0100, qd: int = 1, an: int = 0, ns: int = 0,
           ar: int = 0) -> bytes:
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


def rcode_of(wire: bytes | None) -> int:
    assert wire is not None
    qid, flags = struct.unpack_from("!HH", wire)
    assert qid == 0x1234 and flags & 0x8000
    return int(flags) & 0xF


def test_too_short_is_dropped() -> None:
    assert answer(b"", lookup, reverse) is None
    assert answer(b"\x12\x34\x01", lookup, reverse) is None


def test_a_response_is_dropped() -> None:
    assert answer(header(flags=0x8180) + query("web.").to_wire()[12:], lookup, reverse) is None


def test_other_opcodes_get_notimp() -> None:
    wire = answer(header(flags=dns.opcode.UPDATE << 11), lookup, reverse)
    assert rcode_of(wire) == dns.rcode.NOTIMP
    assert wire is not None and (struct.unpack_from("!H", wire, 2)[0] >> 11) & 0xF == 5


def test_wrong_section_counts_get_formerr() -> None:
    body = query("web.").to_wire()[12:]
    for h in (header(qd=0), header(qd=2), header(an=2), header(ns=2), header(ar=3)):
        assert rcode_of(answer(h + body, lookup, reverse)) == dns.rcode.FORMERR


def test_broken_body_gets_formerr() -> None:
    assert rcode_of(answer(header(), lookup, reverse)) == dns.rcode.FORMERR
    assert rcode_of(answer(header() + b"\x03we", lookup, reverse)) == dns.rcode.FORMERR
    assert rcode_of(answer(header() + b"\xc0\x0c\x00\x01\x00\x01", lookup, reverse)) == (
        dns.rcode.FORMERR
    )


def test_random_bytes_never_raise() -> None:
    rng = random.Random(53)
    good = query("web.", use_edns=0).to_wire()
    for _ in range(3000):
        if rng.random() < 0.5:
            data = bytes(rng.getrandbits(8) for _ in range(rng.randrange(40)))
        else:  # a real query with a few bytes flipped
            flipped = bytearray(good)
            for _ in range(rng.randrange(1, 4)):
                flipped[rng.randrange(len(flipped))] = rng.getrandbits(8)
            data = bytes(flipped)
        wire = answer(data, lookup, reverse)
        if wire is not None:
            assert wire[:2] == data[:2]


# --- upstream servers ---------------------------------------------------------------


def test_parse_upstream_forms() -> None:
    assert parse_upstream("192.0.2.1").sockaddr == ("192.0.2.1", 53)
    assert parse_upstream("127.0.0.1:5353").sockaddr == ("127.0.0.1", 5353)
    assert parse_upstream("::1").sockaddr[:2] == ("::1", 53)
    assert parse_upstream("[::1]:5353").sockaddr[:2] == ("::1", 5353)
    assert parse_upstream("[2001:db8::1]").sockaddr[:2] == ("2001:db8::1", 53)
    assert parse_upstream("::1").family == socket.AF_INET6


@pytest.mark.parametrize(
    "text", ["", "dns.google", "1.2.3.4:", "1.2.3.4:0", "1.2.3.4:70000", "[::1", "[::1]x",
             "300.1.1.1"],
)
def test_parse_upstream_rejects(text: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_upstream(text)


def test_upstreams_skip_our_own_address_and_keep_three() -> None:
    ups = upstreams_from(["127.0.0.11", "192.0.2.1", "127.0.0.11:53", "192.0.2.2",
                          "192.0.2.3", "192.0.2.4"])
    assert [u.text for u in ups] == ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
    assert [u.text for u in upstreams_from(["127.0.0.11:5353"])] == ["127.0.0.11:5353"]


def test_upstreams_not_strict_skip_bad_entries() -> None:
    assert [u.text for u in upstreams_from(["bogus", "192.0.2.1"], strict=False)] == [
        "192.0.2.1"
    ]
    with pytest.raises(InvalidArgument):
        upstreams_from(["bogus"])


def test_host_nameservers(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "resolv.conf")
    with open(path, "w") as f:
        f.write("# generated\nsearch example\nnameserver 192.0.2.1\n; x\n"
                "nameserver   2001:db8::53\noptions ndots:2\nnameserver\n")
    assert host_nameservers(path) == ["192.0.2.1", "2001:db8::53"]
    assert host_nameservers(os.path.join(str(tmp_path), "missing")) == []


# --- DnsServer on loopback sockets ---------------------------------------------------


class FakeUpstream:
    """A DNS server on 127.0.0.1 (UDP and TCP, one port) that knows ``example.test``
    (192.0.2.10) and ``big.test`` (100 A records, truncated over UDP); NXDOMAIN else.
    ``rcode`` forces an error reply; ``silent`` makes it never answer."""

    def __init__(self, rcode: dns.rcode.Rcode = dns.rcode.NOERROR, silent: bool = False) -> None:
        self.rcode = rcode
        self.silent = silent
        self.seen: list[tuple[str, str]] = []  # (transport, name)
        self.port = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def reply(self, wire: bytes, transport: str) -> bytes | None:
        q = dns.message.from_wire(wire)
        name = q.question[0].name.to_text()
        self.seen.append((transport, name))
        if self.silent:
            return None
        r = dns.message.make_response(q)
        if self.rcode != dns.rcode.NOERROR:
            r.set_rcode(self.rcode)
        elif name == "example.test.":
            r.answer.append(dns.rrset.from_text(name, 300, "IN", "A", "192.0.2.10"))
        elif name == "big.test.":
            r.answer.append(dns.rrset.from_text_list(name, 300, "IN", "A", MANY))
        else:
            r.set_rcode(dns.rcode.NXDOMAIN)
        limit = 65535 if transport == "tcp" else max(512, q.payload if q.edns >= 0 else 0)
        try:
            return r.to_wire(max_size=limit)
        except dns.exception.TooBig:
            r.answer = []
            r.flags |= dns.flags.TC
            return r.to_wire()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        upstream = self

        class Udp(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                out = upstream.reply(data, "udp")
                if out is not None:
                    self.transport.sendto(out, addr)  # type: ignore[attr-defined]

        async def tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                (n,) = struct.unpack("!H", await reader.readexactly(2))
                out = upstream.reply(await reader.readexactly(n), "tcp")
                if out is None:
                    await reader.read()  # silent: hold the line until the asker gives up
                else:
                    writer.write(struct.pack("!H", len(out)) + out)
                    await writer.drain()
            finally:
                writer.close()

        self._tcp = await asyncio.start_server(tcp, "127.0.0.1", 0)
        self.port = self._tcp.sockets[0].getsockname()[1]
        self._udp, _ = await loop.create_datagram_endpoint(
            Udp, local_addr=("127.0.0.1", self.port)
        )

    def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()


def loopback_pair() -> tuple[socket.socket, socket.socket]:
    """UDP and listening TCP sockets on one free 127.0.0.1 port: the listeners of a
    container, minus the netns."""
    while True:
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            udp.bind(tcp.getsockname())
        except OSError:
            tcp.close()
            udp.close()
            continue
        return udp, tcp


@asynccontextmanager
async def serving(
    upstreams: list[str], timeout: float = 1.0, **kw: bool
) -> AsyncIterator[tuple[DnsServer, str, int, socket.socket, socket.socket]]:
    server = DnsServer(upstreams=upstreams, timeout=timeout)
    udp, tcp = loopback_pair()
    host, port = udp.getsockname()
    try:
        await server.add("c1", udp, tcp, lookup, reverse, **kw)
        yield server, host, port, udp, tcp
    finally:
        await server.close()
        udp.close()
        tcp.close()


@asynccontextmanager
async def fake_upstream(**kw: object) -> AsyncIterator[FakeUpstream]:
    up = FakeUpstream(**kw)  # type: ignore[arg-type]
    await up.start()
    try:
        yield up
    finally:
        up.close()


async def udp_ask(name: str, host: str, port: int, rdtype: str = "A",
                  **kw: object) -> dns.message.Message:
    return await dns.asyncquery.udp(query(name, rdtype, **kw), host, port=port, timeout=5)


async def tcp_ask(name: str, host: str, port: int, rdtype: str = "A") -> dns.message.Message:
    return await dns.asyncquery.tcp(query(name, rdtype), host, port=port, timeout=5)


def records_of(name: str, ip: str) -> Callable[[str], list[str]]:
    """A container that knows one name."""
    return lambda asked: [ip] if asked == name else []


def run(scenario: Callable[[], object]) -> None:
    asyncio.run(scenario())  # type: ignore[arg-type]


def test_server_answers_its_own_names_over_udp_and_tcp() -> None:
    async def scenario() -> None:
        async with fake_upstream() as up, serving([up.address]) as (_, host, port, _u, _t):
            assert addresses(await udp_ask("web", host, port)) == ["10.1.0.2"]
            assert addresses(await tcp_ask("DB.mynet", host, port, "AAAA")) == ["fd00::3"]
            ptr = await udp_ask(dns.reversename.from_address("10.1.0.2").to_text(), host,
                                port, "PTR")
            assert [rd.to_text() for rd in ptr.answer[0]] == ["web.mynet."]
            assert up.seen == []

    run(scenario)


def test_server_forwards_unknown_names_over_the_same_transport() -> None:
    async def scenario() -> None:
        async with fake_upstream() as up, serving([up.address]) as (_, host, port, _u, _t):
            assert addresses(await udp_ask("example.test", host, port)) == ["192.0.2.10"]
            assert addresses(await tcp_ask("example.test", host, port)) == ["192.0.2.10"]
            nx = await udp_ask("nothere.test", host, port)
            assert nx.rcode() == dns.rcode.NXDOMAIN
            assert up.seen == [("udp", "example.test."), ("tcp", "example.test."),
                               ("udp", "nothere.test.")]

    run(scenario)


def test_a_container_s_own_servers_are_asked_instead_of_the_server_s() -> None:
    async def scenario() -> None:
        async with fake_upstream(silent=True) as wrong, fake_upstream() as own:
            server = DnsServer(upstreams=[wrong.address], timeout=0.5)
            udp, tcp = loopback_pair()
            host, port = udp.getsockname()
            try:
                await server.add("c1", udp, tcp, lookup, reverse, upstreams=[own.address])
                assert addresses(await udp_ask("example.test", host, port)) == ["192.0.2.10"]
                assert wrong.seen == [] and own.seen == [("udp", "example.test.")]
            finally:
                await server.close()

    run(scenario)


def test_truncated_upstream_reply_reaches_the_client_which_retries_over_tcp() -> None:
    async def scenario() -> None:
        async with fake_upstream() as up, serving([up.address]) as (_, host, port, _u, _t):
            first = await udp_ask("big.test", host, port)
            assert first.flags & dns.flags.TC
            whole = await tcp_ask("big.test", host, port)
            assert sorted(addresses(whole)) == sorted(MANY)

    run(scenario)


def test_failing_and_silent_upstreams_are_skipped() -> None:
    async def scenario() -> None:
        async with (
            fake_upstream(silent=True) as quiet,
            fake_upstream(rcode=dns.rcode.SERVFAIL) as broken,
            fake_upstream() as good,
            serving([quiet.address, broken.address, good.address], timeout=0.3)
            as (_, host, port, _u, _t),
        ):
            reply = await udp_ask("example.test", host, port)
            assert addresses(reply) == ["192.0.2.10"]
            assert len(quiet.seen) == len(broken.seen) == len(good.seen) == 1

    run(scenario)


def test_servfail_when_no_upstream_answers() -> None:
    async def scenario() -> None:
        async with fake_upstream(silent=True) as quiet:
            for ups in ([], [quiet.address]):
                async with serving(ups, timeout=0.2) as (_, host, port, _u, _t):
                    reply = await udp_ask("example.test", host, port)
                    assert reply.rcode() == dns.rcode.SERVFAIL
                    assert reply.question[0].name.to_text() == "example.test."
                    reply = await tcp_ask("example.test", host, port)
                    assert reply.rcode() == dns.rcode.SERVFAIL

    run(scenario)


def test_no_forwarding_for_an_internal_network() -> None:
    async def scenario() -> None:
        async with fake_upstream() as up, serving([up.address], forward=False) as (
            _, host, port, _u, _t
        ):
            assert (await udp_ask("example.test", host, port)).rcode() == dns.rcode.SERVFAIL
            assert addresses(await udp_ask("web", host, port)) == ["10.1.0.2"]
            assert up.seen == []

    run(scenario)


def test_a_failing_lookup_answers_servfail_and_the_server_goes_on() -> None:
    async def scenario() -> None:
        calls = 0

        def flaky(name: str) -> list[str]:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("records are being rewritten")
            return lookup(name)

        server = DnsServer(upstreams=[])
        udp, tcp = loopback_pair()
        host, port = udp.getsockname()
        try:
            await server.add("c1", udp, tcp, flaky, reverse)
            assert (await udp_ask("web", host, port)).rcode() == dns.rcode.SERVFAIL
            assert addresses(await udp_ask("web", host, port)) == ["10.1.0.2"]
        finally:
            await server.close()

    run(scenario)


def test_malformed_datagrams_do_not_stop_the_server() -> None:
    async def scenario() -> None:
        async with serving([]) as (_, host, port, _u, _t):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.setblocking(False)
                s.connect((host, port))
                loop = asyncio.get_running_loop()
                await loop.sock_sendall(s, b"\x00")  # no reply
                await loop.sock_sendall(s, header())  # FORMERR
                reply = await asyncio.wait_for(loop.sock_recv(s, 512), 5)
                assert rcode_of(reply) == dns.rcode.FORMERR
            assert addresses(await udp_ask("web", host, port)) == ["10.1.0.2"]

    run(scenario)


def test_several_containers_each_see_their_own_names() -> None:
    async def scenario() -> None:
        server = DnsServer(upstreams=[])
        pairs = [loopback_pair() for _ in range(3)]
        try:
            for i, (udp, tcp) in enumerate(pairs):
                await server.add(f"c{i}", udp, tcp, records_of(f"peer{i}", f"10.3.0.{i + 1}"),
                                 reverse)
            assert sorted(server.keys()) == ["c0", "c1", "c2"]
            for i, (udp, _) in enumerate(pairs):
                host, port = udp.getsockname()
                assert addresses(await udp_ask(f"peer{i}", host, port)) == [f"10.3.0.{i + 1}"]
                other = await udp_ask(f"peer{(i + 1) % 3}", host, port)
                assert other.rcode() == dns.rcode.SERVFAIL  # not ours, no upstream
        finally:
            await server.close()
        assert server.keys() == []
        assert all(u.fileno() == -1 and t.fileno() == -1 for u, t in pairs)

    run(scenario)


def test_remove_closes_the_sockets_and_add_replaces() -> None:
    async def scenario() -> None:
        server = DnsServer(upstreams=[])
        udp, tcp = loopback_pair()
        host, port = udp.getsockname()
        try:
            await server.add("c1", udp, tcp, lookup, reverse)
            # a client connected over TCP when the container goes away
            reader, writer = await asyncio.open_connection(host, port)
            udp2, tcp2 = loopback_pair()
            await server.add("c1", udp2, tcp2, lookup, reverse)  # replaces: old ones closed
            assert udp.fileno() == -1 and tcp.fileno() == -1
            assert server.keys() == ["c1"]
            assert await asyncio.wait_for(reader.read(), 5) == b""  # its connection closed
            writer.close()
            second = tcp2.getsockname()
            await server.remove("c1")
            assert udp2.fileno() == -1 and tcp2.fileno() == -1
            assert server.keys() == []
            for addr in ((host, port), second):
                with pytest.raises(ConnectionRefusedError):
                    await asyncio.open_connection(*addr)
            await server.remove("c1")  # twice: nothing
        finally:
            await server.close()

    run(scenario)


def test_remove_cancels_queries_waiting_for_an_upstream() -> None:
    async def scenario() -> None:
        async with fake_upstream(silent=True) as quiet:
            server = DnsServer(upstreams=[quiet.address], timeout=30)
            udp, tcp = loopback_pair()
            addr = udp.getsockname()
            try:
                await server.add("c1", udp, tcp, lookup, reverse)
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.sendto(query("example.test.").to_wire(), addr)
                    reader, writer = await asyncio.open_connection(*addr)
                    wire = query("example.test.").to_wire()
                    writer.write(struct.pack("!H", len(wire)) + wire)
                    for _ in range(100):
                        if len(quiet.seen) == 2:
                            break
                        await asyncio.sleep(0.01)
                    assert len(quiet.seen) == 2  # both are out, waiting
                    await asyncio.wait_for(server.remove("c1"), 2)
                    assert await asyncio.wait_for(reader.read(), 5) == b""
                    writer.close()
            finally:
                await server.close()

    run(scenario)


def test_tcp_connections_per_container_are_capped() -> None:
    async def scenario() -> None:
        async with serving([]) as (_, host, port, _u, _t):
            conns = [await asyncio.open_connection(host, port) for _ in range(MAX_TCP_CLIENTS)]
            extra_reader, extra_writer = await asyncio.open_connection(host, port)
            assert await asyncio.wait_for(extra_reader.read(), 5) == b""
            extra_writer.close()
            for _, w in conns:
                w.close()
            await asyncio.sleep(0.05)
            assert addresses(await tcp_ask("web", host, port)) == ["10.1.0.2"]

    run(scenario)


def test_ndots_set_keeps_single_label_names_from_upstream() -> None:
    """moby's rule: a container that set ndots > 0 itself gets an empty NOERROR for a
    one-label A/AAAA name that is not a container's, so its resolver goes on to the
    search domains; names with a dot, and other types, still go upstream."""
    async def scenario() -> None:
        async with fake_upstream() as up, \
                serving([up.address], ndots_set=True) as (_, host, port, _u, _t):
            empty = await udp_ask("printer", host, port)
            assert empty.rcode() == dns.rcode.NOERROR and empty.answer == []
            assert addresses(await udp_ask("web", host, port)) == ["10.1.0.2"]  # ours
            assert addresses(await udp_ask("example.test", host, port)) == ["192.0.2.10"]
            await udp_ask("printer", host, port, "MX")
            assert up.seen == [("udp", "example.test."), ("udp", "printer.")]
        async with fake_upstream() as up, serving([up.address]) as (_, host, port, _u, _t):
            await udp_ask("printer", host, port)
            assert up.seen == [("udp", "printer.")]  # without the option: forwarded

    run(scenario)


def test_ndots_option_parsing() -> None:
    from pallet.network.dns import ndots_set

    assert ndots_set(["ndots:2"]) and ndots_set(["timeout:1", "ndots:5"])
    assert not ndots_set(["ndots:0"]) and not ndots_set([]) and not ndots_set(["ndots:x"])
