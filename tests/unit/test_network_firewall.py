"""Firewall rules: the script's shape, its determinism, and validation of everything that
reaches it. Where nft and root are at hand, the kernel checks every script (nft -c)."""

from __future__ import annotations

import os
import random
import re
import shutil

import pytest

from pallet.errors import Conflict, InvalidArgument
from pallet.network import firewall, nft
from pallet.network.firewall import Bridge, Port, ruleset, teardown

T = "pallet_unit"
DEFAULT = Bridge("pallet0", ("172.17.0.0/16",), False)
USER = Bridge("pbr-1", ("172.18.0.0/16", "fd00:18::/64"), False)
INTERNAL = Bridge("pbr-int", ("172.19.0.0/16",), True)
QUIET = Bridge("pbr-q", ("172.20.0.0/16",), False, masquerade=False, icc=False)

WEB = Port("tcp", "", 8080, "172.17.0.2", 80, "pallet0")
DNS = Port("udp", "127.0.0.1", 5353, "172.18.0.3", 53, "pbr-1")
WEB6 = Port("tcp", "::", 8080, "fd00:18::3", 80, "pbr-1")
LOCAL6 = Port("sctp", "fd00::2", 9999, "fd00:18::3", 9, "pbr-1")

SCENARIOS = {
    "empty": ([], []),
    "bridges only": ([DEFAULT, USER, INTERNAL, QUIET], []),
    "ports": ([DEFAULT, USER], [WEB, DNS]),
    "ipv6": ([USER], [WEB6, LOCAL6, DNS]),
    "everything": ([DEFAULT, USER, INTERNAL, QUIET],
                   [WEB, DNS, WEB6, LOCAL6, Port("tcp", "", 8081, "172.19.0.2", 80, "pbr-int"),
                    Port("tcp", "0.0.0.0", 9090, "172.20.0.2", 90, "pbr-q")]),
    "many ports": ([DEFAULT, USER, QUIET],
                   [Port("tcp", "", 20000 + i, f"172.17.0.{2 + i}", 80, "pallet0")
                    for i in range(50)]),
}


def lines(script: str) -> list[str]:
    return [line.strip() for line in script.splitlines()]


# --- shape ---------------------------------------------------------------------------------


def test_the_script_replaces_the_whole_table() -> None:
    script = ruleset(T, [DEFAULT], [WEB])
    assert script.startswith(f"table inet {T}\ndelete table inet {T}\ntable inet {T} {{\n")
    assert script.endswith("}\n")
    assert script.count("table inet") == 3


def test_no_base_chain_has_a_policy_but_accept_and_no_other_table_is_named() -> None:
    for bridges, ports in SCENARIOS.values():
        script = ruleset(T, bridges, ports)
        hooks = [line for line in lines(script) if " hook " in line]
        assert len(hooks) == 4
        assert all(line.endswith("policy accept;") for line in hooks)
        assert set(re.findall(r"\btable (\S+ \S+)", script)) == {f"inet {T}"}
        assert "policy drop" not in script
        assert "jump" not in script.replace("jump published", "")


def test_published_ports_are_dnat_maps() -> None:
    got = lines(ruleset(T, [DEFAULT, USER], [WEB, DNS, WEB6, LOCAL6]))
    assert "tcp . 8080 : 172.17.0.2 . 80," in got
    assert "127.0.0.1 . udp . 5353 : 172.18.0.3 . 53," in got
    assert "tcp . 8080 : fd00:18::3 . 80," in got
    assert "fd00::2 . sctp . 9999 : fd00:18::3 . 9," in got
    assert "dnat ip to ip daddr . meta l4proto . th dport map @published4_addr" in got
    assert "meta nfproto ipv4 dnat ip to meta l4proto . th dport map @published4" in got
    assert "dnat ip6 to ip6 daddr . meta l4proto . th dport map @published6_addr" in got
    assert "meta nfproto ipv6 dnat ip6 to meta l4proto . th dport map @published6" in got
    # from outside and from the host, only for local addresses; 127/8 never from outside
    assert got.index("ip daddr 127.0.0.0/8 return") < got.index(
        "fib daddr type local jump published")
    assert got.count("fib daddr type local jump published") == 2


def test_only_the_maps_in_use_are_made() -> None:
    script = ruleset(T, [DEFAULT], [WEB])
    assert "map published4 " in script
    assert "published4_addr" not in script
    assert "published6" not in script
    assert "map " not in ruleset(T, [DEFAULT], [])


def test_every_address_is_written_alike() -> None:
    blank = ruleset(T, [DEFAULT], [WEB])
    zeros = ruleset(T, [DEFAULT], [Port("tcp", "0.0.0.0", 8080, "172.17.0.2", 80, "pallet0")])
    assert blank == zeros


def test_masquerade_rules() -> None:
    got = lines(ruleset(T, [DEFAULT, USER, INTERNAL, QUIET], []))
    assert 'ip saddr 172.17.0.0/16 oifname != "pallet0" masquerade' in got
    assert 'ip6 saddr fd00:18::/64 oifname != "pbr-1" masquerade' in got
    # hairpin: DNAT'd packets back into the bridge they came from
    assert 'ip saddr 172.17.0.0/16 oifname "pallet0" ct status dnat masquerade' in got
    assert 'ip saddr 172.20.0.0/16 oifname "pbr-q" ct status dnat masquerade' in got
    # the host to a published port
    assert "oifname @bridges ct status dnat fib saddr type local masquerade" in got
    # masquerade=false: no outbound masquerade; internal: none at all
    assert not any("!= \"pbr-q\" masquerade" in line for line in got)
    assert not any("172.19." in line for line in got)


def test_forward_rules() -> None:
    got = lines(ruleset(T, [DEFAULT, INTERNAL, QUIET], []))
    forward = got[got.index("chain forward {"):]
    assert forward[2:4] == ['iifname "pbr-int" oifname != "pbr-int" drop',
                            'oifname "pbr-int" iifname != "pbr-int" drop']
    order = [
        "oifname @bridges ct state established,related accept",
        "oifname @bridges ct status dnat accept",
        'iifname . oifname { "pallet0" . "pallet0", "pbr-int" . "pbr-int" } accept',
        "iifname @bridges oifname @bridges drop",
        "iifname @bridges accept",
        "oifname @bridges drop",
    ]
    assert [line for line in forward if line in order] == order
    assert 'elements = { "pallet0", "pbr-int", "pbr-q" }' in got


def test_ports_on_internal_networks_are_not_published() -> None:
    script = ruleset(T, [INTERNAL], [Port("tcp", "", 8081, "172.19.0.2", 80, "pbr-int")])
    assert "8081" not in script
    assert "map " not in script


def test_no_bridges_makes_an_empty_table() -> None:
    script = ruleset(T, [], [])
    assert "elements" not in script
    assert "masquerade" not in script
    assert "drop" not in script


def test_the_script_is_deterministic() -> None:
    bridges, ports = SCENARIOS["everything"]
    want = ruleset(T, bridges, ports)
    rnd = random.Random(7)
    for _ in range(5):
        b, p = list(bridges), list(ports)
        rnd.shuffle(b)
        rnd.shuffle(p)
        assert ruleset(T, b, p) == want


def test_the_same_port_twice_is_once() -> None:
    assert ruleset(T, [DEFAULT], [WEB, WEB]) == ruleset(T, [DEFAULT], [WEB])


def test_one_host_port_for_two_containers_is_a_conflict() -> None:
    other = Port("tcp", "", 8080, "172.17.0.9", 80, "pallet0")
    with pytest.raises(Conflict, match=r"^Bind for 0\.0\.0\.0:8080 failed: port is already "
                                       r"allocated$"):
        ruleset(T, [DEFAULT], [WEB, other])
    # another protocol, or another address, is another binding
    ruleset(T, [DEFAULT], [WEB, Port("udp", "", 8080, "172.17.0.9", 80, "pallet0")])
    ruleset(T, [DEFAULT], [WEB, Port("tcp", "127.0.0.1", 8080, "172.17.0.9", 80, "pallet0")])


def test_teardown() -> None:
    assert teardown(T) == f"table inet {T}\ndelete table inet {T}\n"


# --- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize("table", ["", "1pallet", "pallet x", 'pallet"', "pallet;", "pal-let",
                                   "p" * 65, "pallet\n"])
def test_bad_table_names(table: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid firewall table name"):
        ruleset(table, [], [])
    with pytest.raises(InvalidArgument):
        teardown(table)


@pytest.mark.parametrize("name", ["", "a" * 16, "br 0", 'br"0', "br/0", ".", "..", "br\n",
                                  "br\\0", "brü"])
def test_bad_bridge_names(name: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid bridge name"):
        ruleset(T, [Bridge(name, ("10.0.0.0/24",), False)], [])


@pytest.mark.parametrize("subnet", ["10.0.0.1/24", "10.0.0.0", "x", "10.0.0.0/24; drop"])
def test_bad_bridge_subnets(subnet: str) -> None:
    with pytest.raises(InvalidArgument, match=r"^bridge br0: invalid subnet"):
        ruleset(T, [Bridge("br0", (subnet,), False)], [])


def test_a_bridge_listed_twice() -> None:
    with pytest.raises(InvalidArgument, match="listed twice"):
        ruleset(T, [DEFAULT, DEFAULT], [])


@pytest.mark.parametrize("port, message", [
    (Port("icmp", "", 8080, "172.17.0.2", 80, "pallet0"), "invalid proto"),
    (Port("tcp", "", 0, "172.17.0.2", 80, "pallet0"), "invalid host port"),
    (Port("tcp", "", 65536, "172.17.0.2", 80, "pallet0"), "invalid host port"),
    (Port("tcp", "", "8080", "172.17.0.2", 80, "pallet0"), "invalid host port"),  # type: ignore[arg-type]
    (Port("tcp", "", True, "172.17.0.2", 80, "pallet0"), "invalid host port"),
    (Port("tcp", "", 8080, "172.17.0.2", -1, "pallet0"), "invalid container port"),
    (Port("tcp", "", 8080, "172.17.0.2 . 1", 80, "pallet0"), "invalid container IP"),
    (Port("tcp", "", 8080, "172.17.0.2", 80, "pbr-x"), "not a pallet bridge"),
    (Port("tcp", "", 8080, "172.18.0.2", 80, "pallet0"), "is not on bridge pallet0"),
    (Port("tcp", "localhost", 8080, "172.17.0.2", 80, "pallet0"), "invalid IP address"),
    (Port("tcp", "::1", 8080, "172.17.0.2", 80, "pallet0"), "different IP families"),
    (Port("tcp", "::", 8080, "172.17.0.2", 80, "pallet0"), "different IP families"),
])
def test_bad_ports(port: Port, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        ruleset(T, [DEFAULT], [port])


def test_proto_is_case_blind() -> None:
    upper = Port("TCP", "", 8080, "172.17.0.2", 80, "pallet0")
    assert ruleset(T, [DEFAULT], [upper]) == ruleset(T, [DEFAULT], [WEB])


# --- the kernel's opinion ------------------------------------------------------------------------


def _can_check() -> str:
    if shutil.which("nft") is None:
        return "nft (nftables) is not installed"
    if os.geteuid() != 0:
        return "nft -c talks to the kernel, which needs root"
    return ""


@pytest.mark.skipif(bool(_can_check()), reason=_can_check() or "-")
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_nft_accepts_every_script(name: str) -> None:
    bridges, ports = SCENARIOS[name]
    nft.check(ruleset(firewall.validate_table("pallet_unit_check"), bridges, ports))
    nft.check(teardown("pallet_unit_check"))
