"""The pallet CLI's network verbs, -p and port, and what docker has not: rates, net_cls."""

from __future__ import annotations

import glob
import json
import os
import subprocess
from collections.abc import Iterator

import pytest

from tests.compat.test_docker_cli_networks import SERVE, fetch, free_port
from tests.compat.test_pallet_cli_containers import pallet
from tests.support.palletd import Palletd, palletd_with_image

pytestmark = pytest.mark.root

IMAGE = "pallet-test/busybox:clinet"


@pytest.fixture(scope="module")
def pd() -> Iterator[Palletd]:
    with palletd_with_image("pallet-test-clinet-", IMAGE, 'CMD ["sh"]') as d:
        yield d


@pytest.fixture
def made(pd: Palletd) -> Iterator[dict[str, list[str]]]:
    out: dict[str, list[str]] = {"containers": [], "networks": []}
    yield out
    if out["containers"]:
        pallet(pd, "rm", "-f", *out["containers"])
    for net in out["networks"]:
        pallet(pd, "network", "rm", net)


def host_end(pd: Palletd, name: str) -> str:
    """The host's end of the container's eth0 veth."""
    out = pallet(pd, "exec", name, "cat", "/sys/class/net/eth0/iflink")
    index = int(out.stdout)
    for ifname in os.listdir("/sys/class/net"):
        with open(f"/sys/class/net/{ifname}/ifindex") as f:
            if int(f.read()) == index:
                return ifname
    raise AssertionError(f"no host link with index {index}")


def test_network_verbs(pd: Palletd, made: dict) -> None:
    out = pallet(pd, "network", "create", "--subnet", "10.251.9.0/24", "--label", "a=b",
                 "pt-cli")
    assert out.returncode == 0, out.stderr
    made["networks"].append("pt-cli")
    nid = out.stdout.strip()
    assert len(nid) == 64
    ls = pallet(pd, "network", "ls").stdout.splitlines()
    assert ls[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    assert any(ln.split()[:3] == [nid[:12], "pt-cli", "bridge"] for ln in ls[1:])
    assert pallet(pd, "network", "ls", "-q", "--filter", "label=a=b").stdout == nid[:12] + "\n"
    doc = json.loads(pallet(pd, "network", "inspect", "pt-cli").stdout)[0]
    assert doc["IPAM"]["Config"][0]["Subnet"] == "10.251.9.0/24"
    out = pallet(pd, "run", "-d", "--name", "cli-ip", "--network", "pt-cli", "--ip",
                 "10.251.9.77", IMAGE, "sleep", "300")
    assert out.returncode == 0, out.stderr
    made["containers"].append("cli-ip")
    out = pallet(pd, "exec", "cli-ip", "ip", "-4", "-o", "addr", "show", "eth0")
    assert "10.251.9.77/24" in out.stdout
    out = pallet(pd, "run", "--rm", "--network", "pt-cli", "--ip", "10.251.9.77", IMAGE, "true")
    assert out.returncode != 0 and "Address already in use" in out.stderr
    out = pallet(pd, "run", "--rm", "--dns", "nope", IMAGE, "true")
    assert out.returncode != 0 and "nope is not an ip address" in out.stderr
    out = pallet(pd, "run", "--rm", "--ip", "10.1.1.1", IMAGE, "true")
    assert out.returncode == 125 and "user-defined networks" in out.stderr
    assert pallet(pd, "network", "rm", "pt-cli").returncode == 1  # in use
    pallet(pd, "rm", "-f", "cli-ip")
    made["containers"].remove("cli-ip")
    out = pallet(pd, "network", "prune", "-f")
    assert "pt-cli" in out.stdout
    made["networks"].remove("pt-cli")


def test_publish_and_port(pd: Palletd, made: dict) -> None:
    port = free_port()
    out = pallet(pd, "run", "-d", "--name", "cli-pub", "-p", f"127.0.0.1:{port}:80", IMAGE,
                 "sh", "-c", SERVE)
    assert out.returncode == 0, out.stderr
    made["containers"].append("cli-pub")
    assert pallet(pd, "port", "cli-pub").stdout == f"80/tcp -> 127.0.0.1:{port}\n"
    assert pallet(pd, "port", "cli-pub", "80").stdout == f"127.0.0.1:{port}\n"
    assert fetch(f"http://127.0.0.1:{port}/").startswith("hello from ")
    out = pallet(pd, "run", "-d", "--name", "cli-pub2", "-P", "--expose", "8080", IMAGE,
                 "sleep", "300")
    made["containers"].append("cli-pub2")
    published = pallet(pd, "port", "cli-pub2", "8080/tcp").stdout.strip()
    host_port = int(published.rpartition(":")[2])
    assert 32768 <= host_port <= 60999
    ps = pallet(pd, "ps", "--format", "{{.Names}} {{.Ports}}").stdout
    assert f"cli-pub 127.0.0.1:{port}->80/tcp" in ps


def test_bandwidth_limits_on_the_veth(pd: Palletd, made: dict) -> None:
    out = pallet(pd, "run", "-d", "--name", "cli-rate", "--network-ingress-rate", "8mbit",
                 "--network-egress-rate", "4mbit", IMAGE, "sleep", "300")
    assert out.returncode == 0, out.stderr
    made["containers"].append("cli-rate")
    ifname = host_end(pd, "cli-rate")
    qdisc = subprocess.run(["tc", "qdisc", "show", "dev", ifname], capture_output=True,
                           text=True, check=True).stdout
    assert "tbf" in qdisc and "rate 8Mbit" in qdisc, qdisc
    qdiscs = subprocess.run(["tc", "qdisc", "show"], capture_output=True, text=True,
                            check=True).stdout
    assert "rate 4Mbit" in qdiscs
    out = pallet(pd, "run", "--rm", "--network-ingress-rate", "fast", IMAGE, "true")
    assert out.returncode == 125 and "--network-ingress-rate" in out.stderr


def test_net_cls_classid(pd: Palletd, made: dict) -> None:
    out = pallet(pd, "run", "-d", "--name", "cli-cls", "--net-cls-classid", "10:1", IMAGE,
                 "sleep", "300")
    assert out.returncode == 0, out.stderr
    made["containers"].append("cli-cls")
    cid = json.loads(pallet(pd, "inspect", "cli-cls").stdout)[0]["Id"]
    found = glob.glob(f"/sys/fs/cgroup/net_cls*/**/{cid}/net_cls.classid", recursive=True)
    assert found, "no net_cls cgroup for the container"
    with open(found[0]) as f:
        assert int(f.read()) == 0x100001
