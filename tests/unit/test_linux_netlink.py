"""rtnetlink messages: encoding and decoding byte by byte, no kernel needed (and a
read-only look at the host's links, which needs no privilege)."""

from __future__ import annotations

import os
import socket
import struct

import pytest

from pallet.linux import netlink as nl


def attrs_of(body: bytes, header: int) -> dict[int, bytes]:
    return nl.parse_attrs(body, header)


# --- encoding -----------------------------------------------------------------------------


def test_attribute_is_padded_to_four_bytes() -> None:
    # len counts header + payload (4 + 5), the padding is not counted
    assert nl.attr_str(nl.IFLA_IFNAME, "eth0") == b"\x09\x00\x03\x00eth0\x00\x00\x00\x00"
    assert nl.attr_u32(nl.IFLA_MTU, 1500) == b"\x08\x00\x04\x00" + struct.pack("=I", 1500)
    assert nl.attr_u8(nl.IFLA_BRPORT_MODE, 1) == b"\x05\x00\x04\x00\x01\x00\x00\x00"
    assert nl.attr(7, b"") == b"\x04\x00\x07\x00"


def test_message_header() -> None:
    body = nl.ifinfomsg(3)
    msg = nl.message(nl.RTM_DELLINK, nl.NLM_F_REQUEST | nl.NLM_F_ACK, 42, body)
    n, kind, flags, seq, pid = struct.unpack_from("=IHHII", msg)
    assert (n, kind, flags, seq, pid) == (32, nl.RTM_DELLINK, 5, 42, 0)
    assert msg[16:] == b"\x00\x00\x00\x00" + struct.pack("=iII", 3, 0, 0)


def test_ifinfomsg_layout() -> None:
    raw = nl.ifinfomsg(7, nl.IFF_UP, nl.IFF_UP, family=nl.AF_BRIDGE)
    assert raw == bytes([7, 0, 0, 0]) + struct.pack("=iII", 7, 1, 1)


def test_veth_request_puts_the_peer_in_its_namespace() -> None:
    body = nl.veth_request("pveth0011aabb", "eth0", peer_netns_fd=9, mtu=1400, master=5,
                           up=True, peer_mac=bytes.fromhex("02420a000002"))
    _fam, _type, index, flags, change = struct.unpack_from("=BxHiII", body)
    assert (index, flags, change) == (0, nl.IFF_UP, nl.IFF_UP)
    top = attrs_of(body, 16)
    assert nl.cstr(top[nl.IFLA_IFNAME]) == "pveth0011aabb"
    assert nl.u32(top[nl.IFLA_MTU]) == 1400
    assert nl.u32(top[nl.IFLA_MASTER]) == 5
    info = nl.parse_attrs(top[nl.IFLA_LINKINFO])
    assert nl.cstr(info[nl.IFLA_INFO_KIND]) == "veth"
    data = nl.parse_attrs(info[nl.IFLA_INFO_DATA])
    peer = data[nl.VETH_INFO_PEER]
    # the peer is an ifinfomsg (down: flags 0) followed by its own attributes
    assert struct.unpack_from("=BxHiII", peer) == (0, 0, 0, 0, 0)
    pattrs = nl.parse_attrs(peer, 16)
    assert nl.cstr(pattrs[nl.IFLA_IFNAME]) == "eth0"
    assert nl.u32(pattrs[nl.IFLA_NET_NS_FD]) == 9
    assert nl.u32(pattrs[nl.IFLA_MTU]) == 1400
    assert pattrs[nl.IFLA_ADDRESS] == bytes.fromhex("02420a000002")


def test_veth_request_minimal() -> None:
    body = nl.veth_request("a", "b")
    top = attrs_of(body, 16)
    assert set(top) == {nl.IFLA_IFNAME, nl.IFLA_LINKINFO}
    peer = nl.parse_attrs(nl.parse_attrs(nl.parse_attrs(top[nl.IFLA_LINKINFO])[
        nl.IFLA_INFO_DATA])[nl.VETH_INFO_PEER], 16)
    assert set(peer) == {nl.IFLA_IFNAME}


def test_hairpin_attribute_is_flagged_nested() -> None:
    # what set_hairpin sends after the ifinfomsg
    raw = nl.attr(nl.IFLA_PROTINFO | nl.NLA_F_NESTED, nl.attr_u8(nl.IFLA_BRPORT_MODE, 1))
    length, kind = struct.unpack_from("=HH", raw)
    assert (length, kind) == (12, nl.IFLA_PROTINFO | 0x8000)
    assert nl.parse_attrs(raw) == {nl.IFLA_PROTINFO: nl.attr_u8(nl.IFLA_BRPORT_MODE, 1)}


def test_route_and_address_headers() -> None:
    assert nl.rtmsg(socket.AF_INET6, 0, nl.RT_SCOPE_UNIVERSE) == bytes(
        [socket.AF_INET6, 0, 0, 0, 254, 3, 0, 1]) + b"\0\0\0\0"
    assert nl.ifaddrmsg(socket.AF_INET, 24, 0, 0, 9) == bytes([2, 24, 0, 0]) + struct.pack(
        "=I", 9)
    assert nl.tcmsg(4, 0, nl.TC_H_INGRESS) == b"\0\0\0\0" + struct.pack(
        "=iIII", 4, 0, 0xFFFFFFF1, 0)


# --- addresses ----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expect"), [
    ("10.1.0.1/24", (socket.AF_INET, bytes([10, 1, 0, 1]), 24)),
    ("10.1.0.1", (socket.AF_INET, bytes([10, 1, 0, 1]), 32)),
    ("fd00::1/64", (socket.AF_INET6, bytes.fromhex("fd00" + "0" * 27 + "1"), 64)),
])
def test_parse_cidr(text: str, expect: tuple[int, bytes, int]) -> None:
    assert nl.parse_cidr(text) == expect


@pytest.mark.parametrize("bad", ["10.1.0.1/33", "10.1.0/24", "fd00::1/129", "x/1",
                                 "10.1.0.1/", "10.1.0.1/-1", ""])
def test_parse_cidr_refuses(bad: str) -> None:
    with pytest.raises(ValueError):
        nl.parse_cidr(bad)


def test_cidr_round_trip_normalizes() -> None:
    assert nl.format_cidr(*nl.parse_cidr("fd00:0:0::01/64")) == "fd00::1/64"


def test_broadcast() -> None:
    assert nl.broadcast_v4(bytes([172, 18, 0, 1]), 16) == bytes([172, 18, 255, 255])
    assert nl.broadcast_v4(bytes([10, 0, 0, 5]), 30) == bytes([10, 0, 0, 7])


def test_mac() -> None:
    assert nl.parse_mac("02:42:AC:11:00:02") == bytes.fromhex("0242ac110002")
    assert nl.format_mac(bytes.fromhex("0242ac110002")) == "02:42:ac:11:00:02"
    for bad in ("02:42:ac:11:00", "0242ac110002", "02:42:ac:11:00:zz", "2:42:ac:11:00:02"):
        with pytest.raises(ValueError):
            nl.parse_mac(bad)


def test_random_mac_is_local_unicast() -> None:
    for _ in range(20):
        first = nl.parse_mac(nl.random_mac())[0]
        assert first & 0x02 and not first & 0x01


# --- decoding -----------------------------------------------------------------------------


def link_payload(index: int, name: str, *, flags: int = 0, kind: str | None = None,
                 master: int | None = None) -> bytes:
    attrs = [nl.attr_str(nl.IFLA_IFNAME, name), nl.attr_u32(nl.IFLA_MTU, 1500),
             nl.attr(nl.IFLA_ADDRESS, bytes.fromhex("0242ac110002"))]
    if master is not None:
        attrs.append(nl.attr_u32(nl.IFLA_MASTER, master))
    if kind is not None:
        attrs.append(nl.nest(nl.IFLA_LINKINFO, nl.attr_str(nl.IFLA_INFO_KIND, kind),
                             nl.nest(nl.IFLA_INFO_DATA, nl.attr_u32(1, 1))))
    return nl.ifinfomsg(index, flags) + b"".join(attrs)


def test_parse_link() -> None:
    link = nl.parse_link(link_payload(12, "pveth0a", flags=nl.IFF_UP | 0x1000, kind="veth",
                                      master=4))
    assert link == nl.Link(index=12, name="pveth0a", kind="veth", master=4,
                           mac="02:42:ac:11:00:02", up=True, mtu=1500)
    plain = nl.parse_link(link_payload(1, "lo"))
    assert (plain.kind, plain.master, plain.up) == ("", None, False)
    assert (plain.tso_max_size, plain.gso_ipv4_max_size) == (0, 0)  # an older kernel's
    sizes = nl.parse_link(link_payload(3, "pallet0") + nl.attr_u32(nl.IFLA_TSO_MAX_SIZE, 524280)
                          + nl.attr_u32(nl.IFLA_GSO_IPV4_MAX_SIZE, 65536))
    assert (sizes.tso_max_size, sizes.gso_ipv4_max_size) == (524280, 65536)


def test_parse_attrs_last_wins_and_stops_at_truncation() -> None:
    raw = nl.attr_u32(4, 1) + nl.attr_u32(4, 2) + b"\x20\x00\x05\x00abc"
    assert nl.parse_attrs(raw) == {4: struct.pack("=I", 2)}


def test_parse_addr() -> None:
    v4 = nl.ifaddrmsg(socket.AF_INET, 24, 0, 0, 3) + nl.attr(
        nl.IFA_ADDRESS, bytes([10, 0, 0, 9])) + nl.attr(nl.IFA_LOCAL, bytes([10, 0, 0, 2]))
    assert nl.parse_addr(v4) == (3, "10.0.0.2/24")
    v6 = nl.ifaddrmsg(socket.AF_INET6, 64, 0, 0, 5) + nl.attr(
        nl.IFA_ADDRESS, socket.inet_pton(socket.AF_INET6, "fd00::2"))
    assert nl.parse_addr(v6) == (5, "fd00::2/64")


def test_split_messages() -> None:
    one = nl.message(nl.RTM_NEWLINK, nl.NLM_F_MULTI, 7, link_payload(1, "lo"))
    two = nl.message(nl.NLMSG_DONE, nl.NLM_F_MULTI, 7, struct.pack("=i", 0))
    got = list(nl.split_messages(one + two))
    assert [(k, s) for k, _f, s, _p in got] == [(nl.RTM_NEWLINK, 7), (nl.NLMSG_DONE, 7)]
    assert nl.parse_link(got[0][3]).name == "lo"
    with pytest.raises(ValueError):
        list(nl.split_messages(one[:-4]))


def test_parse_ack_and_errors() -> None:
    request = struct.pack("=IHHII", 32, nl.RTM_NEWLINK, 5, 9, 0)
    assert nl.parse_error(0, struct.pack("=i", 0) + request) == (0, "")
    # capped (NETLINK_CAP_ACK): only the request's header, then the kernel's message
    tlv = nl.attr_str(nl.NLMSGERR_ATTR_MSG, "Peer netns reference is invalid")
    capped = struct.pack("=i", -22) + request + tlv
    assert nl.parse_error(nl.NLM_F_CAPPED | nl.NLM_F_ACK_TLVS, capped) == (
        22, "Peer netns reference is invalid")
    # not capped: the whole request (32 bytes) is echoed before the TLVs
    full = struct.pack("=i", -17) + request + b"\0" * 16 + tlv
    assert nl.parse_error(nl.NLM_F_ACK_TLVS, full) == (17, "Peer netns reference is invalid")
    assert nl.parse_error(0, struct.pack("=i", -19) + request) == (19, "")


def test_error_names_the_object() -> None:
    exc = nl._error(17, "add veth 'pveth1'", "kernel words")
    assert isinstance(exc, FileExistsError)
    assert exc.errno == 17
    assert str(exc) == f"[Errno 17] add veth 'pveth1': {os.strerror(17)} (kernel words)"


# --- the kernel, read only ----------------------------------------------------------------


def test_reads_the_hosts_links() -> None:
    with nl.RtNetlink() as rt:
        links = rt.links()
        # other tests may add and delete links meanwhile: the stable ones are compared
        assert {"lo"} <= {link.name for link in links}
        assert len({link.index for link in links}) == len(links)
        lo = rt.link("lo")
        assert lo is not None and lo.index == 1 and lo.up
        assert rt.link_index("no-such-link0") is None
        assert (1, "127.0.0.1/8") in rt.addrs(1)
        assert all(index == 1 for index, _a in rt.addrs(1))
