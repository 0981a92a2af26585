"""rtnetlink (NETLINK_ROUTE) spoken over the stdlib's AF_NETLINK socket.

Links, addresses, routes, bridge-port flags and qdisc removal: what a container's
network needs, with one request per operation and no event loop. A socket works in
the network namespace of the thread that opened it, for its whole life, whichever
thread uses it later; that is how the same code configures the host and a container's
namespace (see netns.run_in).

Wire format (all host byte order, every header and attribute padded to 4 bytes)::

    nlmsghdr  len:u32 type:u16 flags:u16 seq:u32 pid:u32
    family header (ifinfomsg 16 B | ifaddrmsg 8 B | rtmsg 12 B | tcmsg 20 B)
    attributes  len:u16 type:u16 payload, nested attributes inside a payload

The kernel answers a request flagged NLM_F_ACK with an NLMSG_ERROR carrying 0 or a
negative errno (plus, with NETLINK_EXT_ACK, its own words), and a dump with messages
ending in NLMSG_DONE. The encoders and parsers below are pure functions so they are
tested without a kernel.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType

# --- netlink ------------------------------------------------------------------------------

SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11

NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSG_OVERRUN = 4

NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP_INTR = 0x10
NLM_F_DUMP = 0x300
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
# flags of an NLMSG_ERROR message
NLM_F_CAPPED = 0x100
NLM_F_ACK_TLVS = 0x200

NLMSGERR_ATTR_MSG = 1

NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF

# --- rtnetlink ----------------------------------------------------------------------------

RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_SETLINK = 19
RTM_NEWADDR = 20
RTM_GETADDR = 22
RTM_NEWROUTE = 24
RTM_DELQDISC = 37

AF_UNSPEC = 0
AF_BRIDGE = 7

IFF_UP = 0x1

IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_MASTER = 10
IFLA_PROTINFO = 12
IFLA_LINKINFO = 18
IFLA_EXT_MASK = 29
IFLA_NET_NS_FD = 28
IFLA_TSO_MAX_SIZE = 59
IFLA_GSO_IPV4_MAX_SIZE = 63

IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2

VETH_INFO_PEER = 1

IFLA_BRPORT_MODE = 4  # hairpin

RTEXT_FILTER_SKIP_STATS = 1 << 3

IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_BROADCAST = 4
IFA_FLAGS = 8
IFA_F_NODAD = 0x02

RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5

RT_TABLE_MAIN = 254
RTPROT_BOOT = 3
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RTN_UNICAST = 1

TC_H_ROOT = 0xFFFFFFFF
TC_H_INGRESS = 0xFFFFFFF1

_NLMSGHDR = struct.Struct("=IHHII")
_RTATTR = struct.Struct("=HH")
_IFINFOMSG = struct.Struct("=BxHiII")
_IFADDRMSG = struct.Struct("=BBBBI")
_RTMSG = struct.Struct("=BBBBBBBBI")
_TCMSG = struct.Struct("=BxxxiIII")
_U32 = struct.Struct("=I")
_I32 = struct.Struct("=i")

_RECV_SIZE = 65536  # the kernel fills a dump buffer up to 32 KiB


@dataclass(frozen=True, slots=True)
class Link:
    """A network interface as the kernel reports it."""

    index: int
    name: str
    kind: str  # "bridge", "veth", "ifb", ... ; "" for a device without a rtnl kind (lo, eth0)
    master: int | None  # the index of the bridge this is a port of
    mac: str  # "aa:bb:cc:dd:ee:ff", "" when the device has none
    up: bool  # administratively up (IFF_UP)
    mtu: int
    # The largest TCP segment the device takes (tso_max_size), and the one the stack
    # builds for IPv4 through it (gso_ipv4_max_size, "BIG TCP" above 64 KiB); 0 where
    # the kernel does not say (gso_ipv4_max_size came with 6.3).
    tso_max_size: int = 0
    gso_ipv4_max_size: int = 0


# --- encoding -----------------------------------------------------------------------------


def align(n: int) -> int:
    return (n + 3) & ~3


def attr(kind: int, payload: bytes) -> bytes:
    """One attribute, padded to 4 bytes."""
    n = _RTATTR.size + len(payload)
    return _RTATTR.pack(n, kind) + payload + b"\0" * (align(n) - n)


def attr_u8(kind: int, value: int) -> bytes:
    return attr(kind, bytes((value,)))


def attr_u32(kind: int, value: int) -> bytes:
    return attr(kind, _U32.pack(value))


def attr_str(kind: int, value: str) -> bytes:
    return attr(kind, value.encode() + b"\0")


def nest(kind: int, *attrs: bytes) -> bytes:
    return attr(kind, b"".join(attrs))


def message(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    """A whole netlink message: header and body (port id 0: the kernel fills it in)."""
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags, seq, 0) + body


def ifinfomsg(index: int = 0, flags: int = 0, change: int = 0, family: int = AF_UNSPEC) -> bytes:
    return _IFINFOMSG.pack(family, 0, index, flags, change)


def ifaddrmsg(family: int, prefixlen: int, flags: int, scope: int, index: int) -> bytes:
    return _IFADDRMSG.pack(family, prefixlen, flags, scope, index)


def rtmsg(family: int, dst_len: int, scope: int) -> bytes:
    """A unicast route in the main table, as `ip route add` makes it."""
    return _RTMSG.pack(family, dst_len, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, scope, RTN_UNICAST, 0)


def tcmsg(index: int, handle: int, parent: int) -> bytes:
    return _TCMSG.pack(AF_UNSPEC, index, handle, parent, 0)


def parse_mac(mac: str) -> bytes:
    """"aa:bb:cc:dd:ee:ff" -> 6 bytes; ValueError for anything else."""
    parts = mac.split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        raise ValueError(f"invalid MAC address: {mac!r}")
    try:
        return bytes.fromhex("".join(parts))
    except ValueError:
        raise ValueError(f"invalid MAC address: {mac!r}") from None


def format_mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def parse_ip(text: str) -> tuple[int, bytes]:
    """An IPv4 or IPv6 address -> (address family, packed bytes); ValueError if malformed."""
    family = socket.AF_INET6 if ":" in text else socket.AF_INET
    try:
        return family, socket.inet_pton(family, text)
    except OSError:
        raise ValueError(f"invalid IP address: {text!r}") from None


def parse_cidr(cidr: str) -> tuple[int, bytes, int]:
    """"10.1.0.1/24" or "fd00::1/64" -> (family, packed address, prefix length)."""
    addr, slash, prefix = cidr.partition("/")
    family, packed = parse_ip(addr)
    bits = len(packed) * 8
    if not slash:
        return family, packed, bits
    if not prefix.isdigit() or int(prefix) > bits:
        raise ValueError(f"invalid CIDR address: {cidr!r}")
    return family, packed, int(prefix)


def format_cidr(family: int, packed: bytes, prefix: int) -> str:
    return f"{socket.inet_ntop(family, packed)}/{prefix}"


def broadcast_v4(packed: bytes, prefix: int) -> bytes:
    """The directed broadcast address of an IPv4 subnet."""
    host_bits = (1 << (32 - prefix)) - 1
    return (int.from_bytes(packed, "big") | host_bits).to_bytes(4, "big")


def veth_request(name: str, peer: str, *, peer_netns_fd: int | None = None,
                 mtu: int | None = None, master: int | None = None, up: bool = False,
                 peer_mac: bytes | None = None) -> bytes:
    """The RTM_NEWLINK body that makes a veth pair in one step: the peer is created
    directly in its namespace with its final name, address and MTU (left down, so its
    addresses are in place before it comes up); the host end can be enslaved and up."""
    peer_attrs = [attr_str(IFLA_IFNAME, peer)]
    if peer_netns_fd is not None:
        peer_attrs.append(attr_u32(IFLA_NET_NS_FD, peer_netns_fd))
    if mtu is not None:
        peer_attrs.append(attr_u32(IFLA_MTU, mtu))
    if peer_mac is not None:
        peer_attrs.append(attr(IFLA_ADDRESS, peer_mac))
    info = nest(IFLA_LINKINFO,
                attr_str(IFLA_INFO_KIND, "veth"),
                nest(IFLA_INFO_DATA, attr(VETH_INFO_PEER, ifinfomsg() + b"".join(peer_attrs))))
    attrs = [attr_str(IFLA_IFNAME, name)]
    if mtu is not None:
        attrs.append(attr_u32(IFLA_MTU, mtu))
    if master is not None:
        attrs.append(attr_u32(IFLA_MASTER, master))
    attrs.append(info)
    flags = IFF_UP if up else 0
    return ifinfomsg(flags=flags, change=IFF_UP if up else 0) + b"".join(attrs)


# --- decoding -----------------------------------------------------------------------------


def parse_attrs(buf: bytes, offset: int = 0, end: int | None = None) -> dict[int, bytes]:
    """Attributes from ``offset`` to ``end``: type (flags masked off) -> payload. A type
    given twice keeps its last payload; a truncated attribute ends the walk."""
    stop = len(buf) if end is None else end
    out: dict[int, bytes] = {}
    while offset + _RTATTR.size <= stop:
        n, kind = _RTATTR.unpack_from(buf, offset)
        if n < _RTATTR.size or offset + n > stop:
            break
        out[kind & NLA_TYPE_MASK] = bytes(buf[offset + _RTATTR.size:offset + n])
        offset += align(n)
    return out


def split_messages(buf: bytes) -> Iterator[tuple[int, int, int, bytes]]:
    """The messages in one datagram: (type, flags, seq, payload)."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(buf):
        n, kind, flags, seq, _pid = _NLMSGHDR.unpack_from(buf, offset)
        if n < _NLMSGHDR.size or offset + n > len(buf):
            raise ValueError(f"truncated netlink message ({n} bytes at {offset})")
        yield kind, flags, seq, bytes(buf[offset + _NLMSGHDR.size:offset + n])
        offset += align(n)


def parse_error(flags: int, payload: bytes) -> tuple[int, str]:
    """An NLMSG_ERROR payload -> (errno, 0 for an ack; the kernel's extended message)."""
    (code,) = _I32.unpack_from(payload)
    text = ""
    if flags & NLM_F_ACK_TLVS:
        if flags & NLM_F_CAPPED:
            offset = _I32.size + _NLMSGHDR.size
        else:
            (orig_len,) = _U32.unpack_from(payload, _I32.size)
            offset = _I32.size + align(orig_len)
        tlvs = parse_attrs(payload, offset)
        if NLMSGERR_ATTR_MSG in tlvs:
            text = cstr(tlvs[NLMSGERR_ATTR_MSG])
    return -code, text


def cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode(errors="replace")


def u32(raw: bytes) -> int:
    return int(_U32.unpack_from(raw)[0])


def parse_link(payload: bytes) -> Link:
    """An RTM_NEWLINK payload -> Link."""
    _family, _type, index, flags, _change = _IFINFOMSG.unpack_from(payload)
    attrs = parse_attrs(payload, _IFINFOMSG.size)
    kind = ""
    if IFLA_LINKINFO in attrs:
        info = parse_attrs(attrs[IFLA_LINKINFO])
        kind = cstr(info.get(IFLA_INFO_KIND, b""))
    master = u32(attrs[IFLA_MASTER]) if IFLA_MASTER in attrs else None
    return Link(
        index=index,
        name=cstr(attrs.get(IFLA_IFNAME, b"")),
        kind=kind,
        master=master or None,
        mac=format_mac(attrs.get(IFLA_ADDRESS, b"")),
        up=bool(flags & IFF_UP),
        mtu=u32(attrs[IFLA_MTU]) if IFLA_MTU in attrs else 0,
        tso_max_size=u32(attrs[IFLA_TSO_MAX_SIZE]) if IFLA_TSO_MAX_SIZE in attrs else 0,
        gso_ipv4_max_size=(u32(attrs[IFLA_GSO_IPV4_MAX_SIZE])
                           if IFLA_GSO_IPV4_MAX_SIZE in attrs else 0),
    )


def parse_addr(payload: bytes) -> tuple[int, str]:
    """An RTM_NEWADDR payload -> (ifindex, "ip/prefix"). IFA_LOCAL is the interface's own
    address (IFA_ADDRESS is the peer's on a point-to-point link); IPv6 sends only
    IFA_ADDRESS."""
    family, prefix, _flags, _scope, index = _IFADDRMSG.unpack_from(payload)
    attrs = parse_attrs(payload, _IFADDRMSG.size)
    raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS, b"")
    return index, format_cidr(family, raw, prefix)


# --- the socket ---------------------------------------------------------------------------


class RtNetlink:
    """A NETLINK_ROUTE socket in the network namespace of the thread that opens it.

    One request at a time (not for sharing between threads). Every failure raises
    OSError(errno, "<what> <object>: <strerror> (<kernel's words>)").
    """

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                   socket.NETLINK_ROUTE)
        try:
            # Kernels before 4.12 lack extended acks; their errors just carry fewer words.
            with contextlib.suppress(OSError):
                self._sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
                self._sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
            self._sock.bind((0, 0))
        except BaseException:
            self._sock.close()
            raise
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> RtNetlink:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- links --

    def link(self, name: str) -> Link | None:
        """The link called ``name``, or None."""
        body = ifinfomsg() + attr_str(IFLA_IFNAME, name) + attr_u32(
            IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)
        try:
            return parse_link(self._get(RTM_GETLINK, body, f"get link {name!r}"))
        except OSError as exc:
            if exc.errno == errno.ENODEV:
                return None
            raise

    def link_index(self, name: str) -> int | None:
        link = self.link(name)
        return link.index if link is not None else None

    def links(self) -> list[Link]:
        body = ifinfomsg() + attr_u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)
        return [parse_link(p) for p in self._dump(RTM_GETLINK, body, "list links")]

    def link_add(self, name: str, kind: str, *, mtu: int | None = None,
                 mac: str | None = None, up: bool = False) -> int:
        """Create a link of a kind that needs no options (bridge, ifb, dummy); its index."""
        attrs = [attr_str(IFLA_IFNAME, name)]
        if mtu is not None:
            attrs.append(attr_u32(IFLA_MTU, mtu))
        if mac is not None:
            attrs.append(attr(IFLA_ADDRESS, parse_mac(mac)))
        attrs.append(nest(IFLA_LINKINFO, attr_str(IFLA_INFO_KIND, kind)))
        flags = IFF_UP if up else 0
        body = ifinfomsg(flags=flags, change=flags) + b"".join(attrs)
        self._ack(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body, f"add {kind} {name!r}")
        return self._new_link(name).index

    def link_add_bridge(self, name: str, mtu: int | None = None) -> int:
        """Create a bridge; its index. The bridge gets a fixed random MAC address so it
        keeps one address as ports come and go (otherwise it takes the lowest port's, and
        containers' ARP caches go stale)."""
        return self.link_add(name, "bridge", mtu=mtu, mac=random_mac())

    def link_add_veth(self, name: str, peer: str, peer_netns_fd: int | None = None, *,
                      mtu: int | None = None, peer_mac: str | None = None,
                      master: int | None = None, up: bool = False) -> Link:
        """Create a veth pair; the end called ``name`` (in this namespace), as made.
        The peer is made directly in the namespace ``peer_netns_fd`` when given, down."""
        body = veth_request(name, peer, peer_netns_fd=peer_netns_fd, mtu=mtu, master=master,
                            up=up, peer_mac=parse_mac(peer_mac) if peer_mac else None)
        self._ack(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body,
                  f"add veth {name!r} (peer {peer!r})")
        return self._new_link(name)

    def link_set(self, index: int, *, up: bool | None = None, master: int | None = None,
                 mtu: int | None = None, mac: str | None = None, name: str | None = None,
                 netns_fd: int | None = None, gso_ipv4_max_size: int | None = None) -> None:
        """Change a link; ``master=0`` releases it from its bridge. The kernel applies a
        namespace move first, then the address, MTU, name, master and up/down."""
        attrs = []
        if netns_fd is not None:
            attrs.append(attr_u32(IFLA_NET_NS_FD, netns_fd))
        if mac is not None:
            attrs.append(attr(IFLA_ADDRESS, parse_mac(mac)))
        if mtu is not None:
            attrs.append(attr_u32(IFLA_MTU, mtu))
        if name is not None:
            attrs.append(attr_str(IFLA_IFNAME, name))
        if master is not None:
            attrs.append(attr_u32(IFLA_MASTER, master))
        if gso_ipv4_max_size is not None:
            attrs.append(attr_u32(IFLA_GSO_IPV4_MAX_SIZE, gso_ipv4_max_size))
        change = IFF_UP if up is not None else 0
        flags = IFF_UP if up else 0
        body = ifinfomsg(index, flags, change) + b"".join(attrs)
        self._ack(RTM_NEWLINK, 0, body, f"set link {index}")

    def link_del(self, index: int) -> None:
        self._ack(RTM_DELLINK, 0, ifinfomsg(index), f"delete link {index}")

    def link_del_name(self, name: str) -> bool:
        """Delete the link called ``name`` in one request; False if there was none."""
        try:
            self._ack(RTM_DELLINK, 0, ifinfomsg() + attr_str(IFLA_IFNAME, name),
                      f"delete link {name!r}")
        except OSError as exc:
            if exc.errno == errno.ENODEV:
                return False
            raise
        return True

    def set_hairpin(self, index: int, on: bool) -> None:
        """Turn a bridge port's hairpin mode on or off (`bridge link set hairpin`): frames
        may go back out of the port they came in by, so a container reaches itself through
        a DNAT'ed published port. The kernel reads IFLA_PROTINFO as port attributes only
        when it is flagged nested."""
        body = ifinfomsg(index, family=AF_BRIDGE) + attr(
            IFLA_PROTINFO | NLA_F_NESTED, attr_u8(IFLA_BRPORT_MODE, int(on)))
        self._ack(RTM_SETLINK, 0, body, f"set hairpin on link {index}")

    # -- addresses and routes --

    def addr_add(self, index: int, cidr: str) -> None:
        """Add "10.1.0.1/24" or "fd00::1/64" to link ``index``. IPv6 addresses skip
        duplicate address detection (the pool is ours; DAD would hold them for a second)."""
        family, packed, prefix = parse_cidr(cidr)
        flags = IFA_F_NODAD if family == socket.AF_INET6 else 0
        attrs = [attr(IFA_LOCAL, packed), attr(IFA_ADDRESS, packed)]
        if family == socket.AF_INET and prefix < 31:
            attrs.append(attr(IFA_BROADCAST, broadcast_v4(packed, prefix)))
        if flags:
            attrs.append(attr_u32(IFA_FLAGS, flags))
        body = ifaddrmsg(family, prefix, flags, RT_SCOPE_UNIVERSE, index) + b"".join(attrs)
        self._ack(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body,
                  f"add address {cidr} to link {index}")

    def addrs(self, index: int | None = None) -> list[tuple[int, str]]:
        """(ifindex, "ip/prefix") of every address, or of link ``index``'s."""
        body = ifaddrmsg(AF_UNSPEC, 0, 0, 0, 0)
        found = [parse_addr(p) for p in self._dump(RTM_GETADDR, body, "list addresses")]
        return [a for a in found if index is None or a[0] == index]

    def route_add(self, dst: str, gateway: str | None, index: int) -> None:
        """Add a route to ``dst`` ("default" or a CIDR) via ``gateway`` (or on the link
        when None) out of link ``index``. "default" takes the gateway's family (IPv4
        without one); "::/0" names the IPv6 default explicitly."""
        attrs = []
        if dst == "default":
            family = parse_ip(gateway)[0] if gateway else socket.AF_INET
            dst_len = 0
        else:
            family, packed, dst_len = parse_cidr(dst)
            if dst_len:
                attrs.append(attr(RTA_DST, packed))
        if gateway is not None:
            gw_family, gw = parse_ip(gateway)
            if gw_family != family:
                raise ValueError(f"gateway {gateway} is not of the family of {dst}")
            attrs.append(attr(RTA_GATEWAY, gw))
        attrs.append(attr_u32(RTA_OIF, index))
        scope = RT_SCOPE_UNIVERSE if gateway is not None else RT_SCOPE_LINK
        body = rtmsg(family, dst_len, scope) + b"".join(attrs)
        via = f" via {gateway}" if gateway else ""
        self._ack(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, body,
                  f"add route {dst}{via} on link {index}")

    # -- traffic control --

    def qdisc_del(self, index: int, parent: int) -> bool:
        """Delete the qdisc at ``parent`` (TC_H_ROOT or TC_H_INGRESS) of link ``index``;
        False when there is none of ours (only the device's default)."""
        try:
            self._ack(RTM_DELQDISC, 0, tcmsg(index, 0, parent),
                      f"delete qdisc {parent:#x} of link {index}")
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.EINVAL):
                return False
            raise
        return True

    # -- the wire --

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
        return self._seq

    def _send(self, kind: int, flags: int, body: bytes) -> int:
        seq = self._next_seq()
        self._sock.send(message(kind, flags | NLM_F_REQUEST, seq, body))
        return seq

    def _replies(self, seq: int) -> Iterator[tuple[int, int, bytes]]:
        """(type, flags, payload) of the kernel's messages for request ``seq``."""
        while True:
            data = self._sock.recv(_RECV_SIZE)
            for kind, flags, mseq, payload in split_messages(data):
                if mseq == seq:
                    yield kind, flags, payload

    def _ack(self, kind: int, flags: int, body: bytes, what: str) -> None:
        seq = self._send(kind, flags | NLM_F_ACK, body)
        for mkind, mflags, payload in self._replies(seq):
            if mkind == NLMSG_ERROR:
                code, text = parse_error(mflags, payload)
                if code:
                    raise _error(code, what, text)
                return

    def _get(self, kind: int, body: bytes, what: str) -> bytes:
        seq = self._send(kind, 0, body)
        for mkind, mflags, payload in self._replies(seq):
            if mkind == NLMSG_ERROR:
                code, text = parse_error(mflags, payload)
                raise _error(code or errno.EPROTO, what, text)
            return payload
        raise AssertionError("unreachable")  # _replies never ends by itself

    def _dump(self, kind: int, body: bytes, what: str) -> list[bytes]:
        # A dump that raced with a change says so (NLM_F_DUMP_INTR); it is asked again.
        for _ in range(10):
            seq = self._send(kind, NLM_F_DUMP, body)
            out: list[bytes] = []
            interrupted = False
            for mkind, mflags, payload in self._replies(seq):
                interrupted = interrupted or bool(mflags & NLM_F_DUMP_INTR)
                if mkind == NLMSG_DONE:
                    break
                if mkind == NLMSG_ERROR:
                    code, text = parse_error(mflags, payload)
                    raise _error(code or errno.EPROTO, what, text)
                if mkind not in (NLMSG_NOOP, NLMSG_OVERRUN):
                    out.append(payload)
            if not interrupted:
                return out
        raise _error(errno.EAGAIN, what, "the dump kept changing")

    def _new_link(self, name: str) -> Link:
        link = self.link(name)
        if link is None:  # deleted again by someone else between the two requests
            raise _error(errno.ENODEV, f"get new link {name!r}", "")
        return link


def random_mac() -> str:
    """A random locally administered unicast MAC address, as Docker gives bridges."""
    raw = bytearray(os.urandom(6))
    raw[0] = (raw[0] & 0xFE) | 0x02
    return format_mac(bytes(raw))


def _error(code: int, what: str, text: str) -> OSError:
    detail = f" ({text})" if text else ""
    return OSError(code, f"{what}: {os.strerror(code)}{detail}")

