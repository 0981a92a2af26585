"""Containers through the engine: palletd against dockerd (Debian's docker.io), side by side.

Run as root:  .venv/bin/python -m bench.containers [--rounds N] [--idle N]

A private palletd and a private dockerd (own sockets, data and exec roots, no bridge,
no firewall rules; runc from Debian is dockerd's runtime), their stores on a private
journaled ext4 (--fs loop, the default; bench.images.make_fs says why), both given the
same busybox image (`docker import` of the busybox-static rootfs). Every container runs with
`--network none` on both sides: the same network mode. Each round times, in turn
(the order rotating from round to round):

  run        `run --rm busybox true`: the pallet CLI against palletd, the docker CLI
             against palletd, the docker CLI against dockerd
  run -d x50 50 sequential `run -d --network none busybox sleep 1d` (then removed)
  exec       `exec <running container> true`
  ps         `ps` with those 50 running

and, once, the engine's memory per idle container: the PSS of palletd + pallet-monitor
and its keeper (dockerd + containerd + the shims) before and after starting --idle containers
(default 200), divided by their number. Medians, min-max and the pallet/docker ratio.
Before each side's turn the bench waits SETTLE seconds for the previous side's clean-up
(dockerd goes on removing containers after `rm -f` answers).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from bench.images import (
    PREFIX,
    REPO,
    Bench,
    Timer,
    host_traces,
    setup,
    teardown,
)

IMAGE = "bench/busybox:1"
SETTLE = 5.0
SIDES = ("pallet", "docker-cli->palletd", "docker")


def cli(side: str, pallet: list[str], phost: str, dhost: str) -> tuple[list[str], str]:
    """The client command and the daemon it talks to, for one side."""
    if side == "pallet":
        return pallet, phost
    return ["docker"], (phost if side == "docker-cli->palletd" else dhost)


def import_image(bench: Bench, phost: str, dhost: str) -> None:
    rootfs = os.path.join(bench.base, "busybox-rootfs")
    subprocess.run([os.path.join(REPO, "scripts", "busybox-rootfs"), rootfs], check=True,
                   stdout=subprocess.DEVNULL)
    tar = subprocess.run(["tar", "-C", rootfs, "-c", "."], capture_output=True,
                         check=True).stdout
    for host in (phost, dhost):
        subprocess.run(["docker", "import", "-c", 'CMD ["sh"]', "-", IMAGE], input=tar,
                       env={**bench.env, "DOCKER_HOST": host}, check=True,
                       capture_output=True)


def pss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total


def engine_pids(side: str, bench: Bench) -> list[int]:
    """palletd + pallet-monitor, or dockerd + containerd + every shim: by their argv."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        text = b" ".join(argv).decode(errors="replace")
        if side == "pallet":
            if ("pallet.api.daemon" in text or "pallet.monitor" in text) and \
                    os.path.join(bench.run, "palletd") in text:
                out.append(int(pid))
        elif (("dockerd" in text and bench.run in text)
              or ("containerd" in text and os.path.join(bench.run, "dockerd") in text)):
            out.append(int(pid))
    return out


def shims(bench: Bench) -> list[int]:
    """containerd-shim processes (their argv names the namespace, not our dirs)."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                text = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "containerd-shim" in text and "-namespace moby" in text:
            out.append(int(pid))
    return out


def idle_memory(bench: Bench, side: str, pallet: list[str], phost: str, dhost: str,
                n: int) -> float:
    """MiB of engine PSS per idle container."""
    argv, host = cli(side, pallet, phost, dhost)
    env = {**bench.env, "DOCKER_HOST": host}
    before_shims = set(shims(bench))

    def total() -> int:
        pids = engine_pids(side, bench)
        if side == "docker":
            pids += [p for p in shims(bench) if p not in before_shims]
        return pss_kib(pids)

    time.sleep(1)
    before = total()
    ids = []
    for _ in range(n):
        ids.append(subprocess.run([*argv, "run", "-d", "--network", "none", IMAGE, "sleep",
                                   "1d"], env=env, capture_output=True, text=True,
                                  check=True).stdout.strip())
    time.sleep(2)
    after = total()
    subprocess.run([*argv, "rm", "-f", *ids], env=env, capture_output=True, check=True)
    return (after - before) / 1024 / n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--idle", type=int, default=200)
    parser.add_argument("--fs", choices=("loop", "host"), default="loop",
                        help="stores on a private journaled ext4 (default) or on /tmp's")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench.containers: run as root")
    for tool in ("dockerd", "docker", "runc"):
        if not shutil.which(tool):
            sys.exit(f"bench.containers: {tool} is not installed (apt-get install docker.io)")
    traces = host_traces()
    bench = Bench(tempfile.mkdtemp(prefix=PREFIX), tempfile.mkdtemp(prefix=PREFIX, dir="/run"))
    pallet = [os.path.join(REPO, ".venv", "bin", "pallet")]
    timer = None
    try:
        # Both engines' stores on a journaled ext4 (bench.images.make_fs says why): on
        # this VM's journal-less root every round of create/remove made the next slower.
        phost, dhost = setup(bench, args.fs)
        pallet += ["-H", phost]
        import_image(bench, phost, dhost)
        timer = Timer([])
        results: dict[tuple[str, str], list[float]] = {}
        for i in range(args.rounds):
            order = SIDES[i % len(SIDES):] + SIDES[:i % len(SIDES)]
            for side in order:
                argv, host = cli(side, pallet, phost, dhost)
                env = {**bench.env, "DOCKER_HOST": host}
                # Let the previous side's clean-up finish (dockerd and containerd go on
                # removing containers and snapshots after `rm -f` answers): every side
                # is timed on a machine at rest.
                time.sleep(SETTLE)
                t, _ = timer.time([*argv, "run", "--rm", "--network", "none", IMAGE, "true"],
                                  env)
                results.setdefault(("run", side), []).append(t)
                t0 = time.perf_counter()
                ids = []
                for _ in range(50):
                    _, out = timer.time([*argv, "run", "-d", "--network", "none", IMAGE,
                                         "sleep", "1d"], env)
                    ids.append(out.strip().splitlines()[-1])
                results.setdefault(("run -d x50", side), []).append(time.perf_counter() - t0)
                t, _ = timer.time([*argv, "exec", ids[0], "true"], env)
                results.setdefault(("exec", side), []).append(t)
                t, _ = timer.time([*argv, "ps"], env)
                results.setdefault(("ps (50 up)", side), []).append(t)
                subprocess.run([*argv, "rm", "-f", *ids], env=env, capture_output=True,
                               check=True)
                print(f"  round {i + 1} {side:<20} run {results[('run', side)][-1]:.3f} s"
                      f"  run -d x50 {results[('run -d x50', side)][-1]:.2f} s", flush=True)
        memory = {side: idle_memory(bench, side, pallet, phost, dhost, args.idle)
                  for side in ("pallet", "docker")}
        report(results, args.rounds, memory, args.idle)
    finally:
        if timer is not None:
            timer.close()
        teardown(bench, traces)
    return 0


def report(results: dict[tuple[str, str], list[float]], rounds: int,
           memory: dict[str, float], idle: int) -> None:
    print(f"\n{rounds} rounds, alternating; wall time of the client command, "
          "median [min-max]\n")
    print(f"{'operation':<12}" + "".join(f"{n:>24}" for n in SIDES) + "   pallet/docker")
    for op in ("run", "run -d x50", "exec", "ps (50 up)"):
        row = f"{op:<12}"
        for n in SIDES:
            xs = results[(op, n)]
            row += f"{f'{statistics.median(xs):.3f} s [{min(xs):.3f}-{max(xs):.3f}]':>24}"
        ratio = statistics.median(results[(op, "pallet")]) / statistics.median(
            results[(op, "docker")])
        print(f"{row}   {ratio:.2f}")
    print(f"\nengine PSS per idle container ({idle} `sleep` containers): "
          f"pallet {memory['pallet']:.3f} MiB, docker {memory['docker']:.3f} MiB, "
          f"ratio {memory['pallet'] / memory['docker']:.2f}")


if __name__ == "__main__":
    sys.exit(main())
