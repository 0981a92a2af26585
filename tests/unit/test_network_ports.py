"""Published ports: -p parsing (the CLI), bindings and host-port choice (the engine)."""

from __future__ import annotations

import pytest

from pallet.cli.flags import UsageError
from pallet.cli.netflags import display_ports, parse_classid, parse_publish, parse_rate
from pallet.errors import Conflict, InvalidArgument
from pallet.network import ports


def test_publish_grammar() -> None:
    assert parse_publish("80") == [("80", "tcp", "", "")]
    assert parse_publish("8080:80") == [("80", "tcp", "", "8080")]
    assert parse_publish("127.0.0.1:8080:80/udp") == [("80", "udp", "127.0.0.1", "8080")]
    assert parse_publish("127.0.0.1::80") == [("80", "tcp", "127.0.0.1", "")]
    assert parse_publish("[::1]:8080:80") == [("80", "tcp", "::1", "8080")]
    assert parse_publish("8000-8001:80-81") == [("80", "tcp", "", "8000"),
                                                ("81", "tcp", "", "8001")]
    assert parse_publish("8000-8010:80") == [("80", "tcp", "", "8000-8010")]
    for bad in ("8000-8002:80-81", "x:80", "80/icmp", "1:2:3:4", "70000:80", "8080:"):
        with pytest.raises(UsageError):
            parse_publish(bad)


def test_rates_and_classid() -> None:
    assert parse_rate("8mbit", "--r") == 1_000_000
    assert parse_rate("1kbps", "--r") == 1000
    with pytest.raises(UsageError):
        parse_rate("fast", "--r")
    assert parse_classid("10:1") == 0x100001
    assert parse_classid("0x100001") == 0x100001


def test_wanted_and_publish_all() -> None:
    want = ports.wanted({"80/tcp": [{"HostIp": "", "HostPort": "8080"}],
                         "53/udp": [{"HostIp": "127.0.0.1", "HostPort": ""}]},
                        ["80/tcp", "443/tcp"], publish_all=True)
    assert want == [ports.Wanted("udp", 53, "127.0.0.1", 0, 0),
                    ports.Wanted("tcp", 80, "", 8080, 8080),
                    ports.Wanted("tcp", 443, "", 0, 0)]
    with pytest.raises(InvalidArgument):
        ports.wanted({"80/icmp": []}, [], False)
    with pytest.raises(InvalidArgument):
        ports.wanted({"80": [{"HostPort": "9-1"}]}, [], False)


def test_choose_skips_taken_and_busy_ports() -> None:
    taken = [ports.Published("tcp", 80, "", 8080)]
    with pytest.raises(Conflict, match=r"Bind for 127\.0\.0\.1:8080 failed: port is "
                                       "already allocated"):
        ports.choose([ports.Wanted("tcp", 80, "127.0.0.1", 8080, 8080)], taken,
                     lambda *a: True)
    # another protocol, or another address next to a specific one, is free
    got = ports.choose([ports.Wanted("udp", 80, "", 8080, 8080)], taken, lambda *a: True)
    assert got == [ports.Published("udp", 80, "", 8080)]
    busy = {32768, 32769}
    got = ports.choose([ports.Wanted("tcp", 1, "", 0, 0), ports.Wanted("tcp", 2, "", 0, 0)],
                       [], lambda proto, ip, port: port not in busy)
    assert [p.host_port for p in got] == [32770, 32771]
    got = ports.choose([ports.Wanted("tcp", 80, "", 9000, 9002)],
                       [ports.Published("tcp", 80, "", 9000)], lambda *a: True)
    assert got[0].host_port == 9001


def test_settings_and_listing_shapes() -> None:
    pub = [ports.Published("tcp", 80, "", 8080)]
    s = ports.settings(pub, ["80/tcp", "443/tcp"])
    assert s == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}], "443/tcp": None}
    listing = ports.listing(s)
    assert listing == [{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
                       {"PrivatePort": 443, "Type": "tcp"}]
    assert display_ports(listing) == "0.0.0.0:8080->80/tcp, 443/tcp"
    ranged = [{"IP": "0.0.0.0", "PrivatePort": p, "PublicPort": p + 8000, "Type": "tcp"}
              for p in (80, 81, 82)]
    assert display_ports(ranged) == "0.0.0.0:8080-8082->80-82/tcp"
