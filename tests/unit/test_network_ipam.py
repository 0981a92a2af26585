"""IPAM: subnets from the default pools around taken networks and host routes, gateways
and ranges checked in dockerd's words, addresses handed out first free; host routes."""

from __future__ import annotations

import os
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

import pytest

from pallet.errors import Conflict, InvalidArgument
from pallet.network import ipam, routes
from pallet.network.ipam import (
    DEFAULT_POOLS,
    allocate,
    check_pool,
    choose_subnet,
    mac_for,
    overlapping,
    parse_mac,
    parse_subnet,
)

N4 = IPv4Network
N6 = IPv6Network
A4 = IPv4Address


# --- pools and subnets ------------------------------------------------------------------------


def test_default_pools_are_dockers() -> None:
    assert len(DEFAULT_POOLS) == 15 + 16
    assert DEFAULT_POOLS[0] == N4("172.17.0.0/16")
    assert DEFAULT_POOLS[14] == N4("172.31.0.0/16")
    assert DEFAULT_POOLS[15] == N4("192.168.0.0/20")
    assert DEFAULT_POOLS[16] == N4("192.168.16.0/20")
    assert DEFAULT_POOLS[-1] == N4("192.168.240.0/20")


def test_split_pool() -> None:
    assert ipam.split_pool("10.10.0.0/16", 24)[:2] == (N4("10.10.0.0/24"), N4("10.10.1.0/24"))
    assert len(ipam.split_pool("10.10.0.0/16", 24)) == 256
    with pytest.raises(InvalidArgument):
        ipam.split_pool("10.10.0.0/16", 8)
    with pytest.raises(InvalidArgument):
        ipam.split_pool("fd00::/48", 64)


@pytest.mark.parametrize("text, net", [
    ("10.1.2.0/24", N4("10.1.2.0/24")),
    (" 172.30.0.0/16 ", N4("172.30.0.0/16")),
    ("10.0.0.7/32", N4("10.0.0.7/32")),
    ("fd00:1:2::/64", N6("fd00:1:2::/64")),
    ("FD00:0:0:0::/64", N6("fd00::/64")),
])
def test_parse_subnet(text: str, net: N4 | N6) -> None:
    assert parse_subnet(text) == net


def test_parse_subnet_with_host_bits_says_what_it_should_be() -> None:
    with pytest.raises(InvalidArgument, match=r"^invalid subnet 10\.1\.2\.3/24: it should be "
                                              r"10\.1\.2\.0/24$"):
        parse_subnet("10.1.2.3/24")
    with pytest.raises(InvalidArgument, match="it should be fd00::/64"):
        parse_subnet("fd00::1/64")


@pytest.mark.parametrize("text", ["", "10.0.0.0", "10.0.0.0/33", "10.0.0.0/255.0.0.0", "abc",
                                  "10.0.0/8", "10.0.0.0/-1", "fe80::%eth0/64", "::/129"])
def test_parse_subnet_refuses_what_is_not_cidr(text: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid CIDR block notation"):
        parse_subnet(text)


def test_overlapping() -> None:
    taken: list[N4 | N6] = [N4("10.0.0.0/24"), N6("fd00::/64"), N4("172.18.0.0/16")]
    assert overlapping(N4("172.18.3.0/24"), taken) == N4("172.18.0.0/16")
    assert overlapping(N4("172.16.0.0/12"), taken) == N4("172.18.0.0/16")
    assert overlapping(N4("10.0.1.0/24"), taken) is None
    assert overlapping(N6("fd00::/48"), taken) == N6("fd00::/64")
    assert overlapping("10.0.0.128/25", taken) == N4("10.0.0.0/24")


def test_choose_subnet_takes_the_first_free_pool() -> None:
    assert choose_subnet([], []) == N4("172.17.0.0/16")
    assert choose_subnet([N4("172.17.0.0/16")], []) == N4("172.18.0.0/16")
    taken = [N4("172.17.0.0/16"), N4("172.19.0.0/16")]
    assert choose_subnet(taken, []) == N4("172.18.0.0/16")


def test_choose_subnet_avoids_host_routes() -> None:
    assert choose_subnet([], [N4("172.17.5.0/24")]) == N4("172.18.0.0/16")
    # a route covering every 172.16/12 pool sends it to 192.168
    assert choose_subnet([], [N4("172.16.0.0/12")]) == N4("192.168.0.0/20")
    assert choose_subnet([], [N4("172.16.0.0/12"), N4("192.168.0.0/24")]) == N4(
        "192.168.16.0/20")


def test_choose_subnet_ignores_default_routes_and_ipv6() -> None:
    assert choose_subnet([N6("fd00::/64")], [N4("0.0.0.0/0"), N6("::/0")]) == N4(
        "172.17.0.0/16")


def test_choose_subnet_when_every_pool_is_taken() -> None:
    with pytest.raises(Conflict, match="could not find an available, non-overlapping IPv4 "
                                       "address pool among the defaults to assign to the "
                                       "network"):
        choose_subnet([N4("172.16.0.0/12")], [N4("192.168.0.0/16")])


def test_choose_subnet_from_other_pools() -> None:
    pools = ipam.split_pool("10.99.0.0/16", 24)
    assert choose_subnet([N4("10.99.0.0/24")], [], pools) == N4("10.99.1.0/24")


# --- gateway and range ------------------------------------------------------------------------


def test_check_pool_defaults() -> None:
    assert check_pool(N4("172.18.0.0/16"), None, None) == (A4("172.18.0.1"),
                                                           N4("172.18.0.0/16"))
    assert check_pool(N6("fd00:1::/64"), None, None) == (IPv6Address("fd00:1::1"),
                                                         N6("fd00:1::/64"))
    assert check_pool("10.5.0.0/24", "", "") == (A4("10.5.0.1"), N4("10.5.0.0/24"))


def test_check_pool_given_gateway_and_range() -> None:
    gw, rng = check_pool(N4("10.5.0.0/16"), "10.5.255.254", "10.5.8.0/24")
    assert gw == A4("10.5.255.254")
    assert rng == N4("10.5.8.0/24")


@pytest.mark.parametrize("gateway, message", [
    ("10.6.0.1", "invalid gateway 10.6.0.1: parent subnet 10.5.0.0/24 doesn't contain this "
                 "address"),
    ("fd00::1", "invalid gateway fd00::1: parent subnet is an IPv4 block"),
    ("10.5.0.x", "invalid gateway 10.5.0.x: invalid address"),
    ("10.5.0.0", "invalid gateway 10.5.0.0: it is the network or broadcast address"),
    ("10.5.0.255", "invalid gateway 10.5.0.255: it is the network or broadcast address"),
])
def test_check_pool_bad_gateway(gateway: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        check_pool(N4("10.5.0.0/24"), gateway, None)
    assert str(err.value).startswith(message)


@pytest.mark.parametrize("ip_range, message", [
    ("10.6.0.0/28", "invalid ip-range 10.6.0.0/28: parent subnet 10.5.0.0/24 doesn't contain "
                    "ip-range"),
    ("10.5.0.0/23", "invalid ip-range 10.5.0.0/23: CIDR block is bigger than its parent "
                    "subnet 10.5.0.0/24"),
    ("10.5.0.9/28", "invalid ip-range 10.5.0.9/28: it should be 10.5.0.0/28"),
    ("fd00::/120", "invalid ip-range fd00::/120: parent subnet is an IPv4 block"),
    ("10.5.0.0", "invalid ip-range 10.5.0.0: invalid CIDR block notation"),
])
def test_check_pool_bad_range(ip_range: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        check_pool(N4("10.5.0.0/24"), None, ip_range)
    assert str(err.value) == message


@pytest.mark.parametrize("subnet", ["10.0.0.0/31", "10.0.0.0/32", "fd00::/127", "fd00::/128"])
def test_check_pool_too_small(subnet: str) -> None:
    with pytest.raises(InvalidArgument, match="too small"):
        check_pool(subnet, None, None)


# --- addresses ----------------------------------------------------------------------------------


def test_allocate_first_free() -> None:
    net = N4("172.18.0.0/16")
    gw = A4("172.18.0.1")
    assert allocate(net, None, gw, set()) == A4("172.18.0.2")
    used = {A4("172.18.0.2"), A4("172.18.0.3")}
    assert allocate(net, None, gw, used) == A4("172.18.0.4")
    # a freed address is handed out again first
    assert allocate(net, None, gw, {A4("172.18.0.3")}) == A4("172.18.0.2")


def test_allocate_skips_network_broadcast_and_gateway() -> None:
    net = N4("10.9.0.0/30")  # .0 network, .1 gateway, .2 free, .3 broadcast
    assert allocate(net, None, A4("10.9.0.1"), set()) == A4("10.9.0.2")
    with pytest.raises(Conflict, match=r"^no available IPv4 addresses on this network's "
                                       r"address pools: net1$"):
        allocate(net, None, A4("10.9.0.1"), {A4("10.9.0.2")}, network="net1")


def test_allocate_exhaustion_of_a_bigger_range() -> None:
    net = N4("10.9.0.0/24")
    used = {A4(f"10.9.0.{i}") for i in range(2, 255)}
    with pytest.raises(Conflict, match="no available IPv4 addresses"):
        allocate(net, None, A4("10.9.0.1"), used)


def test_allocate_from_a_range() -> None:
    net = N4("172.20.0.0/16")
    gw = A4("172.20.0.1")
    # the range's own first address is a host address of the subnet: handed out
    assert allocate(net, N4("172.20.5.0/24"), gw, set()) == A4("172.20.5.0")
    assert allocate(net, "172.20.5.0/24", gw, {A4("172.20.5.0")}) == A4("172.20.5.1")
    # the subnet's last address is its broadcast, even at the end of a range
    rng = N4("172.20.255.252/30")
    used = {A4("172.20.255.252"), A4("172.20.255.253"), A4("172.20.255.254")}
    with pytest.raises(Conflict):
        allocate(net, rng, gw, used)
    with pytest.raises(InvalidArgument, match="doesn't contain ip-range"):
        allocate(net, N4("172.21.0.0/24"), gw, set())


def test_allocate_ipv6() -> None:
    net = N6("fd00:7::/64")
    gw = IPv6Address("fd00:7::1")
    assert allocate(net, None, gw, set()) == IPv6Address("fd00:7::2")
    # IPv6 has no broadcast address: a /126 range's last address is a host
    small = N6("fd00:7::/126")
    used = {IPv6Address("fd00:7::2")}
    assert allocate(small, None, gw, used) == IPv6Address("fd00:7::3")
    with pytest.raises(Conflict, match="no available IPv6 addresses"):
        allocate(small, None, gw, {*used, IPv6Address("fd00:7::3")})


def test_allocate_preferred_address() -> None:
    net = N4("172.18.0.0/16")
    gw = A4("172.18.0.1")
    assert allocate(net, None, gw, set(), A4("172.18.3.4")) == A4("172.18.3.4")
    assert allocate(net, None, gw, set(), "172.18.3.5") == A4("172.18.3.5")
    # libnetwork checks --ip against the subnet, not the ip-range
    assert allocate(net, N4("172.18.5.0/24"), gw, set(), A4("172.18.9.9")) == A4("172.18.9.9")


@pytest.mark.parametrize("prefer", ["172.18.0.1", "172.18.0.7"])
def test_allocate_preferred_address_in_use(prefer: str) -> None:
    with pytest.raises(Conflict, match=r"^Address already in use$"):
        allocate(N4("172.18.0.0/16"), None, A4("172.18.0.1"), {A4("172.18.0.7")},
                 ip_address(prefer))


@pytest.mark.parametrize("prefer, message", [
    ("10.0.0.5", "requested address is out of range"),
    ("fd00::5", "requested address is out of range"),
    ("172.18.0.0", "network or broadcast address"),
    ("172.18.255.255", "network or broadcast address"),
    ("172.18.0.x", "invalid IP address"),
])
def test_allocate_preferred_address_refused(prefer: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        allocate(N4("172.18.0.0/16"), None, A4("172.18.0.1"), set(), prefer)


def test_allocate_in_a_huge_ipv6_range_is_quick() -> None:
    net = N6("fd00:8::/64")
    used = {IPv6Address(f"fd00:8::{i:x}") for i in range(2, 5000)}
    assert allocate(net, None, IPv6Address("fd00:8::1"), used) == IPv6Address("fd00:8::1388")


# --- MAC addresses ----------------------------------------------------------------------------


def test_mac_for_is_dockers() -> None:
    assert mac_for(A4("172.17.0.2")) == "02:42:ac:11:00:02"
    assert mac_for(A4("10.255.0.16")) == "02:42:0a:ff:00:10"
    with pytest.raises(InvalidArgument):
        mac_for(IPv6Address("fd00::2"))  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["02:42:AC:11:00:02", "02-42-ac-11-00-02", "0242.ac11.0002",
                                  " 02:42:ac:11:00:02 "])
def test_parse_mac(text: str) -> None:
    assert parse_mac(text) == "02:42:ac:11:00:02"


@pytest.mark.parametrize("text", ["", "02:42:ac:11:00", "02:42:ac:11:00:02:03", "zz:42:ac:11:00:02",
                                  "02:42-ac:11:00:02", "0242ac110002"])
def test_parse_mac_refuses(text: str) -> None:
    with pytest.raises(InvalidArgument, match="is not a valid mac address"):
        parse_mac(text)


# --- host routes -------------------------------------------------------------------------------

ROUTE = """\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
tun0\t0000000A\t00000000\t0001\t0\t0\t0\t000000FF\t0\t0\t0
"""

IPV6_ROUTE = """\
fd000000000000000000000000000000 40 00000000000000000000000000000000 00 \
00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 \
fd000000000000000000000000000001 00000400 00000002 00000000 00000003     eth0
00000000000000000000000000000001 80 00000000000000000000000000000000 00 \
00000000000000000000000000000000 00000000 00000002 00000000 80200001       lo
fd000000000000000000000000000000 40 00000000000000000000000000000000 00 \
00000000000000000000000000000000 00000200 00000001 00000000 00000001     eth0
"""


def test_host_routes_from_proc(tmp_path: str) -> None:
    net = os.path.join(str(tmp_path), "net")
    os.mkdir(net)
    with open(os.path.join(net, "route"), "w") as f:
        f.write(ROUTE)
    with open(os.path.join(net, "ipv6_route"), "w") as f:
        f.write(IPV6_ROUTE)
    assert routes.host_routes(str(tmp_path)) == [
        N4("192.0.2.0/24"), N4("172.17.0.0/16"), N4("10.0.0.0/8"),
        N6("fd00::/64"), N6("::1/128"),
    ]


def test_host_routes_without_ipv6(tmp_path: str) -> None:
    os.mkdir(os.path.join(str(tmp_path), "net"))
    with open(os.path.join(str(tmp_path), "net", "route"), "w") as f:
        f.write(ROUTE.splitlines()[0] + "\n")
    assert routes.host_routes(str(tmp_path)) == []


def test_host_routes_of_this_host() -> None:
    found = routes.host_routes()
    assert all(r.prefixlen > 0 for r in found)
    assert choose_subnet([], found) not in found
