"""Container networking: palletd against dockerd (Debian's docker.io), side by side.

Run as root:  .venv/bin/python -m bench.networks [--rounds N] [--fs loop|host] [--mib N]

The set-up is bench.containers' (a private palletd and dockerd, stores on a private
journaled ext4, the same imported busybox image on both), with real networking on
both sides, owned by the bench and gone at the end:

  palletd  --bridge pbench-p0 --bip <free 10.x/24> --firewall-table pbench_pallet
  dockerd  --bridge pbench-d0 (made here, with a free 10.x/24), iptables on (Debian's
           nf_tables iptables), --ip6tables=false, --userland-proxy=false: published
           ports are DNAT rules on both sides. The `docker+proxy` side is the same
           dockerd restarted with --userland-proxy=true, docker's default.
  one user-defined network each (pbench-pn / pbench-dn, free 10.x/24s) for connect.

Each round has two halves, dockerd without the userland proxy and with it (which comes
first alternates, so dockerd restarts once a round). Without: the CLI sides (pallet CLI
-> palletd, docker CLI -> palletd, docker CLI -> dockerd) in an order rotating from round
to round, SETTLE seconds of rest before each, then pallet's and docker's transfers taking
turns. With: docker+proxy's `run -p`, then pallet's and docker+proxy's transfers taking
turns. The rows:

  run (bridge)      `run --rm busybox true` on the default bridge network     goal <= 0.2x
  run (none)        the same with --network none, for reference
  run -p            `run --rm -p 127.0.0.1:PORT:80 busybox true`: the firewall update
                    (127.0.0.1 rather than every address: nothing is opened to the LAN)
  connect/discon.   `network connect pbench-net C` / `network disconnect` of a running
                    container (CLI wall time, 3 pairs a round)
  MB/s rows         --mib MiB (default 1024) through a published port to a sink/source
                    server in a container (the host's own python3, bind-mounted /usr:ro,
                    1 MiB socket reads and writes; busybox nc reads 1 KiB at a time and
                    tops out at a fifth of what the kernel path does here):
                      host -> 127.0.0.1:PORT      (upload)                 goal >= 1x
                      127.0.0.1:PORT -> host      (download)               goal >= 1x
                      host -> gateway:PORT        (the bridge's address)   goal >= 1x
                      container -> gateway:PORT   (another container on the bridge,
                                                   through the published port)
                      host -> container IP:PORT   (the server's own address, no NAT;
                                                   for reference)
                    timed by the client from connect until the server has confirmed
                    the byte count; 3 transfers a round for each side; clients on CPU 0
                    and servers on CPU 1 (taskset, --cpuset-cpus) where there are two

The docker CLI -> palletd side runs the CLI rows only (its data path is pallet's);
docker+proxy runs run -p and the MB/s rows only (the proxy changes nothing else).
pallet's MB/s column pools its transfers of both halves; its ratio to docker (docker+proxy)
is that of the medians of its transfers that took turns with docker's (docker+proxy's).
With the proxy, docker's 127.0.0.1 and container -> gateway traffic goes through
docker-proxy; host -> gateway is DNAT'd either way. Traffic goes only to 127.0.0.1 and
the engines' own bridge addresses and containers.

At the end everything both engines added goes: containers, networks, bridges, pallet's
nft table, dockerd's iptables chains and the jumps into them; ip_forward, the
bridge-nf-call sysctls and the FORWARD policy are put back, and the host's ruleset
(iptables-save, nft list ruleset) is compared with the one before: a difference is
printed loudly.
"""

from __future__ import annotations

import argparse
import difflib
import ipaddress
import json
import os
import random
import re
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from bench.containers import IMAGE, SETTLE, cli, import_image
from bench.images import (
    PREFIX,
    REPO,
    Bench,
    Timer,
    host_traces,
    setup,
    start_dockerd,
    stop,
    teardown,
)

SIDES = ("pallet", "docker-cli->palletd", "docker", "docker+proxy")
PALLET_BRIDGE, DOCKER_BRIDGE = "pbench-p0", "pbench-d0"
PALLET_NET_BRIDGE, DOCKER_NET_BRIDGE = "pbench-pn", "pbench-dn"
TABLE = "pbench_pallet"
NET = "pbench-net"
SERVER_PORT = 5201  # inside the server container
PAIRS = 3  # connect/disconnect pairs a round
TRANSFERS = 3  # transfers a round, per MB/s row and side
# where a transfer's two ends run: on a machine of few CPUs, whether the scheduler puts
# them on one CPU or two changes MB/s by 2x from one transfer to the next
CLIENT_CPU, SERVER_CPU = 0, 1
SYSCTLS = ("net/ipv4/ip_forward", "net/ipv4/conf/all/route_localnet",
           "net/ipv6/conf/all/forwarding", "net/bridge/bridge-nf-call-iptables",
           "net/bridge/bridge-nf-call-ip6tables")
DOCKERD_NET = ("--bridge", DOCKER_BRIDGE, "--iptables=true", "--ip6tables=false",
               "--ip-forward=true", "--ip-masq=true")

# (row, unit, sides, goal as (ratio, "<=" or ">=") or None); time rows are seconds
CLI_SIDES = ("pallet", "docker-cli->palletd", "docker")
DATA_SIDES = ("pallet", "docker", "docker+proxy")
ROWS: tuple[tuple[str, str, tuple[str, ...], tuple[float, str] | None], ...] = (
    ("run (bridge)", "s", CLI_SIDES, (0.2, "<=")),
    ("run (none)", "s", CLI_SIDES, None),
    ("run -p", "s", SIDES, None),
    ("connect", "s", CLI_SIDES, None),
    ("disconnect", "s", CLI_SIDES, None),
    ("up 127.0.0.1", "MB/s", DATA_SIDES, (1.0, ">=")),
    ("down 127.0.0.1", "MB/s", DATA_SIDES, (1.0, ">=")),
    ("up gateway", "MB/s", DATA_SIDES, (1.0, ">=")),
    ("ctr->gateway", "MB/s", DATA_SIDES, (1.0, ">=")),
    ("up container IP", "MB/s", DATA_SIDES, None),
)

# The server in the container: per connection a 9-byte head, b"u" or b"d" and a count;
# "u": read to EOF, answer the count read; "d": send that many bytes.
SERVER = r"""
import socket, struct, sys, threading
def serve(c):
    with c:
        head = b""
        while len(head) < 9:
            x = c.recv(9 - len(head))
            if not x:
                return
            head += x
        n = struct.unpack("!Q", head[1:])[0]
        if head[:1] == b"u":
            buf, got = bytearray(1 << 20), 0
            while True:
                k = c.recv_into(buf)
                if not k:
                    break
                got += k
            c.sendall(struct.pack("!Q", got))
        else:
            buf = memoryview(bytearray(1 << 20))
            while n:
                k = min(n, len(buf))
                c.sendall(buf[:k])
                n -= k
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("0.0.0.0", int(sys.argv[1])))
l.listen(64)
print("ready", flush=True)
while True:
    c, _ = l.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""

# The client, on the host or in a container: prints the seconds from connect until the
# server confirmed the count (upload) or the last byte arrived (download).
CLIENT = r"""
import socket, struct, sys, time
host, port, mode, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
t = time.perf_counter()
s = socket.create_connection((host, port))
s.sendall(mode.encode() + struct.pack("!Q", n))
buf = memoryview(bytearray(1 << 20))
if mode == "u":
    left = n
    while left:
        k = min(left, len(buf))
        s.sendall(buf[:k])
        left -= k
    s.shutdown(socket.SHUT_WR)
    got = b""
    while len(got) < 8:
        x = s.recv(8 - len(got))
        if not x:
            break
        got += x
    count = struct.unpack("!Q", got)[0] if len(got) == 8 else -1
else:
    count = 0
    while True:
        k = s.recv_into(buf)
        if not k:
            break
        count += k
elapsed = time.perf_counter() - t
s.close()
if count != n:
    sys.exit(f"moved {count} bytes of {n}")
print(elapsed)
"""


@dataclass
class Host:
    """What the host had before, to put back and to compare with after."""

    iptables: str
    tables: dict[str, str]
    sysctls: dict[str, str]
    forward_policy: str | None  # None: no iptables filter table


@dataclass
class Net:
    """The bench's addresses: gateways of the default bridges, user-defined subnets, and
    dockerd's subnets (its iptables rules name them)."""

    pallet_bip: ipaddress.IPv4Interface
    docker_bip: ipaddress.IPv4Interface
    pallet_net: ipaddress.IPv4Network
    docker_net: ipaddress.IPv4Network
    docker_subnets: tuple[str, ...] = ()


@dataclass
class Engines:
    bench: Bench
    pallet: list[str]
    phost: str
    dhost: str
    net: Net
    python: list[str]  # the host's python3, as a container runs it from /usr
    proxy: bool = False  # dockerd's --userland-proxy
    timer: Timer | None = None
    pinned: bool = False  # clients on CLIENT_CPU, servers on SERVER_CPU

    @property
    def pin(self) -> list[str]:
        return ["taskset", "-c", str(CLIENT_CPU)] if self.pinned else []

    def cpuset(self, cpu: int) -> list[str]:
        return ["--cpuset-cpus", str(cpu)] if self.pinned else []

    def cli(self, side: str) -> tuple[list[str], dict[str, str]]:
        """The client command and its environment, for one side."""
        argv, host = cli(side, self.pallet, self.phost, self.dhost)
        return argv, {**self.bench.env, "DOCKER_HOST": host}

    def time(self, side: str, args: list[str]) -> tuple[float, str]:
        assert self.timer is not None
        argv, env = self.cli(side)
        return self.timer.time([*argv, *args], env)

    def sh(self, side: str, args: list[str]) -> str:
        argv, env = self.cli(side)
        p = subprocess.run([*argv, *args], env=env, capture_output=True, text=True,
                           timeout=300, check=False)
        if p.returncode:
            raise RuntimeError(f"{' '.join(argv + args)} exited {p.returncode}:\n"
                               f"{p.stdout}{p.stderr}")
        return p.stdout

    def gateway(self, side: str) -> str:
        """The address of the default bridge of the engine ``side`` talks to."""
        bip = self.net.pallet_bip if self.cli(side)[1]["DOCKER_HOST"] == self.phost \
            else self.net.docker_bip
        return str(bip.ip)

    def use_proxy(self, on: bool) -> None:
        """dockerd restarted with --userland-proxy=on (nothing of its runs meanwhile)."""
        if on == self.proxy:
            return
        old = [p for p in self.bench.procs if isinstance(p.args, list) and p.args
               and p.args[0] == "dockerd"]
        for p in old:
            stop(p)
            self.bench.procs.remove(p)
        start_dockerd(self.bench, dockerd_args(on))
        self.proxy = on


def dockerd_args(proxy: bool) -> tuple[str, ...]:
    return (*DOCKERD_NET, f"--userland-proxy={'true' if proxy else 'false'}")


# --- the host: free addresses and ports, what was there before ----------------------------


def free_subnets(n: int) -> list[ipaddress.IPv4Network]:
    """``n`` /24s in 10.0.0.0/8 that no route or address of the host overlaps."""
    taken: list[ipaddress.IPv4Network] = []
    routes = json.loads(subprocess.run(["ip", "-j", "-4", "route", "show", "table", "all"],
                                       capture_output=True, text=True, check=True).stdout)
    for r in routes:
        if r.get("dst") and r["dst"] != "default":
            taken.append(ipaddress.IPv4Network(r["dst"], strict=False))
    addrs = json.loads(subprocess.run(["ip", "-j", "-4", "addr"], capture_output=True,
                                      text=True, check=True).stdout)
    for link in addrs:
        for a in link.get("addr_info", []):
            taken.append(ipaddress.IPv4Network(f"{a['local']}/{a['prefixlen']}",
                                               strict=False))
    out: list[ipaddress.IPv4Network] = []
    candidates = [ipaddress.IPv4Network(f"10.{a}.{b}.0/24")
                  for a in range(200, 250) for b in range(0, 256, 16)]
    random.shuffle(candidates)
    for c in candidates:
        if not any(c.overlaps(t) for t in taken + out):
            out.append(c)
            if len(out) == n:
                return out
    raise RuntimeError("no free 10.x /24 for the bench's bridges")


def free_port() -> int:
    """A port below the ephemeral range that nothing on 127.0.0.1 or 0.0.0.0 holds."""
    for _ in range(100):
        port = random.randint(20000, 29999)
        try:
            for addr in ("127.0.0.1", "0.0.0.0"):
                with socket.socket() as s:
                    s.bind((addr, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port in 20000-29999")


def _out(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout


def iptables_save() -> str:
    """iptables-save without comments and counters."""
    lines = [re.sub(r"\[\d+:\d+\]", "", line) for line in _out(["iptables-save"]).splitlines()
             if not line.startswith("#")]
    return "\n".join(lines)


def nft_tables() -> dict[str, str]:
    """`nft list ruleset`, table by table ("inet pallet" -> its text), without counters."""
    tables: dict[str, str] = {}
    name, body = "", list[str]()
    for line in _out(["nft", "list", "ruleset"]).splitlines():
        if line.startswith("table "):
            name, body = line[len("table "):].rstrip(" {"), []
        elif line == "}" and name:
            tables[name] = "\n".join(body)
            name = ""
        elif name:
            body.append(re.sub(r"counter packets \d+ bytes \d+", "counter", line))
    return tables


def read_sysctls() -> dict[str, str]:
    out = {}
    for key in SYSCTLS:
        try:
            with open(f"/proc/sys/{key}") as f:
                out[key] = f.read().strip()
        except OSError:
            pass
    return out


def forward_policy(save: str) -> str | None:
    m = re.search(r"^\*filter$.*?^:FORWARD (\w+)", save, re.M | re.S)
    return m.group(1) if m else None


def record_host() -> Host:
    save = iptables_save()
    return Host(save, nft_tables(), read_sysctls(), forward_policy(save))


# --- making and removing the bench's network set-up ---------------------------------------


def make_bridge(name: str, addr: ipaddress.IPv4Interface) -> None:
    subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True)
    subprocess.run(["ip", "addr", "add", str(addr), "dev", name], check=True)
    subprocess.run(["ip", "link", "set", name, "up"], check=True)


def remove_docker_rules(net: Net) -> list[str]:
    """dockerd's iptables chains (DOCKER*), and the rules elsewhere that jump into them or
    name its bridges or subnets; what failed."""
    failed = []
    marks = [DOCKER_BRIDGE, DOCKER_NET_BRIDGE, *net.docker_subnets]
    for table in ("nat", "filter"):
        listing = _out(["iptables", "-t", table, "-S"]).splitlines()
        chains = [ln.split()[1] for ln in listing if ln.startswith("-N ")
                  and ln.split()[1].startswith("DOCKER")]
        for line in listing:
            args = shlex.split(line)
            if not args or args[0] != "-A" or args[1] in chains:
                continue
            if any(c in args for c in chains) or any(m in line for m in marks):
                p = subprocess.run(["iptables", "-t", table, "-D", *args[1:]],
                                   capture_output=True, text=True, check=False)
                if p.returncode:
                    failed.append(f"iptables -t {table} -D {' '.join(args[1:])}: {p.stderr}")
        for verb in ("-F", "-X"):
            for chain in chains:
                p = subprocess.run(["iptables", "-t", table, verb, chain],
                                   capture_output=True, text=True, check=False)
                if p.returncode:
                    failed.append(f"iptables -t {table} {verb} {chain}: {p.stderr}")
    return failed


def restore_host(before: Host, net: Net) -> None:
    """Take away what the engines added to the host, put back what they changed, and say
    loudly what differs from before."""
    problems = remove_docker_rules(net)
    for name in (PALLET_BRIDGE, DOCKER_BRIDGE, PALLET_NET_BRIDGE, DOCKER_NET_BRIDGE):
        if os.path.exists(f"/sys/class/net/{name}"):
            subprocess.run(["ip", "link", "del", name], check=False)
    subprocess.run(["nft", "delete", "table", "inet", TABLE], capture_output=True,
                   check=False)
    after = iptables_save()
    for table in ("filter", "nat"):
        # an iptables table dockerd made (there was none before): gone, once it is empty
        if f"*{table}" in after and f"*{table}" not in before.iptables:
            rules = _out(["iptables", "-t", table, "-S"]).splitlines()
            if all(r.startswith("-P ") and r.endswith(" ACCEPT") for r in rules):
                subprocess.run(["nft", "delete", "table", "ip", table], check=False)
    if before.forward_policy is not None and forward_policy(after) != before.forward_policy:
        subprocess.run(["iptables", "-P", "FORWARD", before.forward_policy], check=False)
    for key, value in before.sysctls.items():
        if read_sysctls().get(key) != value:
            with open(f"/proc/sys/{key}", "w") as f:
                f.write(value)
    problems += compare_host(before)
    if problems:
        print("\n" + "!" * 78 + "\nWARNING: the host's network set-up differs from before "
              "the bench:\n  " + "\n  ".join(problems) + "\n" + "!" * 78, file=sys.stderr)


def compare_host(before: Host) -> list[str]:
    problems = []
    if iptables_save() != before.iptables:
        problems.append("iptables-save differs:\n" + _diff(before.iptables, iptables_save()))
    now = nft_tables()
    ours = {"ip filter", "ip nat", "ip6 filter", "ip6 nat", f"inet {TABLE}"}
    others = []
    for name in sorted(set(before.tables) | set(now)):
        if before.tables.get(name) == now.get(name):
            continue
        what = ("added" if name not in before.tables else "removed" if name not in now
                else "changed")
        if name in ours:
            problems.append(f"nft table {name} {what}:\n"
                            + _diff(before.tables.get(name, ""), now.get(name, "")))
        else:
            others.append(f"{name} ({what})")
    if others:  # tables no engine here writes: concurrent palletds of tests
        print(f"note: nft tables of others changed meanwhile: {', '.join(others)}")
    sysctls = read_sysctls()
    problems += [f"sysctl {k}: {v} before, {sysctls.get(k)} now"
                 for k, v in before.sysctls.items() if sysctls.get(k) != v]
    left = [n for n in (PALLET_BRIDGE, DOCKER_BRIDGE, PALLET_NET_BRIDGE, DOCKER_NET_BRIDGE)
            if os.path.exists(f"/sys/class/net/{n}")]
    problems += [f"bridge {n} is still there" for n in left]
    return problems


def _diff(a: str, b: str) -> str:
    return "\n".join("    " + line for line in difflib.unified_diff(
        a.splitlines(), b.splitlines(), "before", "after", lineterm="", n=1))


# --- transfers, and the turns of the sides ----------------------------------------------


def container_python() -> list[str]:
    """The host's python3 as a container with the host's /usr mounted runs it: by its
    dynamic loader, which the busybox image has no /lib64 for."""
    python = os.path.realpath("/usr/bin/python3")
    loader = os.path.realpath("/lib64/ld-linux-x86-64.so.2")
    if not (python.startswith("/usr/") and loader.startswith("/usr/")):
        raise RuntimeError(f"python3 ({python}) and its loader ({loader}) must be in /usr")
    return [loader, python, "-I", "-S"]


def wait_ready(e: Engines, side: str, cid: str) -> None:
    deadline = time.monotonic() + 30
    while "ready" not in e.sh(side, ["logs", cid]):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{side}: the server in {cid[:12]} did not start")
        time.sleep(0.05)


def transfer(e: Engines, side: str, addr: str, port: int, mode: str, size: int,
             client: str | None = None) -> float:
    """MB/s of one transfer, the client on the host (on CLIENT_CPU) or in container
    ``client``."""
    args = [addr, str(port), mode, str(size)]
    if client is None:
        argv = [*e.pin, sys.executable, "-I", "-S", "-c", CLIENT, *args]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    else:
        cli, env = e.cli(side)
        p = subprocess.run([*cli, "exec", client, *e.python, "-c", CLIENT, *args], env=env,
                           capture_output=True, text=True, timeout=600, check=False)
    out = p.stdout + p.stderr
    if p.returncode:
        raise RuntimeError(f"{side}: {mode} {addr}:{port} failed: {out[-2000:]}")
    return size / float(out.split()[-1]) / 1e6


Results = dict[tuple[str, str], list[float]]


def cli_turn(e: Engines, side: str, results: Results) -> None:
    """The CLI rows of one side, once."""
    def add(row: str, value: float) -> None:
        results.setdefault((row, side), []).append(value)

    if side in CLI_SIDES:
        add("run (bridge)", e.time(side, ["run", "--rm", IMAGE, "true"])[0])
        add("run (none)", e.time(side, ["run", "--rm", "--network", "none", IMAGE,
                                        "true"])[0])
    add("run -p", e.time(side, ["run", "--rm", "-p", f"127.0.0.1:{free_port()}:80", IMAGE,
                                "true"])[0])
    if side not in CLI_SIDES:
        return
    cid = e.sh(side, ["run", "-d", IMAGE, "sleep", "1d"]).split()[-1]
    try:
        for _ in range(PAIRS):
            add("connect", e.time(side, ["network", "connect", NET, cid])[0])
            add("disconnect", e.time(side, ["network", "disconnect", NET, cid])[0])
    finally:
        e.sh(side, ["rm", "-f", cid])


@dataclass
class Servers:
    """One side's sink/source server, published on 127.0.0.1 and on the bridge's
    gateway address, and a container to run the client in."""

    side: str
    gateway: str
    local: int
    on_gateway: int
    ids: list[str]
    ip: str = ""  # the server container's own address on the bridge


def start_servers(e: Engines, side: str) -> Servers:
    gw = e.gateway(side)
    local, on_gw = free_port(), free_port()
    mount = ["-v", "/usr:/usr:ro"]
    srv = Servers(side, gw, local, on_gw, [])
    try:
        srv.ids.append(e.sh(side, [
            "run", "-d", *mount, *e.cpuset(SERVER_CPU), "-p",
            f"127.0.0.1:{local}:{SERVER_PORT}", "-p", f"{gw}:{on_gw}:{SERVER_PORT}", IMAGE,
            *e.python, "-c", SERVER, str(SERVER_PORT)]).split()[-1])
        # /bin/sleep: PATH would find the host's /usr/bin/sleep, which needs /lib64
        srv.ids.append(e.sh(side, ["run", "-d", *mount, *e.cpuset(CLIENT_CPU), IMAGE,
                                   "/bin/sleep", "1d"]).split()[-1])
        wait_ready(e, side, srv.ids[0])
        srv.ip = e.sh(side, ["inspect", "-f", "{{.NetworkSettings.IPAddress}}",
                             srv.ids[0]]).strip()
    except BaseException:
        if srv.ids:
            e.sh(side, ["rm", "-f", *srv.ids])
        raise
    return srv


def data_phase(e: Engines, sides: tuple[str, str], i: int, size: int,
               results: Results) -> None:
    """The MB/s rows of two sides, their transfers taking turns (first one side, then
    the other), both servers up the whole time."""
    servers: list[Servers] = []
    try:
        for side in sides:
            servers.append(start_servers(e, side))
        time.sleep(SETTLE)
        for k in range(TRANSFERS):
            for srv in servers if (i + k) % 2 == 0 else servers[::-1]:
                def add(row: str, value: float, side: str = srv.side) -> None:
                    results.setdefault((row, side), []).append(value)
                    if side == "pallet":  # and beside the transfers it took turns with
                        results.setdefault((row, f"pallet|{sides[1]}"), []).append(value)

                add("up 127.0.0.1", transfer(e, srv.side, "127.0.0.1", srv.local, "u", size))
                add("down 127.0.0.1", transfer(e, srv.side, "127.0.0.1", srv.local, "d",
                                               size))
                add("up gateway", transfer(e, srv.side, srv.gateway, srv.on_gateway, "u",
                                           size))
                add("ctr->gateway", transfer(e, srv.side, srv.gateway, srv.on_gateway, "u",
                                             size, srv.ids[1]))
                add("up container IP", transfer(e, srv.side, srv.ip, SERVER_PORT, "u", size))
    finally:
        for srv in servers:
            e.sh(srv.side, ["rm", "-f", *srv.ids])


def prepare(e: Engines) -> None:
    """The user-defined network on each engine, and a first run of each kind (the first
    container on a fresh bridge pays for things no later one does)."""
    e.sh("pallet", ["network", "create", "--subnet", str(e.net.pallet_net), "-o",
                    f"com.docker.network.bridge.name={PALLET_NET_BRIDGE}", NET])
    e.sh("docker", ["network", "create", "--subnet", str(e.net.docker_net), "-o",
                    f"com.docker.network.bridge.name={DOCKER_NET_BRIDGE}", NET])
    for side in ("pallet", "docker"):
        e.sh(side, ["run", "--rm", IMAGE, "true"])
        e.sh(side, ["run", "--rm", "-p", f"127.0.0.1:{free_port()}:80", IMAGE, "true"])


def clean_engines(e: Engines) -> None:
    """Every container and user-defined network of both engines (best effort: the
    teardown that follows says what is left)."""
    for side in ("pallet", "docker"):
        try:
            ids = e.sh(side, ["ps", "-aq"]).split()
            if ids:
                e.sh(side, ["rm", "-f", *ids])
            if NET in e.sh(side, ["network", "ls", "--format", "{{.Name}}"]).split():
                e.sh(side, ["network", "rm", NET])
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            print(f"clean-up of {side}: {exc}", file=sys.stderr)


def rounds(e: Engines, n: int, size: int) -> Results:
    """Each round: dockerd without the userland proxy (the CLI sides in rotating order,
    then pallet's and docker's transfers taking turns) and with it (docker+proxy's run
    -p, then pallet's and docker+proxy's transfers taking turns); which of the two comes
    first alternates, so dockerd restarts once a round."""
    results: Results = {}
    for i in range(n):
        for proxy in (False, True) if i % 2 == 0 else (True, False):
            e.use_proxy(proxy)
            had = {k: len(v) for k, v in results.items()}
            if proxy:
                time.sleep(SETTLE)
                cli_turn(e, "docker+proxy", results)
                data_phase(e, ("pallet", "docker+proxy"), i, size, results)
                shown_sides: tuple[str, ...] = ("pallet", "docker+proxy")
            else:
                for side in CLI_SIDES[i % 3:] + CLI_SIDES[:i % 3]:
                    time.sleep(SETTLE)  # the previous side's clean-up finishes first
                    cli_turn(e, side, results)
                data_phase(e, ("pallet", "docker"), i, size, results)
                shown_sides = CLI_SIDES
            for side in shown_sides:  # what this half measured
                shown = "  ".join(f"{row} {_fmt(results[(row, side)][-1], unit)}"
                                  for row, unit, _, _ in ROWS
                                  if len(results.get((row, side), ())) > had.get((row, side), 0))
                print(f"  round {i + 1} {side:<20} {shown}", flush=True)
    return results


def _fmt(x: float, unit: str) -> str:
    return f"{x:.3f} s" if unit == "s" else f"{x:.0f} MB/s"


def _cells(xs: list[float], unit: str) -> str:
    if unit == "s":
        return f"{statistics.median(xs):.3f} [{min(xs):.3f}-{max(xs):.3f}]"
    return f"{statistics.median(xs):.0f} [{min(xs):.0f}-{max(xs):.0f}]"


def report(results: dict[tuple[str, str], list[float]], n: int, size: int, fs: str) -> None:
    where = "a private journaled ext4" if fs == "loop" else "the host's /tmp"
    print(f"\n{n} rounds, alternating, stores on {where}; seconds of CLI wall time or MB/s "
          f"of {size >> 20} MiB transfers, median [min-max]\n")
    head = (f"{'row':<20}" + "".join(f"{s:>24}" for s in SIDES)
            + f"{'pallet/docker':>15}{'pallet/d+proxy':>16}   goal")
    print(head)
    for row, unit, sides, goal in ROWS:
        line = f"{row + (' s' if unit == 's' else ' MB/s'):<20}"
        for s in SIDES:
            xs = results.get((row, s))
            line += f"{_cells(xs, unit) if xs and s in sides else '-':>24}"
        ratios = []
        for other in ("docker", "docker+proxy"):
            # pallet's transfers beside the ones of ``other`` (the same half of a round)
            mine = results.get((row, f"pallet|{other}")) or results[(row, "pallet")]
            xs = results.get((row, other))
            ratios.append(statistics.median(mine) / statistics.median(xs)
                          if xs and other in sides else None)
        line += "".join(f"{f'{r:.2f}' if r is not None else '-':>15}" for r in ratios[:1])
        line += f"{f'{ratios[1]:.2f}' if ratios[1] is not None else '-':>16}"
        if goal is not None:
            limit, sense = goal
            verdicts = [f"{name}: {'met' if _meets(r, limit, sense) else 'NOT met'}"
                        for name, r in zip(("docker", "d+proxy"), ratios, strict=True)
                        if r is not None]
            line += f"   {sense} {limit:g}x  " + ", ".join(verdicts)
        print(line)


def _meets(ratio: float, limit: float, sense: str) -> bool:
    """Judged on the ratio as printed (two decimals), so "1.00" never reads "NOT met"."""
    shown = round(ratio, 2)
    return shown <= limit if sense == "<=" else shown >= limit


def versions(e: Engines) -> str:
    server, client = e.sh("docker", ["version", "-f",
                                     "{{.Server.Version}} {{.Client.Version}}"]).split()
    return f"dockerd {server} (runc, iptables {_out(['iptables', '-V']).split()[1]} " \
           f"nf_tables), docker CLI {client}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--mib", type=int, default=1024, help="MiB per transfer")
    parser.add_argument("--fs", choices=("loop", "host"), default="loop",
                        help="stores on a private journaled ext4 (default) or on /tmp's")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench.networks: run as root")
    for tool in ("dockerd", "docker", "runc", "iptables", "nft", "ip", "docker-proxy",
                 "taskset"):
        if not shutil.which(tool):
            sys.exit(f"bench.networks: {tool} is not installed "
                     "(apt-get install docker.io iptables nftables iproute2)")
    for name in (PALLET_BRIDGE, DOCKER_BRIDGE, PALLET_NET_BRIDGE, DOCKER_NET_BRIDGE):
        if os.path.exists(f"/sys/class/net/{name}"):
            sys.exit(f"bench.networks: {name} exists (another bench running, or a crashed one's)")
    before = record_host()
    subnets = free_subnets(4)
    net = Net(ipaddress.IPv4Interface(f"{subnets[0][1]}/24"),
              ipaddress.IPv4Interface(f"{subnets[1][1]}/24"),
              subnets[2], subnets[3], (str(subnets[1]), str(subnets[3])))
    traces = host_traces()
    bench = Bench(tempfile.mkdtemp(prefix=PREFIX), tempfile.mkdtemp(prefix=PREFIX, dir="/run"))
    e: Engines | None = None
    try:
        make_bridge(DOCKER_BRIDGE, net.docker_bip)
        phost, dhost = setup(bench, args.fs,
                             ("--bridge", PALLET_BRIDGE, "--bip", str(net.pallet_bip),
                              "--firewall-table", TABLE), dockerd_args(False))
        e = Engines(bench, [os.path.join(REPO, ".venv", "bin", "pallet"), "-H", phost],
                    phost, dhost, net, container_python(),
                    pinned={CLIENT_CPU, SERVER_CPU} <= os.sched_getaffinity(0))
        print(versions(e))
        print(f"bridges: pallet {PALLET_BRIDGE} {net.pallet_bip}, docker {DOCKER_BRIDGE} "
              f"{net.docker_bip}; {NET}: pallet {net.pallet_net}, docker {net.docker_net}",
              flush=True)
        import_image(bench, phost, dhost)
        prepare(e)
        e.timer = Timer([])
        results = rounds(e, args.rounds, args.mib << 20)
        report(results, args.rounds, args.mib << 20, args.fs)
    finally:
        if e is not None:
            if e.timer is not None:
                e.timer.close()
            clean_engines(e)
        try:
            teardown(bench, traces)
        finally:
            restore_host(before, net)
    return 0


if __name__ == "__main__":
    sys.exit(main())
