"""The embedded DNS server: Docker's resolver at 127.0.0.11 inside each container.

On a user-defined network a container's resolv.conf names 127.0.0.11. palletd opens a
UDP and a TCP socket bound to 127.0.0.11:53 *inside the container's network namespace*
(from a thread that setns'd there; a socket keeps the namespace it was made in) and serves
them on its own event loop, so there is no process and no thread per container::

    container netns                 palletd (host netns, one asyncio loop)
    +-----------------------+       +--------------------------------------------+
    | app --> 127.0.0.11:53 |  udp  | this container's listener sockets          |
    |   (palletd's sockets) |  tcp  |  answer(): names on its networks, TTL 600  |
    +-----------------------+ ----> |  else forward from the host netns ---------+--> host's
                                    |   -> the upstream's reply, or SERVFAIL     |    resolvers
                                    +--------------------------------------------+

What is answered here follows moby's libnetwork resolver: A and AAAA for names the
container's networks know (container names, aliases, short ids, ``name.network``), case
insensitively; a known name with no address of the asked family, and MX for a known name,
get NOERROR with no answer; PTR for the containers' addresses; everything else is
forwarded to at most three upstream servers in turn, a SERVFAIL or REFUSED moving on to
the next one, and SERVFAIL when none answers. Malformed queries get what miekg/dns (the
library dockerd uses) gives them: nothing for a packet without a header or a response,
FORMERR for a bad body, NOTIMP for an opcode other than QUERY.

dnspython costs ~150 ms to import; only palletd imports this module, lazily.
"""

from __future__ import annotations

import asyncio
import enum
import errno
import ipaddress
import logging
import os
import random
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import dns.rrset

from pallet.errors import InvalidArgument, NotFound, SystemFailure
from pallet.linux import netns

log = logging.getLogger("palletd")

Lookup = Callable[[str], list[str]]
ReverseLookup = Callable[[str], str | None]

RESOLVER_ADDRESS = "127.0.0.11"
DNS_PORT = 53
RESOLV_CONF = "/etc/resolv.conf"

TTL = 600  # moby's respTTL
MAX_UPSTREAMS = 3  # moby's maxExtDNS, glibc's MAXNS
# Queries out to upstream servers at once, each holding a socket: per container as in
# moby (maxConcurrent, per resolver), and in all, so that palletd keeps file descriptors
# for its other work. Past either limit the answer is REFUSED, as in moby.
MAX_FORWARDS = 1024
MAX_FORWARDS_ALL = 4096
MAX_TCP_CLIENTS = 64  # open TCP connections per container; more are closed at once
UDP_MIN_SIZE = 512  # a reply to a query without EDNS must fit in this
TCP_MAX_SIZE = 65535
TCP_IDLE = 8.0  # miekg/dns's idle timeout for a TCP client between queries
OUR_PAYLOAD = 1232  # the EDNS payload we advertise (DNS flag day 2020)
UDP_BATCH = 64  # datagrams read per wakeup, so one busy container cannot starve the loop

_HEADER = struct.Struct("!HHHHHH")
_LENGTH = struct.Struct("!H")
_QR = 0x8000
_RD = 0x0100


class _Drop(enum.Enum):
    """A datagram that gets no reply at all (moby: a response, or no header)."""

    DROP = enum.auto()


@dataclass(frozen=True)
class _Forward:
    """A well-formed query for a name that is not ours: it goes upstream."""

    query: dns.message.Message


_Verdict = bytes | _Forward | _Drop


def answer(
    query: bytes, lookup: Lookup, reverse: ReverseLookup, *, tcp: bool = False
) -> bytes | None:
    """The wire reply to ``query`` when this server answers it itself (a name of ours, or
    an error reply to a malformed query), else None: forward it, or (for a packet that is
    not a query at all) drop it. ``tcp`` lifts the 512-byte/EDNS size limit of a reply."""
    verdict = _respond(query, lookup, reverse, tcp=tcp)
    return verdict if isinstance(verdict, bytes) else None


def _respond(query: bytes, lookup: Lookup, reverse: ReverseLookup, *, tcp: bool) -> _Verdict:
    if len(query) < _HEADER.size:
        return _Drop.DROP
    qid, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(query)
    if flags & _QR:
        return _Drop.DROP
    opcode = (flags >> 11) & 0xF
    if opcode != dns.opcode.QUERY:
        # miekg/dns would pass a NOTIFY on to the resolver, which would forward it
        # upstream; a stub resolver has nothing to do with zone transfers.
        return _error_header(qid, flags, dns.rcode.NOTIMP, opcode)
    if qdcount != 1 or ancount > 1 or nscount > 1 or arcount > 2:
        return _error_header(qid, flags, dns.rcode.FORMERR, dns.opcode.QUERY)
    try:
        msg = dns.message.from_wire(query, ignore_trailing=True)
    except (dns.exception.DNSException, ValueError, struct.error):
        return _error_header(qid, flags, dns.rcode.FORMERR, dns.opcode.QUERY)
    reply = _local(msg, lookup, reverse)
    if reply is None:
        return _Forward(msg)
    return _to_wire(reply, _max_size(msg, tcp), tcp)


def _local(
    msg: dns.message.Message, lookup: Lookup, reverse: ReverseLookup
) -> dns.message.Message | None:
    """The reply from palletd's own records, or None when the name is not ours."""
    question = msg.question[0]
    if question.rdclass != dns.rdataclass.IN:
        return None
    rdtype = question.rdtype
    if rdtype == dns.rdatatype.PTR:
        return _ptr(msg, reverse)
    if rdtype not in (dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.MX):
        return None
    key = question.name.to_text(omit_final_dot=True).lower()
    if key in ("", "."):
        return None
    addresses = [ipaddress.ip_address(ip) for ip in lookup(key)]
    if not addresses:
        return None
    reply = _reply_to(msg)
    # A name we know answers NOERROR even without an address of the asked family, so a
    # resolver asking A and AAAA side by side does not send the AAAA upstream; MX gets
    # the same "implicit MX" empty answer (RFC 5321 5.1), as in moby.
    version = {dns.rdatatype.A: 4, dns.rdatatype.AAAA: 6}.get(rdtype)
    wanted = [str(a) for a in addresses if a.version == version]
    if wanted:
        random.shuffle(wanted)  # round robin over containers sharing an alias
        reply.answer.append(
            dns.rrset.from_text_list(question.name, TTL, dns.rdataclass.IN, rdtype, wanted)
        )
    return reply


def _ptr(msg: dns.message.Message, reverse: ReverseLookup) -> dns.message.Message | None:
    qname = msg.question[0].name
    try:
        ip = str(ipaddress.ip_address(dns.reversename.to_address(qname)))
    except (dns.exception.DNSException, ValueError):
        return None  # not a whole address under in-addr.arpa / ip6.arpa: upstream's
    host = reverse(ip)
    if not host:
        return None
    reply = _reply_to(msg)
    target = dns.name.from_text(host)  # relative text becomes absolute, as dns.Fqdn
    reply.answer.append(
        dns.rrset.from_text_list(
            qname, TTL, dns.rdataclass.IN, dns.rdatatype.PTR, [target.to_text()]
        )
    )
    return reply


def _reply_to(msg: dns.message.Message) -> dns.message.Message:
    return dns.message.make_response(msg, recursion_available=True, our_payload=OUR_PAYLOAD)


def _max_size(msg: dns.message.Message, tcp: bool) -> int:
    if tcp:
        return TCP_MAX_SIZE
    return max(UDP_MIN_SIZE, msg.payload if msg.edns >= 0 else 0)


def _to_wire(reply: dns.message.Message, max_size: int, tcp: bool) -> bytes:
    """The reply trimmed to what the client can take: answers are dropped from the end
    until it fits, and over UDP the TC bit tells the client to ask again over TCP."""
    while True:
        try:
            return reply.to_wire(max_size=max_size)
        except dns.exception.TooBig:
            if not reply.answer:
                raise
            rrset = reply.answer[-1]
            rdatas = list(rrset)
            if len(rdatas) <= 1:
                reply.answer.pop()
            else:
                reply.answer[-1] = dns.rrset.from_rdata_list(rrset.name, rrset.ttl, rdatas[:-1])
            if not tcp:
                reply.flags |= dns.flags.TC


def _error_header(qid: int, flags: int, rcode: int, opcode: int) -> bytes:
    """A bare header reply, as miekg/dns sends for a query it cannot read."""
    return _HEADER.pack(qid, _QR | (opcode << 11) | (flags & _RD) | rcode, 0, 0, 0, 0)


def _error_reply(msg: dns.message.Message, rcode: dns.rcode.Rcode) -> bytes:
    reply = dns.message.make_response(msg, our_payload=OUR_PAYLOAD)
    reply.set_rcode(rcode)
    return reply.to_wire()


# --- upstream servers -------------------------------------------------------------


@dataclass(frozen=True)
class Upstream:
    """One server queries are forwarded to, as written and as a socket address."""

    text: str
    family: socket.AddressFamily
    sockaddr: tuple[Any, ...]  # (host, port) or (host, port, flowinfo, scope_id)


def parse_upstream(text: str) -> Upstream:
    """``ip``, ``ip:port``, ``v6`` or ``[v6]:port`` (port 53 by default; a v6 address
    may carry a ``%zone``)."""
    host, port = text, DNS_PORT
    try:
        if text.startswith("["):
            host, sep, rest = text[1:].partition("]")
            if not sep or (rest and not rest.startswith(":")):
                raise ValueError(text)
            if rest:
                port = int(rest[1:])
        elif text.count(":") == 1:
            host, _, digits = text.partition(":")
            port = int(digits)
        ipaddress.ip_address(host.partition("%")[0])
        if not 0 < port < 65536:
            raise ValueError(text)
        info = socket.getaddrinfo(
            host, port, type=socket.SOCK_DGRAM, flags=socket.AI_NUMERICHOST
        )[0]
    except (ValueError, socket.gaierror) as exc:
        raise InvalidArgument(
            f"invalid DNS server address {text!r}: want ip, ip:port or [ipv6]:port",
            op="dns", obj=text,
        ) from exc
    return Upstream(text, info[0], tuple(info[4]))


def host_nameservers(path: str = RESOLV_CONF) -> list[str]:
    """The ``nameserver`` addresses of a resolv.conf, in order; none when it is missing."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    servers = []
    for line in lines:
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            servers.append(words[1])
    return servers


def upstreams_from(texts: list[str], *, strict: bool = True) -> list[Upstream]:
    """Parsed upstreams without our own address (a query sent there would come back to
    us), at most MAX_UPSTREAMS of them as in moby. Not ``strict``: a malformed entry is
    skipped with a warning instead of raising InvalidArgument."""
    own = ipaddress.ip_address(RESOLVER_ADDRESS)
    result = []
    for text in texts:
        try:
            up = parse_upstream(text)
        except InvalidArgument as exc:
            if strict:
                raise
            log.warning("embedded DNS: %s", exc)
            continue
        if ipaddress.ip_address(up.sockaddr[0].partition("%")[0]) == own and (
            up.sockaddr[1] == DNS_PORT
        ):
            log.info("embedded DNS: not using own address %s as an upstream server", text)
            continue
        result.append(up)
    return result[:MAX_UPSTREAMS]


# --- listeners in a container's netns ---------------------------------------------


def open_listeners(
    netns_path: str, address: str = RESOLVER_ADDRESS, port: int = DNS_PORT
) -> tuple[socket.socket, socket.socket]:
    """A UDP socket and a listening TCP socket bound to ``address:port`` inside the
    network namespace at ``netns_path``; non-blocking and close-on-exec. Only a short-lived
    thread enters the namespace; the caller's threads stay where they are."""
    try:
        return netns.run_in(netns_path, lambda: _bind_pair(address, port))
    except FileNotFoundError as exc:
        raise NotFound(
            f"network namespace {netns_path} not found", op="dns", obj=netns_path
        ) from exc
    except OSError as exc:
        raise SystemFailure(
            f"embedded DNS: cannot listen on {address}:{port} in {netns_path}: "
            f"{os.strerror(exc.errno or errno.EIO)}",
            op="dns", obj=netns_path, errno=exc.errno or 0, path=netns_path,
        ) from exc


def _bind_pair(address: str, port: int) -> tuple[socket.socket, socket.socket]:
    family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    udp = socket.socket(family, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
    tcp = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
    try:
        udp.bind((address, port))
        # a restarted palletd binds again while the old connections sit in TIME_WAIT
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind((address, port))
        tcp.listen(socket.SOMAXCONN)
    except OSError:
        udp.close()
        tcp.close()
        raise
    return udp, tcp


def ndots_set(options: list[str]) -> bool:
    """Whether --dns-option sets ndots above 0 (moby's sandbox: only then its resolver
    keeps single-label names from the upstream servers)."""
    for opt in options:
        name, _, value = str(opt).partition(":")
        if name == "ndots":
            return value.isdigit() and int(value) > 0
    return False


# --- the server -------------------------------------------------------------------


@dataclass(eq=False)
class _Listener:
    key: str
    udp: socket.socket
    tcp: socket.socket
    lookup: Lookup
    reverse: ReverseLookup
    forward: bool
    upstreams: list[Upstream] | None = None  # the container's own --dns, else the server's
    ndots_set: bool = False  # the container asked for ndots > 0 itself (--dns-option)
    forwarding: int = 0
    server: asyncio.Server | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    writers: set[asyncio.StreamWriter] = field(default_factory=set)
    closed: bool = False


class DnsServer:
    """Serves the listener sockets of many containers on the running event loop."""

    def __init__(self, upstreams: list[str] | None = None, timeout: float = 2.0) -> None:
        """``upstreams``: "ip", "ip:port" or "[v6]:port"; None reads the host's
        resolv.conf now. ``timeout``: seconds to wait for each upstream server."""
        if upstreams is None:
            self.upstreams = upstreams_from(host_nameservers(), strict=False)
        else:
            self.upstreams = upstreams_from(upstreams)
        self.timeout = timeout
        self._listeners: dict[str, _Listener] = {}
        self._forwarding = 0
        self._buffer = bytearray(TCP_MAX_SIZE)  # one receive buffer: one loop, one reader

    def keys(self) -> list[str]:
        return list(self._listeners)

    async def add(
        self, key: str, udp: socket.socket, tcp: socket.socket, lookup: Lookup,
        reverse: ReverseLookup, *, forward: bool = True, upstreams: list[str] | None = None,
        ndots_set: bool = False,
    ) -> None:
        """Serve ``udp`` and ``tcp`` (from open_listeners) for container ``key``,
        replacing (and closing) what was served for it. ``forward=False`` answers
        SERVFAIL for names that are not ours instead of asking upstream (moby's internal
        networks). ``upstreams``: the container's own servers (its --dns), asked instead
        of the server's. ``ndots_set``: the container set ndots > 0 itself; a single-label
        A/AAAA name that is not ours then gets an empty answer instead of going upstream,
        so its resolver goes on to the search domains (moby's rule)."""
        own = upstreams_from(upstreams) if upstreams else None
        await self.remove(key)
        loop = asyncio.get_running_loop()
        listener = _Listener(key, udp, tcp, lookup, reverse, forward, own, ndots_set)
        udp.setblocking(False)
        tcp.setblocking(False)
        loop.add_reader(udp.fileno(), self._on_udp, listener)
        try:
            listener.server = await asyncio.start_server(
                partial(self._on_tcp, listener), sock=tcp
            )
        except BaseException:
            loop.remove_reader(udp.fileno())
            udp.close()
            tcp.close()
            raise
        self._listeners[key] = listener

    async def remove(self, key: str) -> None:
        """Stop serving container ``key`` and close its sockets; nothing if unknown."""
        listener = self._listeners.pop(key, None)
        if listener is None:
            return
        listener.closed = True
        asyncio.get_running_loop().remove_reader(listener.udp.fileno())
        listener.udp.close()
        if listener.server is not None:
            listener.server.close()  # closes the listening socket
        listener.tcp.close()
        for writer in list(listener.writers):
            writer.close()
        tasks = list(listener.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        for key in list(self._listeners):
            await self.remove(key)

    # UDP: one reader callback per socket; local answers are sent from the callback,
    # a task exists only while a query is out to an upstream server.

    def _on_udp(self, listener: _Listener) -> None:
        for _ in range(UDP_BATCH):
            try:
                n, peer = listener.udp.recvfrom_into(self._buffer)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("embedded DNS %s: recvfrom: %s", listener.key, exc)
                return
            query = bytes(self._buffer[:n])
            verdict = self._verdict(listener, query, tcp=False)
            if isinstance(verdict, bytes):
                self._send_udp(listener, verdict, peer)
            elif isinstance(verdict, _Forward):
                task = asyncio.get_running_loop().create_task(
                    self._forward_udp(listener, query, verdict.query, peer)
                )
                listener.tasks.add(task)
                task.add_done_callback(listener.tasks.discard)

    async def _forward_udp(
        self, listener: _Listener, query: bytes, msg: dns.message.Message, peer: tuple[Any, ...]
    ) -> None:
        reply = await self._forward(listener, query, msg, tcp=False)
        if not listener.closed:
            self._send_udp(listener, reply, peer)

    @staticmethod
    def _send_udp(listener: _Listener, reply: bytes, peer: tuple[Any, ...]) -> None:
        try:
            listener.udp.sendto(reply, peer)
        except OSError as exc:  # a full socket buffer drops the reply; the client retries
            log.debug("embedded DNS %s: sendto: %s", listener.key, exc)

    # TCP: asyncio's server owns accept; one task per connection, queries in order.

    async def _on_tcp(
        self, listener: _Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if len(listener.writers) >= MAX_TCP_CLIENTS:
            writer.close()
            return
        task = asyncio.current_task()
        if task is not None:
            listener.tasks.add(task)
        listener.writers.add(writer)
        try:
            while not listener.closed:
                head = await asyncio.wait_for(reader.readexactly(_LENGTH.size), TCP_IDLE)
                (size,) = _LENGTH.unpack(head)
                query = await asyncio.wait_for(reader.readexactly(size), TCP_IDLE)
                verdict = self._verdict(listener, query, tcp=True)
                if isinstance(verdict, _Forward):
                    verdict = await self._forward(listener, query, verdict.query, tcp=True)
                if isinstance(verdict, bytes):
                    writer.write(_LENGTH.pack(len(verdict)) + verdict)
                    await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass  # the client hung up, or went quiet: close its connection
        finally:
            listener.writers.discard(writer)
            if task is not None:
                listener.tasks.discard(task)
            writer.close()

    def _verdict(self, listener: _Listener, query: bytes, *, tcp: bool) -> _Verdict:
        try:
            return _respond(query, listener.lookup, listener.reverse, tcp=tcp)
        except Exception:  # a bug in palletd's records must not stop the server
            log.exception("embedded DNS %s: answering a query failed", listener.key)
            qid, flags = struct.unpack_from("!HH", query)
            return _error_header(qid, flags, dns.rcode.SERVFAIL, dns.opcode.QUERY)

    # Forwarding, from palletd's own (the host's) network namespace.

    async def _forward(
        self, listener: _Listener, query: bytes, msg: dns.message.Message, *, tcp: bool
    ) -> bytes:
        """The first usable upstream reply, verbatim, else SERVFAIL as moby does.

        The query goes upstream over the transport it came in on, with the client's own
        EDNS size. A truncated UDP reply is passed on as it is (moby does the same): it
        did not fit the client's size, so the client has to ask again over TCP anyway,
        and then this forwards over TCP."""
        if not listener.forward:
            return _error_reply(msg, dns.rcode.SERVFAIL)
        question = msg.question[0]
        if listener.ndots_set and question.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA) \
                and len(question.name.labels) <= 2:  # one label and the root
            return _to_wire(_reply_to(msg), _max_size(msg, tcp), tcp)
        if listener.forwarding >= MAX_FORWARDS or self._forwarding >= MAX_FORWARDS_ALL:
            return _error_reply(msg, dns.rcode.REFUSED)
        listener.forwarding += 1
        self._forwarding += 1
        try:
            for up in listener.upstreams or self.upstreams:
                try:
                    exchange = _exchange_tcp(up, query) if tcp else _exchange_udp(up, query)
                    reply = await asyncio.wait_for(exchange, self.timeout)
                except (OSError, TimeoutError, _BadReply) as exc:
                    log.debug("embedded DNS: upstream %s: %r", up.text, exc)
                    continue
                rcode = _HEADER.unpack_from(reply)[1] & 0xF
                if rcode in (dns.rcode.SERVFAIL, dns.rcode.REFUSED):
                    continue  # maybe transient; moby asks the next server
                return reply
        finally:
            listener.forwarding -= 1
            self._forwarding -= 1
        return _error_reply(msg, dns.rcode.SERVFAIL)


class _BadReply(Exception):
    """An upstream sent something that is not a reply to our query."""


def _is_reply(data: bytes, query: bytes) -> bool:
    return len(data) >= _HEADER.size and data[:2] == query[:2] and bool(data[2] & 0x80)


async def _exchange_udp(up: Upstream, query: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    with socket.socket(up.family, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK) as sock:
        sock.connect(up.sockaddr)  # UDP: no packet sent; only this peer's replies come in
        await loop.sock_sendall(sock, query)
        while True:
            data = await loop.sock_recv(sock, TCP_MAX_SIZE)
            if _is_reply(data, query):
                return data


async def _exchange_tcp(up: Upstream, query: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    with socket.socket(up.family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK) as sock:
        await loop.sock_connect(sock, up.sockaddr)
        await loop.sock_sendall(sock, _LENGTH.pack(len(query)) + query)
        (size,) = _LENGTH.unpack(await _recv_exactly(loop, sock, _LENGTH.size))
        data = await _recv_exactly(loop, sock, size)
    if not _is_reply(data, query):
        raise _BadReply(f"{up.text} answered another query")
    return data


async def _recv_exactly(loop: asyncio.AbstractEventLoop, sock: socket.socket, n: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < n:
        chunk = await loop.sock_recv(sock, n - len(chunks))
        if not chunk:
            raise _BadReply("connection closed mid-reply")
        chunks += chunk
    return bytes(chunks)
