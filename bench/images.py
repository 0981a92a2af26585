"""Cold pull and first push of a Debian minbase image: palletd against dockerd and skopeo.

Run as root:  .venv/bin/python -m bench.images [--rounds N] [--fs loop|host]

Everything it uses is private and goes at the end: registries (Debian's docker-registry
with a config of its own on 127.0.0.1), a palletd and a dockerd 20.10 (own sockets, data
and exec roots; dockerd with no bridge and no firewall rules), a private DOCKER_CONFIG and
skopeo blob-info cache, temp dirs named pallet-bench-*. The stores live on a private
journaled ext4 in a loop-mounted sparse file (--fs loop, the default; make_fs says why)
or in /tmp itself (--fs host).

The image: `pallet image bootstrap debian:bookworm` (debootstrap minbase, ~50 s) is one
plain-tar layer; palletd pushes it as it is, dockerd pulls it and pushes it back as
`bench/debian:src`, so the registry holds the gzip layer docker makes (as an image on a
public registry would be) and every client pulls the same bytes.

Each round runs every client in turn, the order rotating from round to round:
  pull  into a store without the image or any of its blobs or layers (`image prune -a`
        before; checked): `pallet pull`, `docker pull` against palletd, `docker pull`
        against dockerd, `skopeo copy docker://… oci:DIR` into a fresh dir
  push  what that client just pulled, to a fresh repository of a registry started for
        this push alone: no client knows a repository there to mount from and the
        registry has none of the blobs, so every layer goes up (checked: no "Mounted
        from", no "already exists")
Wall time of the client command; the report gives medians, min-max and pallet/docker.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREFIX = "pallet-bench-"
SOURCE = "bench/debian:src"
CLIENTS = ("pallet", "pallet+docker-cli", "docker", "skopeo")
MANIFEST_ACCEPT = ", ".join((
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
))

# A timer: reads one JSON [argv, env] per line, runs it, answers [wall seconds, exit
# code, output]. skopeo's runs inside a mount namespace (its blob-info cache is private).
TIMER = r"""
import json, subprocess, sys, time
for line in sys.stdin:
    argv, env = json.loads(line)
    t = time.perf_counter()
    p = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, errors="replace")
    elapsed = time.perf_counter() - t
    sys.stdout.write(json.dumps([elapsed, p.returncode, p.stdout]) + "\n")
    sys.stdout.flush()
"""


class Timer:
    def __init__(self, prefix: list[str]) -> None:
        self.proc = subprocess.Popen([*prefix, sys.executable, "-c", TIMER],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def time(self, argv: list[str], env: dict[str, str]) -> tuple[float, str]:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps([argv, env]) + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline()
        if not reply:
            raise RuntimeError(f"timer exited ({argv[0]})")
        elapsed, code, out = json.loads(reply)
        if code != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {code}:\n{out[-3000:]}")
        return float(elapsed), str(out)

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


@dataclass
class Registry:
    host: str
    dir: str
    proc: subprocess.Popen[bytes]

    def manifest(self, repo: str, ref: str) -> dict[str, object]:
        req = urllib.request.Request(f"http://{self.host}/v2/{repo}/manifests/{ref}",
                                     headers={"Accept": MANIFEST_ACCEPT})
        with urllib.request.urlopen(req, timeout=10) as resp:
            doc: dict[str, object] = json.load(resp)
            return doc

    def blob_head(self, repo: str, digest: str) -> bytes:
        with urllib.request.urlopen(f"http://{self.host}/v2/{repo}/blobs/{digest}",
                                    timeout=10) as resp:
            head: bytes = resp.read(2)
            return head


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_registry(base: str) -> Registry:
    directory = tempfile.mkdtemp(prefix="registry-", dir=base)
    for _ in range(3):  # the port may be taken before the registry binds it
        port = free_port()
        config = {  # JSON is YAML
            "version": 0.1,
            "log": {"level": "error", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": os.path.join(directory, "data")},
                        "delete": {"enabled": True}},
            "http": {"addr": f"127.0.0.1:{port}", "secret": uuid.uuid4().hex},
        }
        with open(os.path.join(directory, "config.yml"), "w") as f:
            json.dump(config, f)
        with open(os.path.join(directory, "registry.log"), "ab") as log:
            proc = subprocess.Popen(["docker-registry", "serve", "config.yml"], cwd=directory,
                                    stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1):
                    return Registry(f"127.0.0.1:{port}", directory, proc)
            except OSError:
                time.sleep(0.02)
        stop(proc)
    raise RuntimeError(f"docker-registry did not start; see {directory}/registry.log")


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _ping(sock: str) -> bool:
    class Conn(http.client.HTTPConnection):
        def connect(self) -> None:
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(2)
            s.connect(sock)
            self.sock = s

    conn = Conn("localhost")
    try:
        conn.request("GET", "/_ping")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


@dataclass
class Bench:
    base: str  # /tmp/pallet-bench-*
    run: str  # /run/pallet-bench-*: sockets and exec roots
    work: str = ""  # data roots, registries, skopeo dirs: base/fs (--fs loop) or base
    mounted: bool = False
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    source: Registry | None = None

    def sh(self, argv: list[str], host: str, timeout: float = 900) -> str:
        env = {**self.env, "DOCKER_HOST": host}
        p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout,
                           check=False)
        if p.returncode:
            raise RuntimeError(f"{' '.join(argv)} exited {p.returncode}:\n{p.stdout}{p.stderr}")
        return p.stdout

    def daemon(self, argv: list[str], sock: str, log: str) -> None:
        with open(log, "ab") as out:  # a restarted daemon adds to its log
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, cwd=REPO)
        self.procs.append(proc)
        deadline = time.monotonic() + 60
        while not (os.path.exists(sock) and _ping(sock)):
            if proc.poll() is not None or time.monotonic() > deadline:
                with open(log, errors="replace") as f:
                    raise RuntimeError(f"{argv[0]} did not start:\n{f.read()[-3000:]}")
            time.sleep(0.1)


# dockerd's flags unless a bench says otherwise: no bridge and no firewall rules
DOCKERD_NO_NETWORK = ("--iptables=false", "--ip6tables=false", "--bridge=none",
                      "--ip-forward=false", "--ip-masq=false")


def start_palletd(bench: Bench, args: Sequence[str] = ()) -> str:
    """palletd with ``args`` added: its DOCKER_HOST value."""
    psock = os.path.join(bench.run, "pallet.sock")
    bench.daemon([sys.executable, "-m", "pallet.api.daemon", "-H", f"unix://{psock}",
                  "--data-root", os.path.join(bench.work, "palletd"),
                  "--exec-root", os.path.join(bench.run, "palletd"), *args],
                 psock, os.path.join(bench.work, "palletd.log"))
    return f"unix://{psock}"


def start_dockerd(bench: Bench, args: Sequence[str] = DOCKERD_NO_NETWORK) -> str:
    """dockerd with ``args`` added: its DOCKER_HOST value."""
    dsock = os.path.join(bench.run, "docker.sock")
    bench.daemon(["dockerd", "--host", f"unix://{dsock}",
                  "--data-root", os.path.join(bench.work, "dockerd"),
                  "--exec-root", os.path.join(bench.run, "dockerd"),
                  "--pidfile", os.path.join(bench.run, "dockerd.pid"), *args],
                 dsock, os.path.join(bench.work, "dockerd.log"))
    return f"unix://{dsock}"


def start(bench: Bench, pallet_args: Sequence[str] = (),
          docker_args: Sequence[str] = DOCKERD_NO_NETWORK) -> tuple[str, str]:
    """palletd and dockerd: their DOCKER_HOST values."""
    return start_palletd(bench, pallet_args), start_dockerd(bench, docker_args)


def prepare_source(bench: Bench, pallet: list[str], phost: str, dhost: str) -> str:
    """bench/debian:src in the source registry, gzip as dockerd pushes it; a summary.

    The plain-tar image goes through a staging registry: dockerd pushing to the registry
    it pulled from would find the plain blob there and name it in a manifest as gzip."""
    assert bench.source
    t = time.perf_counter()
    bench.sh([*pallet, "image", "bootstrap", "debian:bookworm"], phost)
    bootstrap = time.perf_counter() - t
    staging = start_registry(bench.work)
    try:
        raw_ref = f"{staging.host}/bench/debian:raw"
        bench.sh([*pallet, "tag", "debian:bookworm", raw_ref], phost)
        t = time.perf_counter()
        bench.sh([*pallet, "push", raw_ref], phost)
        raw_push = time.perf_counter() - t
        raw: list[dict[str, object]] = staging.manifest(  # type: ignore[assignment]
            "bench/debian", "raw")["layers"]
        bench.sh(["docker", "pull", raw_ref], dhost)
    finally:
        stop(staging.proc)
        shutil.rmtree(staging.dir, ignore_errors=True)
    src_ref = f"{bench.source.host}/{SOURCE}"
    bench.sh(["docker", "tag", raw_ref, src_ref], dhost)
    check_cold("docker push of the source", bench.sh(["docker", "push", src_ref], dhost))
    unpacked = int(bench.sh(["docker", "image", "inspect", "-f", "{{.Size}}", src_ref], dhost))
    layers: list[dict[str, object]] = bench.source.manifest(  # type: ignore[assignment]
        "bench/debian", "src")["layers"]
    kinds = sorted({str(x["mediaType"]).rsplit(".", 1)[-1] for x in layers})
    for x in layers:  # what the bytes are, whatever the manifest calls them
        if bench.source.blob_head("bench/debian", str(x["digest"])) != b"\x1f\x8b":
            raise RuntimeError(f"source layer {x['digest']} is not gzip")
    return (f"source image {SOURCE}: {len(layers)} layer(s), {'/'.join(kinds)}, "
            f"{sum(int(str(x['size'])) for x in layers) / 1e6:.1f} MB in the registry, "
            f"{unpacked / 1e6:.1f} MB unpacked (bootstrap {bootstrap:.0f} s; palletd pushed "
            f"its plain-tar layer, {sum(int(str(x['size'])) for x in raw) / 1e6:.1f} MB, "
            f"in {raw_push:.1f} s)")


def clean_pallet(bench: Bench, pallet: list[str], host: str) -> None:
    bench.sh([*pallet, "image", "prune", "-a", "-f"], host)
    data = os.path.join(bench.work, "palletd")
    left = [n for d in ("blobs/sha256", "layers") if os.path.isdir(os.path.join(data, d))
            for n in os.listdir(os.path.join(data, d))]
    if bench.sh([*pallet, "images", "-aq"], host).strip() or left:
        raise RuntimeError(f"palletd kept images, blobs or layers after prune: {left}")


def clean_docker(bench: Bench, host: str) -> None:
    bench.sh(["docker", "image", "prune", "-a", "-f"], host)
    layerdb = os.path.join(bench.work, "dockerd", "image", "overlay2", "layerdb", "sha256")
    left = os.listdir(layerdb) if os.path.isdir(layerdb) else []
    if bench.sh(["docker", "images", "-aq"], host).strip() or left:
        raise RuntimeError(f"dockerd kept images or layers after prune: {left}")


def check_cold(what: str, out: str) -> None:
    for phrase in ("Already exists", "already exists", "Mounted from", "Skipping blob"):
        if phrase in out:
            raise RuntimeError(f"{what} was not cold ({phrase!r}):\n{out[-2000:]}")


def round_of(bench: Bench, i: int, client: str, timers: dict[str, Timer], pallet: list[str],
             phost: str, dhost: str) -> tuple[float, float]:
    """(pull seconds, push seconds) of one client in round ``i``."""
    assert bench.source
    src = f"{bench.source.host}/{SOURCE}"
    dest = start_registry(bench.work)
    target = f"{dest.host}/bench/fresh-{client.replace('+', '-')}-{i}:latest"
    try:
        if client == "skopeo":
            layout = tempfile.mkdtemp(prefix="skopeo-", dir=bench.work)
            env = {**bench.env}
            try:
                pull, out = timers["skopeo"].time(
                    ["skopeo", "copy", "--src-tls-verify=false", f"docker://{src}",
                     f"oci:{layout}:src"], env)
                check_cold("skopeo pull", out)
                push, out = timers["skopeo"].time(
                    ["skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:src",
                     f"docker://{target}"], env)
                check_cold("skopeo push", out)
            finally:
                shutil.rmtree(layout, ignore_errors=True)
            return pull, push
        cli = pallet if client == "pallet" else ["docker"]
        host = dhost if client == "docker" else phost
        env = {**bench.env, "DOCKER_HOST": host}
        pull, out = timers["host"].time([*cli, "pull", src], env)
        check_cold(f"{client} pull", out)
        bench.sh([*cli, "tag", src, target], host)
        push, out = timers["host"].time([*cli, "push", target], env)
        check_cold(f"{client} push", out)
        if client == "docker":
            clean_docker(bench, host)
        else:
            clean_pallet(bench, pallet, host)
        return pull, push
    finally:
        stop(dest.proc)
        shutil.rmtree(dest.dir, ignore_errors=True)


def skopeo_timer(bench: Bench) -> Timer:
    """A timer in a mount namespace where skopeo's blob-info cache (which remembers where
    blobs were seen, to mount or skip them) is an empty private dir."""
    cache = tempfile.mkdtemp(prefix="skopeo-cache-", dir=bench.work)
    over = "/var/lib/containers" if os.path.isdir("/var/lib/containers") else "/var/lib"
    return Timer(["unshare", "-m", "--propagation", "private", "sh", "-c",
                  f'mount --bind "$0" {over} && exec "$@"', cache])


def make_fs(bench: Bench, kind: str) -> None:
    """Where the stores live. This VM's root ext4 has no journal: ext4 then skips inodes
    freed in the last minute or more when it allocates one (recently_deleted()), so after
    the churn of a few pulls and prunes every file created costs ~0.5-1 ms (a journaled
    ext4 here: 0.06 ms) and ~8,000 files swamp what the engines themselves do. "loop"
    (the default) puts them on a private journaled ext4 in a loop-mounted sparse file."""
    if kind == "host":
        bench.work = bench.base
        return
    image, bench.work = os.path.join(bench.base, "fs.img"), os.path.join(bench.base, "fs")
    with open(image, "wb") as f:
        f.truncate(8 << 30)
    subprocess.run(["mkfs.ext4", "-q", "-F", image], check=True)
    os.mkdir(bench.work)
    subprocess.run(["mount", "-o", "loop", image, bench.work], check=True)
    bench.mounted = True


def host_traces() -> list[str]:
    """What dockerd makes outside its roots, whatever flags it gets."""
    return [p for p in ("/run/docker/plugins", "/run/docker", "/etc/docker/key.json",
                        "/etc/docker") if os.path.lexists(p)]


def remove_traces(before: list[str]) -> None:
    for path in ("/etc/docker/key.json", "/run/docker/plugins", "/run/docker", "/etc/docker"):
        if path not in before and os.path.lexists(path):
            try:
                os.unlink(path) if path.endswith(".json") else os.rmdir(path)
            except OSError:
                pass  # not empty: someone else's


def leftovers(bench: Bench) -> list[str]:
    found = []
    with open("/proc/self/mountinfo") as f:
        found += [f"mount: {line.split()[4]}" for line in f
                  if bench.base in line or bench.run in line]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if (bench.base in cmd or bench.run in cmd) and int(pid) != os.getpid():
            found.append(f"process {pid}: {cmd[:200]}")
    for top, dirs, _ in os.walk("/sys/fs/cgroup"):
        found += [f"cgroup: {top}/{d}" for d in dirs if PREFIX in d]
    loops = subprocess.run(["losetup", "-j", os.path.join(bench.base, "fs.img")],
                           capture_output=True, text=True, check=False).stdout.split("\n")
    return found + [f"loop device: {line}" for line in loops if line]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fs", choices=("loop", "host"), default="loop",
                        help="stores on a private journaled ext4 (default) or on /tmp's")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench.images: run as root")
    for tool in ("dockerd", "docker", "docker-registry", "skopeo", "debootstrap"):
        if not shutil.which(tool):
            sys.exit(f"bench.images: {tool} is not installed "
                     "(apt-get install docker.io docker-registry skopeo debootstrap)")
    traces = host_traces()
    bench = Bench(tempfile.mkdtemp(prefix=PREFIX), tempfile.mkdtemp(prefix=PREFIX, dir="/run"))
    pallet = [os.path.join(REPO, ".venv", "bin", "pallet")]
    timers: dict[str, Timer] = {}
    try:
        phost, dhost = setup(bench, args.fs)
        pallet += ["-H", phost]
        bench.source = start_registry(bench.work)
        bench.procs.append(bench.source.proc)
        versions = bench.sh(["docker", "version", "-f", "{{.Server.Version}} {{.Client.Version}}"],
                            dhost).split()
        skopeo = bench.sh(["skopeo", "--version"], dhost).split()[-1]
        print(f"dockerd {versions[0]}, docker CLI {versions[1]}, skopeo {skopeo}")
        print(prepare_source(bench, pallet, phost, dhost), flush=True)
        clean_pallet(bench, pallet, phost)
        clean_docker(bench, dhost)
        timers = {"host": Timer([]), "skopeo": skopeo_timer(bench)}
        results: dict[tuple[str, str], list[float]] = {}
        for i in range(args.rounds):
            order = CLIENTS[i % len(CLIENTS):] + CLIENTS[:i % len(CLIENTS)]
            for client in order:
                pull, push = round_of(bench, i, client, timers, pallet, phost, dhost)
                results.setdefault(("pull", client), []).append(pull)
                results.setdefault(("push", client), []).append(push)
                print(f"  round {i + 1} {client:<18} pull {pull:6.2f} s  push {push:6.2f} s",
                      flush=True)
        report(results, args.rounds, args.fs)
    finally:
        for t in timers.values():
            t.close()
        teardown(bench, traces)
    return 0


def setup(bench: Bench, fs: str, pallet_args: Sequence[str] = (),
          docker_args: Sequence[str] = DOCKERD_NO_NETWORK) -> tuple[str, str]:
    """The stores (make_fs), a private docker config, palletd and dockerd: their hosts."""
    make_fs(bench, fs)
    config = os.path.join(bench.work, "docker-config")
    os.mkdir(config, 0o700)
    bench.env = {**os.environ, "DOCKER_CONFIG": config}
    return start(bench, pallet_args, docker_args)


def teardown(bench: Bench, traces: list[str]) -> None:
    """Stop everything the bench started (palletd's monitor and its containers too),
    unmount, and remove the bench's dirs unless something is left (then say what)."""
    for proc in reversed(bench.procs):
        stop(proc)
    stop_monitor(os.path.join(bench.run, "palletd"))
    if bench.mounted:
        subprocess.run(["umount", bench.work], check=False)
    remove_traces(traces)
    left = leftovers(bench)
    if not left:  # never remove what a live mount still shows
        shutil.rmtree(bench.base, ignore_errors=True)
        shutil.rmtree(bench.run, ignore_errors=True)
    else:
        print("LEFT BEHIND:\n  " + "\n  ".join(left), file=sys.stderr)


def stop_monitor(exec_root: str) -> None:
    """Shut palletd's pallet-monitor down, its containers with it (palletd started it)."""
    sys.path.insert(0, REPO)
    from pallet.engine.monitorclient import MonitorClient

    MonitorClient(exec_root).shutdown()

def report(results: dict[tuple[str, str], list[float]], rounds: int, fs: str) -> None:
    where = "a private journaled ext4" if fs == "loop" else "the host's /tmp"
    print(f"\n{rounds} rounds, alternating, stores on {where}; wall time of the client "
          "command, median [min-max]\n")
    print(f"{'operation':<12}" + "".join(f"{n:>22}" for n in CLIENTS) + "   pallet/docker")
    for op in ("pull", "push"):
        row = f"{op:<12}"
        for n in CLIENTS:
            xs = results[(op, n)]
            row += f"{f'{statistics.median(xs):.2f} s [{min(xs):.2f}-{max(xs):.2f}]':>22}"
        ratio = statistics.median(results[(op, "pallet")]) / statistics.median(
            results[(op, "docker")])
        print(f"{row}   {ratio:.2f}")


if __name__ == "__main__":
    sys.exit(main())
