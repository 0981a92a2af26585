"""pallet-runtime against runc and crun on the same busybox bundle, side by side.

Run as root:  .venv/bin/python -m bench.runtime [--rounds N]

Each round times, in turn, every runtime on the same operation (A B C A B C ...), and
the report gives medians, min-max and the ratio to runc. Operations:
  run      `RUNTIME run ID` of a container whose process is `true`
  lifecycle  `create` + `start` + `delete` (the process is `true`; delete after it exits),
           and each of the three verbs on its own line

Every runtime is driven by the same small timer process (spawn + wait, wall clock), so
they pay the same measuring overhead. crun 1.8 refuses this machine's hybrid cgroup
layout, so its timer runs in a private mount namespace with the cgroup2 mount removed
(as BENCHMARKS.md describes); runc and pallet run on the host's layout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

VERBS = ("create", "start", "delete")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A timer: reads one JSON list of argv lists per line, runs them one after another,
# answers the wall time of each in seconds (and the worst exit code).
TIMER = r"""
import json, os, subprocess, sys, time
for line in sys.stdin:
    cmds = json.loads(line)
    times = []
    worst = 0
    for argv in cmds:
        t = time.perf_counter()
        worst = max(worst, subprocess.run(argv, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL).returncode)
        times.append(time.perf_counter() - t)
    sys.stdout.write(json.dumps([times, worst]) + "\n")
    sys.stdout.flush()
"""


class Timer:
    def __init__(self, prefix: list[str]) -> None:
        self.proc = subprocess.Popen([*prefix, sys.executable, "-c", TIMER],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def time(self, cmds: list[list[str]]) -> list[float]:
        """Seconds each of ``cmds`` took, run one after another."""
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(cmds) + "\n")
        self.proc.stdin.flush()
        times, code = json.loads(self.proc.stdout.readline())
        if code != 0:
            raise RuntimeError(f"{cmds} failed with exit code {code}")
        return [float(t) for t in times]

    def close(self) -> None:
        assert self.proc.stdin
        self.proc.stdin.close()
        self.proc.wait()


def make_bundle(base: str) -> str:
    bundle = os.path.join(base, "bundle")
    os.makedirs(bundle)
    subprocess.run([os.path.join(REPO, "scripts", "busybox-rootfs"),
                    os.path.join(bundle, "rootfs")], check=True)
    runc = shutil.which("runc") or "runc"
    subprocess.run([runc, "spec"], cwd=bundle, check=True)
    with open(os.path.join(bundle, "config.json")) as f:
        spec = json.load(f)
    spec["process"]["terminal"] = False
    spec["process"]["args"] = ["true"]
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(spec, f)
    return bundle


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench.runtime: run as root")
    pallet = os.path.join(REPO, ".venv", "bin", "pallet-runtime")
    runtimes = {"pallet": pallet}
    for name in ("runc", "crun"):
        path = shutil.which(name)
        if path:
            runtimes[name] = path
        else:
            print(f"note: {name} not installed (apt-get install {name}); left out")
    base = tempfile.mkdtemp(prefix="pallet-bench-")
    # Runtime state where the runtimes keep it by default (/run), not on /tmp.
    state_base = tempfile.mkdtemp(prefix="pallet-bench-", dir="/run")
    timers: dict[str, Timer] = {}
    try:
        bundle = make_bundle(base)
        host = Timer([])
        for name in runtimes:
            timers[name] = host
        if "crun" in runtimes:
            timers["crun"] = Timer(["unshare", "-m", "--propagation", "private", "sh", "-c",
                                    "umount /sys/fs/cgroup/unified 2>/dev/null; exec \"$@\"",
                                    "sh"])
        results: dict[tuple[str, str], list[float]] = {}
        for i in range(args.rounds):
            for name, exe in runtimes.items():
                root = os.path.join(state_base, f"root-{name}")
                cid = f"bench-{name}-{i}"
                t = timers[name]
                results.setdefault(("run", name), []).extend(
                    t.time([[exe, "--root", root, "run", "--bundle", bundle, cid]]))
                cid2 = cid + "-l"
                verbs = t.time([
                    [exe, "--root", root, "create", "--bundle", bundle, cid2],
                    [exe, "--root", root, "start", cid2],
                    [exe, "--root", root, "delete", "--force", cid2],
                ])
                results.setdefault(("lifecycle", name), []).append(sum(verbs))
                for verb, seconds in zip(VERBS, verbs, strict=True):
                    results.setdefault((verb, name), []).append(seconds)
        report(results, list(runtimes), args.rounds)
    finally:
        for t in set(timers.values()):
            t.close()
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(state_base, ignore_errors=True)
    return 0


def report(results: dict[tuple[str, str], list[float]], names: list[str], rounds: int) -> None:
    print(f"\n{rounds} rounds, alternating; wall time per operation, median [min-max]\n")
    print(f"{'operation':<12}" + "".join(f"{n:>24}" for n in names) + "   pallet/runc")
    for op in ("run", "lifecycle", *(f"  {v}" for v in VERBS)):
        key = op.strip()
        row = f"{op:<12}"
        for n in names:
            xs = results[(key, n)]
            med, lo, hi = (statistics.median(xs) * 1000, min(xs) * 1000, max(xs) * 1000)
            cell = f"{med:.1f} ms [{lo:.0f}-{hi:.0f}]"
            row += f"{cell:>24}"
        if "runc" in names:
            ours = statistics.median(results[(key, "pallet")])
            row += f"   {ours / statistics.median(results[(key, 'runc')]):.2f}"
        print(row)


if __name__ == "__main__":
    sys.exit(main())
