"""Networks through the real docker CLI and docker-py: names, ports, none/host, connect.

Traffic goes only to loopback and to the test's own containers.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator

import docker
import pytest

from tests.support.palletd import Palletd, palletd_with_image, start_palletd

pytestmark = pytest.mark.root

IMAGE = "pallet-test/busybox:net"
# busybox's wget crashes on -T here (Debian's 1.35): `timeout` bounds it instead
SERVE = ("mkdir -p /www && echo \"hello from $(hostname)\" > /www/index.html && "
         "exec httpd -f -p 80 -h /www")


@pytest.fixture(scope="module")
def pd() -> Iterator[Palletd]:
    with palletd_with_image("pallet-test-net-", IMAGE, 'CMD ["sh"]', "EXPOSE 80") as d:
        yield d


@pytest.fixture
def made(pd: Palletd) -> Iterator[dict[str, list[str]]]:
    """Containers and networks a test names; removed at its end whatever happened."""
    out: dict[str, list[str]] = {"containers": [], "networks": []}
    yield out
    if out["containers"]:
        pd.docker("rm", "-f", *out["containers"], check=False)
    for net in out["networks"]:
        pd.docker("network", "rm", net, check=False)


def run(pd: Palletd, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], env=pd.env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fetch(url: str, timeout: float = 5) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return str(r.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def serve(pd: Palletd, made: dict[str, list[str]], name: str, *args: str) -> dict[str, object]:
    pd.docker("run", "-d", "--name", name, "--hostname", name, *args, IMAGE, "sh", "-c", SERVE)
    made["containers"].append(name)
    doc: dict[str, object] = json.loads(pd.docker("inspect", name).stdout)[0]
    return doc


def links(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True,
                         check=True).stdout
    return [ln.split(":")[1].strip().split("@")[0] for ln in out.splitlines()
            if ln.split(":")[1].strip().startswith(prefix)]


def links_become(prefix: str, want: object, timeout: float = 5) -> list[str]:
    """The host's links named ``prefix``..., once they are ``want`` (a list, or a count):
    the kernel deletes a container's veth with its netns, a moment after it is removed."""
    deadline = time.monotonic() + timeout
    while True:
        now = links(prefix)
        if (len(now) if isinstance(want, int) else now) == want or \
                time.monotonic() > deadline:
            return now
        time.sleep(0.05)


def test_containers_reach_each_other_by_name_and_alias(pd: Palletd, made: dict) -> None:
    pd.docker("network", "create", "pt-names")
    made["networks"].append("pt-names")
    serve(pd, made, "web1", "--network", "pt-names", "--network-alias", "www")
    for host in ("web1", "www", "web1.pt-names"):
        out = run(pd, "run", "--rm", "--network", "pt-names", IMAGE,
                  "timeout", "5", "wget", "-q", "-O-", f"http://{host}/")
        assert (out.returncode, out.stdout) == (0, "hello from web1\n"), (host, out.stderr)
    out = run(pd, "run", "--rm", "--network", "pt-names", IMAGE, "cat", "/etc/resolv.conf")
    assert "nameserver 127.0.0.11" in out.stdout
    # not on the network: the name is not known
    out = run(pd, "run", "--rm", "--network", "none", IMAGE, "sh", "-c",
              "nslookup web1 127.0.0.11 >/dev/null 2>&1 && echo found || echo unknown")
    assert out.stdout == "unknown\n"


def test_published_port_answers_on_loopback_and_bridge(pd: Palletd, made: dict) -> None:
    port = free_port()
    doc = serve(pd, made, "pub1", "-p", f"{port}:80")
    ns = doc["NetworkSettings"]
    assert isinstance(ns, dict)
    assert ns["Ports"]["80/tcp"] == [{"HostIp": "0.0.0.0", "HostPort": str(port)}]
    gateway = ns["Networks"]["bridge"]["Gateway"]
    assert ns["IPAddress"] and ns["Gateway"] == gateway
    assert fetch(f"http://127.0.0.1:{port}/") == "hello from pub1\n"
    assert fetch(f"http://{gateway}:{port}/") == "hello from pub1\n"
    assert pd.docker("port", "pub1").stdout == f"80/tcp -> 0.0.0.0:{port}\n"
    ps = pd.docker("ps", "--format", "{{.Ports}}", "--filter", "name=pub1").stdout
    assert ps.strip() == f"0.0.0.0:{port}->80/tcp"
    for flt in (f"publish={port}", f"publish={port}/tcp", "expose=80", "network=bridge"):
        names = pd.docker("ps", "--format", "{{.Names}}", "--filter", flt).stdout.split()
        assert "pub1" in names, flt
    assert "pub1" not in pd.docker("ps", "--filter", f"publish={port}/udp").stdout
    # another container reaches it through the host's address (DNAT from the bridge)
    out = run(pd, "run", "--rm", IMAGE, "timeout", "5", "wget", "-q", "-O-",
              f"http://{gateway}:{port}/")
    assert out.stdout == "hello from pub1\n", out.stderr
    # and the container itself (hairpin)
    out = run(pd, "exec", "pub1", "timeout", "5", "wget", "-q", "-O-", f"http://{gateway}:{port}/")
    assert out.stdout == "hello from pub1\n", out.stderr


def test_port_already_allocated_is_refused_cleanly(pd: Palletd, made: dict) -> None:
    port = free_port()
    serve(pd, made, "alloc1", "-p", f"127.0.0.1:{port}:80")
    before = links("pveth")
    made["containers"].append("alloc2")
    out = run(pd, "run", "-d", "--name", "alloc2", "-p", f"{port}:80", IMAGE, "sleep", "60")
    assert out.returncode != 0
    assert "port is already allocated" in out.stderr
    for _ in range(3):  # a netns each failed start left would pile up
        assert run(pd, "start", "alloc2").returncode != 0
    doc = json.loads(pd.docker("inspect", "alloc2").stdout)[0]
    assert doc["State"]["Running"] is False and doc["NetworkSettings"]["SandboxKey"] == ""
    assert links_become("pveth", before) == before  # nothing half-made
    # alloc1's netns and the spares palletd keeps ready (engine/netnspool.py), no more
    from pallet.engine.netnspool import SPARES

    held = os.path.basename(json.loads(pd.docker("inspect", "alloc1").stdout)[0][
        "NetworkSettings"]["SandboxKey"])
    entries = os.listdir(os.path.join(pd.exec_root, "netns"))
    assert held in entries and len(entries) <= 1 + SPARES


def test_a_port_in_use_on_the_host_is_refused(pd: Palletd, made: dict) -> None:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        s.listen()
        port = s.getsockname()[1]
        made["containers"].append("busyport")
        out = run(pd, "run", "-d", "--name", "busyport", "-p", f"{port}:80", IMAGE,
                  "sleep", "60")
        assert out.returncode != 0 and "port is already allocated" in out.stderr


def test_none_has_only_lo_and_host_sees_the_host(pd: Palletd) -> None:
    out = run(pd, "run", "--rm", "--network", "none", IMAGE, "ls", "/sys/class/net")
    assert out.stdout.split() == ["lo"]
    # up, with 127.0.0.1, as in dockerd's "none" sandbox
    out = run(pd, "run", "--rm", "--network", "none", IMAGE, "ip", "-o", "addr", "show", "lo")
    assert "inet 127.0.0.1/8" in out.stdout, out.stdout
    out = run(pd, "run", "--rm", "--network", "host", IMAGE, "ls", "/sys/class/net")
    assert sorted(out.stdout.split()) == sorted(os.listdir("/sys/class/net"))
    out = run(pd, "run", "--rm", IMAGE, "ls", "/sys/class/net")
    assert out.stdout.split() == ["eth0", "lo"]


def test_connect_and_disconnect_a_running_container(pd: Palletd, made: dict) -> None:
    pd.docker("network", "create", "--subnet", "10.251.7.0/24", "pt-conn")
    made["networks"].append("pt-conn")
    serve(pd, made, "conn1")  # on the default bridge only
    pd.docker("network", "connect", "--alias", "late", "pt-conn", "conn1")
    doc = json.loads(pd.docker("inspect", "conn1").stdout)[0]
    ip = doc["NetworkSettings"]["Networks"]["pt-conn"]["IPAddress"]
    assert ip.startswith("10.251.7.")
    pd.docker("run", "-d", "--name", "client1", "--network", "pt-conn", IMAGE, "sleep", "300")
    made["containers"].append("client1")
    out = run(pd, "exec", "client1", "timeout", "5", "wget", "-q", "-O-", "http://late/")
    assert out.stdout == "hello from conn1\n", out.stderr
    inspect = json.loads(pd.docker("network", "inspect", "pt-conn").stdout)[0]
    assert {c["Name"] for c in inspect["Containers"].values()} == {"conn1", "client1"}
    pd.docker("network", "disconnect", "pt-conn", "conn1")
    out = run(pd, "exec", "client1", "timeout", "2", "wget", "-q", "-O-", f"http://{ip}/")
    assert out.returncode != 0
    out = run(pd, "exec", "conn1", "ls", "/sys/class/net")
    assert out.stdout.split() == ["eth0", "lo"]


def test_network_commands_and_bad_input(pd: Palletd, made: dict) -> None:
    made["networks"].append("pt-cmd")
    nid = pd.docker("network", "create", "--subnet", "10.251.8.0/24", "--gateway",
                    "10.251.8.254", "--label", "k=v", "pt-cmd").stdout.strip()
    ls = pd.docker("network", "ls", "--format", "{{.Name}} {{.Driver}}").stdout.splitlines()
    assert {"bridge bridge", "host host", "none null", "pt-cmd bridge"} <= set(ls)
    doc = json.loads(pd.docker("network", "inspect", "pt-cmd").stdout)[0]
    assert doc["Id"] == nid and doc["Labels"] == {"k": "v"}
    assert doc["IPAM"]["Config"] == [{"Subnet": "10.251.8.0/24", "Gateway": "10.251.8.254"}]
    out = run(pd, "network", "create", "--subnet", "10.251.8.128/25", "pt-overlap")
    assert out.returncode != 0 and "overlaps" in out.stderr
    out = run(pd, "network", "create", "pt-cmd")
    assert out.returncode != 0 and "already exists" in out.stderr
    out = run(pd, "run", "--rm", "--network", "pt-nosuch", IMAGE, "true")
    assert out.returncode != 0 and "network pt-nosuch not found" in out.stderr
    out = run(pd, "network", "rm", "bridge")
    assert out.returncode != 0 and "pre-defined" in out.stderr
    pd.docker("run", "-d", "--name", "cmd1", "--network", "pt-cmd", IMAGE, "sleep", "300")
    made["containers"].append("cmd1")
    out = run(pd, "network", "rm", "pt-cmd")
    assert out.returncode != 0 and "active endpoints" in out.stderr
    pd.docker("rm", "-f", "cmd1")
    bridge = "pbr-" + nid[:11]
    assert links(bridge) == [bridge]
    pd.docker("network", "rm", "pt-cmd")
    assert links(bridge) == []
    made["networks"].remove("pt-cmd")


def test_docker_py_networks_and_ports(pd: Palletd, made: dict) -> None:
    client = docker.DockerClient(base_url=pd.host)
    net = client.networks.create("pt-py", driver="bridge")
    made["networks"].append("pt-py")
    port = free_port()
    c = client.containers.run(IMAGE, ["sh", "-c", SERVE], name="py1", detach=True,
                              network="pt-py", ports={"80/tcp": ("127.0.0.1", port)})
    made["containers"].append("py1")
    c.reload()
    assert c.ports == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
    assert fetch(f"http://127.0.0.1:{port}/") == "hello from " + c.id[:12] + "\n"
    net.reload()
    assert [x.name for x in net.containers] == ["py1"]
    assert "pt-py" in [n.name for n in client.networks.list()]
    c.remove(force=True)
    made["containers"].remove("py1")
    net.remove()
    made["networks"].remove("pt-py")
    client.close()


def test_rules_and_names_come_back_after_palletd_is_killed(pd: Palletd, made: dict) -> None:
    pd.docker("network", "create", "pt-crash")
    made["networks"].append("pt-crash")
    port = free_port()
    serve(pd, made, "crash1", "--network", "pt-crash", "-p", f"{port}:80")
    pd.docker("run", "-d", "--name", "crash2", "--network", "pt-crash", IMAGE, "sleep", "300")
    made["containers"].append("crash2")
    args = pd.proc.args
    pd.proc.send_signal(signal.SIGKILL)
    pd.proc.wait()
    table = args[args.index("--firewall-table") + 1] if "--firewall-table" in args else None
    if table:  # the rules are gone too (a reboot): palletd puts them back
        subprocess.run(["nft", "delete", "table", "inet", table], check=False)
    base = os.path.dirname(pd.socket)
    new = start_palletd(base, *args[args.index("--cgroup-parent") + 2:])
    pd.proc = new.proc
    assert fetch(f"http://127.0.0.1:{port}/") == "hello from crash1\n"
    out = run(pd, "exec", "crash2", "timeout", "5", "wget", "-q", "-O-", "http://crash1/")
    assert out.stdout == "hello from crash1\n", out.stderr


def test_nothing_left_after_rm_and_network_rm(pd: Palletd, made: dict) -> None:
    pd.docker("network", "create", "pt-left")
    made["networks"].append("pt-left")
    before = links("pveth")
    port = free_port()
    serve(pd, made, "left1", "--network", "pt-left", "-p", f"{port}:80")
    key = json.loads(pd.docker("inspect", "left1").stdout)[0]["NetworkSettings"]["SandboxKey"]
    assert os.path.exists(key)
    pd.docker("rm", "-f", "left1")
    made["containers"].remove("left1")
    assert links_become("pveth", before) == before
    from pallet.engine.netnspool import SPARES

    assert not os.path.exists(key)  # only the spares palletd keeps ready are left
    assert len(os.listdir(os.path.join(pd.exec_root, "netns"))) <= SPARES
    args = pd.proc.args
    table = args[args.index("--firewall-table") + 1]
    rules = subprocess.run(["nft", "list", "table", "inet", table], capture_output=True,
                           text=True, check=True).stdout
    assert str(port) not in rules
    pd.docker("network", "rm", "pt-left")
    made["networks"].remove("pt-left")
    rules = subprocess.run(["nft", "list", "table", "inet", table], capture_output=True,
                           text=True, check=True).stdout
    assert "pbr-" not in rules


def test_stop_takes_the_sandbox_down(pd: Palletd, made: dict) -> None:
    serve(pd, made, "stop1")
    doc = json.loads(pd.docker("inspect", "stop1").stdout)[0]
    host_end_count = len(links("pveth"))
    pd.docker("stop", "-t", "1", "stop1")
    after = json.loads(pd.docker("inspect", "stop1").stdout)[0]
    assert after["NetworkSettings"]["Networks"]["bridge"]["IPAddress"] == ""
    assert after["NetworkSettings"]["SandboxKey"] == ""
    assert len(links_become("pveth", host_end_count - 1)) == host_end_count - 1
    assert not os.path.exists(doc["NetworkSettings"]["SandboxKey"])


def test_ipv6_network(pd: Palletd, made: dict) -> None:
    pd.docker("network", "create", "--ipv6", "--subnet", "fd42:7:7::/64", "pt-v6")
    made["networks"].append("pt-v6")
    doc = serve(pd, made, "v6web", "--network", "pt-v6")
    ep = doc["NetworkSettings"]["Networks"]["pt-v6"]  # type: ignore[index]
    v6 = ep["GlobalIPv6Address"]
    assert v6.startswith("fd42:7:7::") and ep["IPAddress"]
    out = run(pd, "run", "--rm", "--network", "pt-v6", IMAGE, "timeout", "5", "wget", "-q",
              "-O-", f"http://[{v6}]/")
    assert out.stdout == "hello from v6web\n", out.stderr
    out = run(pd, "run", "--rm", "--network", "pt-v6", IMAGE, "nslookup", "-type=aaaa", "v6web")
    assert v6 in out.stdout, out.stdout + out.stderr


def test_links_mac_and_extra_hosts_on_the_default_bridge(pd: Palletd, made: dict) -> None:
    doc = serve(pd, made, "linked1", "-e", "GREETING=hi there")
    ip = doc["NetworkSettings"]["IPAddress"]  # type: ignore[index]
    out = run(pd, "run", "--rm", "--name", "linker", "--link", "linked1:db",
              "--mac-address", "02:42:0a:00:00:99", "--add-host", "extra.example:10.9.9.9",
              IMAGE, "sh", "-c", "env | grep ^DB_ | sort; "
              "cat /etc/hosts; cat /sys/class/net/eth0/address; "
              "timeout 5 wget -q -O- http://db/")
    for var in ("DB_NAME=/linker/db", f"DB_PORT=tcp://{ip}:80",
                f"DB_PORT_80_TCP=tcp://{ip}:80", f"DB_PORT_80_TCP_ADDR={ip}",
                "DB_PORT_80_TCP_PORT=80", "DB_PORT_80_TCP_PROTO=tcp",
                "DB_ENV_GREETING=hi there"):
        assert var in out.stdout.splitlines(), (var, out.stdout)
    assert f"{ip}\tdb linked1" in out.stdout
    assert "10.9.9.9\textra.example" in out.stdout
    assert "02:42:0a:00:00:99" in out.stdout
    assert out.stdout.endswith("hello from linked1\n"), out.stderr
    out = run(pd, "run", "--rm", "--link", "pt-nosuch:x", IMAGE, "true")
    assert out.returncode != 0


def test_masquerade_and_isolation_rules(pd: Palletd, made: dict) -> None:
    pd.docker("network", "create", "--subnet", "10.251.11.0/24", "pt-out")
    internal = pd.docker("network", "create", "--internal", "--subnet", "10.251.12.0/24",
                         "pt-in").stdout.strip()
    made["networks"] += ["pt-out", "pt-in"]
    args = pd.proc.args
    table = args[args.index("--firewall-table") + 1]
    rules = subprocess.run(["nft", "list", "table", "inet", table], capture_output=True,
                           text=True, check=True).stdout
    assert "10.251.11.0/24" in rules and "masquerade" in rules
    # an internal network is never masqueraded out, and its bridge drops what crosses it
    assert not any("10.251.12.0/24" in ln and "masquerade" in ln for ln in rules.splitlines())
    bridge = f"pbr-{internal[:11]}"
    assert any(bridge in ln and "drop" in ln for ln in rules.splitlines()), rules


def test_network_events_for_a_run(pd: Palletd, made: dict) -> None:
    since = str(int(time.time()) - 1)
    made["containers"].append("evrun")
    out = run(pd, "run", "--name", "evrun", IMAGE, "true")
    assert out.returncode == 0, out.stderr
    cid = pd.docker("inspect", "-f", "{{.Id}}", "evrun").stdout.strip()
    ev = pd.docker("events", "--since", since, "--until", str(int(time.time()) + 1),
                   "--filter", "type=network", "--format",
                   "{{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.container}}"
                   ).stdout.splitlines()
    mine = [e for e in ev if e.endswith(cid)]
    assert mine == [f"connect bridge {cid}", f"disconnect bridge {cid}"], ev


def test_icc_false_keeps_containers_apart_but_not_their_published_ports(
        pd: Palletd, made: dict) -> None:
    pd.docker("network", "create", "-o", "com.docker.network.bridge.enable_icc=false",
              "pt-noicc")
    made["networks"].append("pt-noicc")
    port = free_port()
    doc = serve(pd, made, "lonely", "--network", "pt-noicc", "-p", f"127.0.0.1:{port}:80")
    ip = doc["NetworkSettings"]["Networks"]["pt-noicc"]["IPAddress"]  # type: ignore[index]
    assert fetch(f"http://127.0.0.1:{port}/") == "hello from lonely\n"  # from the host: yes
    # from a neighbour on the same bridge: its name resolves, its packets are dropped
    out = run(pd, "run", "--rm", "--network", "pt-noicc", IMAGE, "sh", "-c",
              "nslookup lonely 127.0.0.11 >/dev/null && echo named; "
              f"timeout 3 wget -q -O- http://{ip}/ || echo cut off")
    assert out.stdout == "named\ncut off\n", out.stdout + out.stderr
    # the same pair on a network with icc (the default) talks
    pd.docker("network", "create", "pt-icc")
    made["networks"].append("pt-icc")
    serve(pd, made, "friendly", "--network", "pt-icc")
    out = run(pd, "run", "--rm", "--network", "pt-icc", IMAGE, "timeout", "5", "wget", "-q",
              "-O-", "http://friendly/")
    assert out.stdout == "hello from friendly\n", out.stderr
