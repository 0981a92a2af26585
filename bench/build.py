"""Image builds: palletd against dockerd (Debian's docker.io), side by side.

Run as root:  .venv/bin/python -m bench.build [--rounds N] [--sides S,...] [--fs loop|host]

The set-up is bench.containers' (a private palletd and dockerd, stores on a private
journaled ext4, the same imported busybox image on both). The build context, in a temp
dir of the bench's, is a small file.txt and this Dockerfile:

    FROM bench/busybox:1
    RUN echo hello > /greeting
    COPY file.txt /file.txt

Every side speaks the classic builder's protocol (DOCKER_BUILDKIT=0: the client tars the
context up and POSTs /build): the pallet CLI against palletd (`pallet build`), the docker
CLI against palletd, the docker CLI against dockerd (its classic builder). The rows:

  build (no cache)    `build --no-cache -q -t benchbuild:1 CONTEXT`       goal <= 0.5x
  build (warm cache)  `build -q -t benchbuild:1 CONTEXT`, every step
                      cached (checked: the warm-up's image ID)            goal <= 1.0x

Before the rounds each side builds once: the warm-up, whose image (checked: /greeting and
/file.txt as the steps made them; tagged benchbuild:cache as well) keeps the cached steps'
intermediate images. A side whose warm-up fails (palletd before POST /build exists, say)
is left out with a message and the others go on; a side whose warm builds miss the cache
keeps its no-cache row only; --sides picks sides (`--sides docker` runs dockerd's alone).
Each round every side takes its turn, the order rotating from round to round, SETTLE
seconds of rest before each turn (dockerd goes on removing the build's containers after
it answers): the no-cache build, then `rmi` of its image and `image prune -f` (so the
cache holds the warm-up's chain alone, as in round 1), then the warm build. Wall time of
the client command; medians, min-max and pallet/docker. At the end the bench's images and
containers go from both engines, then the engines, their stores and the context, as in
the other benches.
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

from bench.containers import IMAGE, SETTLE, SIDES, cli, import_image
from bench.images import (
    PREFIX,
    REPO,
    Bench,
    Timer,
    host_traces,
    setup,
    teardown,
)

TAG = "benchbuild:1"
CACHE_TAG = "benchbuild:cache"  # the warm-up's image: keeps the cache's chain alive
DOCKERFILE = f"""\
FROM {IMAGE}
RUN echo hello > /greeting
COPY file.txt /file.txt
"""
FILE_TXT = "a small file for the build context\n" * 16
# (row, extra flags, goal: pallet/docker at most)
Row = tuple[str, list[str], float]
ROWS: tuple[Row, Row] = (("build (no cache)", ["--no-cache"], 0.5),
                         ("build (warm cache)", [], 1.0))

Results = dict[tuple[str, str], list[float]]


def make_context(bench: Bench) -> str:
    context = tempfile.mkdtemp(prefix="context-", dir=bench.base)
    with open(os.path.join(context, "Dockerfile"), "w") as f:
        f.write(DOCKERFILE)
    with open(os.path.join(context, "file.txt"), "w") as f:
        f.write(FILE_TXT)
    return context


def image_id(out: str) -> str:
    """The ID `build -q` printed (the last sha256: line: the docker CLI says on stderr
    that the legacy builder is deprecated)."""
    ids = [line.strip() for line in out.splitlines() if line.strip().startswith("sha256:")]
    if not ids:
        raise RuntimeError(f"build -q printed no image ID:\n{out[-2000:]}")
    return ids[-1]


class Sides:
    """The sides' commands and environments, and each daemon's warm-up image ID."""

    def __init__(self, bench: Bench, pallet: list[str], phost: str, dhost: str,
                 context: str) -> None:
        self.bench, self.pallet, self.phost, self.dhost = bench, pallet, phost, dhost
        self.context = context
        self.cache: dict[str, str] = {}  # DOCKER_HOST -> the warm-up's image ID
        self.uncached: set[str] = set()  # sides whose warm builds missed the cache
        self.timer = Timer([])

    def cli(self, side: str) -> tuple[list[str], str, dict[str, str]]:
        argv, host = cli(side, self.pallet, self.phost, self.dhost)
        return argv, host, {**self.bench.env, "DOCKER_HOST": host, "DOCKER_BUILDKIT": "0"}

    def build(self, side: str, flags: list[str]) -> tuple[float, str]:
        """Seconds and the image ID of one build."""
        argv, _, env = self.cli(side)
        t, out = self.timer.time([*argv, "build", *flags, "-q", "-t", TAG, self.context],
                                 env)
        return t, image_id(out)

    def sh(self, side: str, args: list[str]) -> str:
        argv, host, _ = self.cli(side)
        return self.bench.sh([*argv, *args], host, timeout=300)

    def warm_up(self, side: str) -> None:
        """The first build of a daemon fills its cache (tagged CACHE_TAG); a second side
        on the same daemon must find every step cached."""
        _, host, _ = self.cli(side)
        t, iid = self.build(side, [])
        if host not in self.cache:
            self.check_image(side)
            self.sh(side, ["tag", TAG, CACHE_TAG])
            self.cache[host] = iid
            print(f"  warm-up {side:<20} {t:.3f} s (fills the cache: {iid[:19]})", flush=True)
        elif self.cached(side, iid):
            print(f"  warm-up {side:<20} {t:.3f} s (cached)", flush=True)

    def check_image(self, side: str) -> None:
        """The image has what the steps put there (a build that skipped them would be
        fast for nothing)."""
        out = self.sh(side, ["run", "--rm", "--network", "none", TAG, "cat", "/greeting",
                             "/file.txt"])
        if out != "hello\n" + FILE_TXT:
            raise RuntimeError(f"{side}: the built image has {out[:200]!r} in /greeting "
                               "and /file.txt")

    def cached(self, side: str, iid: str) -> bool:
        """Whether a build without --no-cache gave the warm-up's image. If not, the side's
        warm builds are not what the row measures: they are left out of it (said once),
        and its no-cache builds go on."""
        want = self.cache[self.cli(side)[1]]
        if iid == want:
            return True
        if side not in self.uncached:
            self.uncached.add(side)
            print(f"{side}: a warm build made {iid}, not the cached {want}: some step "
                  "was not taken from the cache; its warm builds are left out", flush=True)
        return False

    def turn(self, side: str) -> dict[str, float]:
        """One side's no-cache build, the clean-up, then its warm build: their seconds
        by row (no warm row if that build missed the cache)."""
        (no_cache, flags, _), (warm, _, _) = ROWS
        t, iid = self.build(side, flags)
        if iid == self.cache[self.cli(side)[1]]:
            raise RuntimeError(f"{side}: the --no-cache build gave the cached image {iid}")
        times = {no_cache: t}
        # the no-cache chain goes (rmi takes its untagged parents too; prune what a builder
        # left dangling): the warm build finds the warm-up's chain alone every round
        self.sh(side, ["rmi", TAG])
        self.sh(side, ["image", "prune", "-f"])
        time.sleep(1)
        t, iid = self.build(side, [])
        if self.cached(side, iid):
            times[warm] = t
        return times

    def clean(self) -> None:
        """The bench's containers and images on both engines (best effort: the teardown
        that follows removes the stores anyway)."""
        for side in ("pallet", "docker"):
            try:
                ids = self.sh(side, ["ps", "-aq"]).split()
                if ids:
                    self.sh(side, ["rm", "-f", *ids])
                tags = self.sh(side, ["images", "--format",
                                      "{{.Repository}}:{{.Tag}}"]).split()
                ours = [t for t in (TAG, CACHE_TAG, IMAGE) if t in tags]
                if ours:
                    self.sh(side, ["rmi", "-f", *ours])
                self.sh(side, ["image", "prune", "-f"])
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                print(f"clean-up of {side}: {exc}", file=sys.stderr)


def failure(side: str, exc: Exception) -> tuple[str, str]:
    """What to print now (the command and the end of its output), and for the report."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    hint = " (does palletd serve POST /build yet?)" if side != "docker" else ""
    last = [line for line in lines if not line.startswith("See '")]  # pallet's usage hint
    return (f"{side}: build failed{hint}; left out:\n    " + "\n    ".join(lines[-6:]),
            f"{side}: {last[-1].strip() if last else 'failed'}{hint}")


def rounds(s: Sides, sides: list[str], n: int) -> tuple[Results, list[str]]:
    """The warm-ups, then ``n`` rounds; a side that fails is left out from then on."""
    results: Results = {}
    failed: list[str] = []
    for side in list(sides):
        try:
            s.warm_up(side)
        except RuntimeError as exc:
            now, later = failure(side, exc)
            print(now, flush=True)
            failed.append(later)
            sides.remove(side)
    for i in range(n):
        if not sides:
            break
        for side in sides[i % len(sides):] + sides[:i % len(sides)]:
            time.sleep(SETTLE)  # the previous side's clean-up finishes first
            try:
                times = s.turn(side)
            except RuntimeError as exc:
                now, later = failure(side, exc)
                print(now, flush=True)
                failed.append(later)
                sides.remove(side)
                continue
            for row, t in times.items():
                results.setdefault((row, side), []).append(t)
            shown = "  ".join(f"{row} {times[row]:.3f} s" if row in times
                              else f"{row} (not cached)" for row, _, _ in ROWS)
            print(f"  round {i + 1} {side:<20} {shown}", flush=True)
    return results, failed


def report(results: Results, n: int, fs: str, failed: list[str], uncached: set[str]) -> None:
    where = "a private journaled ext4" if fs == "loop" else "the host's /tmp"
    print(f"\n{n} rounds, alternating, stores on {where}; wall time of the client command, "
          "median [min-max]\n")
    print(f"{'operation':<20}" + "".join(f"{s:>24}" for s in SIDES)
          + f"{'pallet/docker':>15}   goal")
    for row, _, goal in ROWS:
        line = f"{row:<20}"
        for side in SIDES:
            xs = results.get((row, side))
            cell = f"{statistics.median(xs):.3f} s [{min(xs):.3f}-{max(xs):.3f}]" if xs \
                else "-"
            if row == ROWS[1][0] and side in uncached:
                cell = "missed the cache"  # some warm build did: no median of the rest
            line += f"{cell:>24}"
        mine, theirs = results.get((row, "pallet")), results.get((row, "docker"))
        if row == ROWS[1][0] and {"pallet", "docker"} & uncached:
            mine = None
        if mine and theirs:
            ratio = statistics.median(mine) / statistics.median(theirs)
            # judged on the ratio as printed, so "0.50" never reads "NOT met"
            verdict = "met" if round(ratio, 2) <= goal else "NOT met"
            line += f"{ratio:>15.2f}   <= {goal:g}x  {verdict}"
        else:
            line += f"{'-':>15}   <= {goal:g}x"
        print(line)
    if failed:
        print("\nsides left out:\n  " + "\n  ".join(failed))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sides", default=",".join(SIDES),
                        help=f"comma-separated, of {', '.join(SIDES)} (default: all)")
    parser.add_argument("--fs", choices=("loop", "host"), default="loop",
                        help="stores on a private journaled ext4 (default) or on /tmp's")
    args = parser.parse_args()
    sides = [x for x in args.sides.split(",") if x]
    if not sides or any(x not in SIDES for x in sides):
        parser.error(f"--sides: comma-separated, of {', '.join(SIDES)}")
    sides = [x for x in SIDES if x in sides]
    if os.geteuid() != 0:
        sys.exit("bench.build: run as root")
    for tool in ("dockerd", "docker", "runc"):
        if not shutil.which(tool):
            sys.exit(f"bench.build: {tool} is not installed (apt-get install docker.io)")
    traces = host_traces()
    bench = Bench(tempfile.mkdtemp(prefix=PREFIX), tempfile.mkdtemp(prefix=PREFIX, dir="/run"))
    s: Sides | None = None
    try:
        phost, dhost = setup(bench, args.fs)
        server, client = bench.sh(["docker", "version", "-f",
                                   "{{.Server.Version}} {{.Client.Version}}"], dhost).split()
        print(f"dockerd {server} (classic builder, runc), docker CLI {client}; "
              f"sides: {', '.join(sides)}", flush=True)
        import_image(bench, phost, dhost)
        pallet = [os.path.join(REPO, ".venv", "bin", "pallet"), "-H", phost]
        s = Sides(bench, pallet, phost, dhost, make_context(bench))
        results, failed = rounds(s, sides, args.rounds)
        report(results, args.rounds, args.fs, failed, s.uncached)
    finally:
        if s is not None:
            s.timer.close()
            s.clean()
        teardown(bench, traces)
    return 0


if __name__ == "__main__":
    sys.exit(main())
