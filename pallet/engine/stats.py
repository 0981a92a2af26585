"""Container statistics in the Engine API's shape, and `top`, from the container's cgroup.

The cgroup is read through the runtime's stats readers (v1, v2 or hybrid alike) and
mapped to what dockerd answers (reference/dockerd-20.10/container-stats.json):
cpu_stats/precpu_stats, memory_stats, pids_stats, blkio_stats, networks.
"""

from __future__ import annotations

import os
import time
from typing import Any

from pallet.engine.system import mem_total
from pallet.errors import InvalidState, NotFound
from pallet.monitor import logfile
from pallet.runtime import state
from pallet.runtime.cgroups import Cgroup

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def cgroup_of(runtime_root: str, cid: str) -> tuple[Cgroup, int]:
    """The running container's cgroup and init pid; InvalidState if it is not running."""
    try:
        ctr = state.load(runtime_root, cid)
    except NotFound:
        raise InvalidState(f"Container {cid} is not running", obj=cid) from None
    if not ctr.cgroup_paths or ctr.status() == state.STOPPED:
        raise InvalidState(f"Container {cid} is not running", obj=cid)
    return Cgroup.from_paths(ctr.cgroup_paths), ctr.pid


def system_cpu_usage() -> int:
    """The host's CPU time in ns since boot (/proc/stat's cpu line), as dockerd reports."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu "):
                return sum(int(x) for x in line.split()[1:8]) * 1_000_000_000 // _CLK_TCK
    return 0


def _networks(pid: int) -> dict[str, dict[str, int]]:
    """Counters of the container's interfaces but lo, from its netns's /proc/net/dev."""
    out = {}
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            lines = f.readlines()[2:]
    except OSError:
        return {}
    for line in lines:
        name, _, rest = line.partition(":")
        name = name.strip()
        if name == "lo":
            continue
        v = [int(x) for x in rest.split()]
        out[name] = {"rx_bytes": v[0], "rx_packets": v[1], "rx_errors": v[2],
                     "rx_dropped": v[3], "tx_bytes": v[8], "tx_packets": v[9],
                     "tx_errors": v[10], "tx_dropped": v[11]}
    return out


def _blkio(raw: dict[str, Any]) -> dict[str, Any]:
    def entries(key: str) -> list[dict[str, Any]]:
        return [{"major": e["major"], "minor": e["minor"], "op": e["op"], "value": e["value"]}
                for e in raw.get(key) or []]

    return {"io_service_bytes_recursive": entries("ioServiceBytesRecursive"),
            "io_serviced_recursive": entries("ioServicedRecursive"),
            "io_queue_recursive": [], "io_service_time_recursive": [],
            "io_wait_time_recursive": [], "io_merged_recursive": [], "io_time_recursive": [],
            "sectors_recursive": []}


def sample(runtime_root: str, cid: str, name: str) -> dict[str, Any]:
    """One reading of the container's counters in dockerd's shape (no precpu yet)."""
    cg, pid = cgroup_of(runtime_root, cid)
    raw: dict[str, Any] = cg.stats()
    now = time.time()
    cpu = raw.get("cpu") or {}
    usage = cpu.get("usage") or {}
    thr = cpu.get("throttling") or {}
    cpu_stats: dict[str, Any] = {
        "cpu_usage": {"total_usage": usage.get("total", 0),
                      "usage_in_kernelmode": usage.get("kernel", 0),
                      "usage_in_usermode": usage.get("user", 0)},
        "system_cpu_usage": system_cpu_usage(),
        "online_cpus": os.cpu_count() or 1,
        "throttling_data": {"periods": thr.get("periods", 0),
                            "throttled_periods": thr.get("throttledPeriods", 0),
                            "throttled_time": thr.get("throttledTime", 0)},
    }
    if usage.get("percpu"):
        cpu_stats["cpu_usage"]["percpu_usage"] = usage["percpu"]
    mem = raw.get("memory") or {}
    mu = mem.get("usage") or {}
    limit = int(mu.get("limit") or 0)
    hostmem = mem_total()
    memory_stats = {"usage": mu.get("usage", 0), "stats": mem.get("raw") or {},
                    "limit": hostmem if not limit or limit > hostmem else limit}
    if mu.get("max"):
        memory_stats["max_usage"] = mu["max"]
    if mu.get("failcnt"):
        memory_stats["failcnt"] = mu["failcnt"]
    pids = raw.get("pids") or {}
    out: dict[str, Any] = {
        "read": logfile.rfc3339_nano(int(now * 1e9)),
        "preread": "0001-01-01T00:00:00Z",
        "pids_stats": {k: v for k, v in (("current", pids.get("current", 0)),
                                          ("limit", pids.get("limit", 0))) if v},
        "blkio_stats": _blkio(raw.get("blkio") or {}),
        "num_procs": 0, "storage_stats": {},
        "cpu_stats": cpu_stats,
        "precpu_stats": {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0,
                                       "usage_in_usermode": 0},
                         "throttling_data": {"periods": 0, "throttled_periods": 0,
                                             "throttled_time": 0}},
        "memory_stats": memory_stats,
        "name": name, "id": cid,
    }
    nets = _networks(pid)
    if nets:
        out["networks"] = nets
    return out


def with_previous(cur: dict[str, Any], prev: dict[str, Any] | None) -> dict[str, Any]:
    if prev is not None:
        cur["precpu_stats"] = prev["cpu_stats"]
        cur["preread"] = prev["read"]
    return cur


def top(runtime_root: str, cid: str, ps_args: str) -> dict[str, Any]:
    """`ps ps_args` on the host, the container's processes only (as dockerd does)."""
    import subprocess

    cg, _pid = cgroup_of(runtime_root, cid)
    pids = set(cg.pids())
    args = ps_args.split() if ps_args else ["-ef"]
    try:
        proc = subprocess.run(["ps", *args], capture_output=True, text=True, check=False,
                              timeout=30)
    except FileNotFoundError:
        raise InvalidState('exec: "ps": executable file not found in $PATH') from None
    if proc.returncode != 0:
        raise InvalidState(f"ps: {proc.stderr.strip() or proc.stdout.strip()}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    titles = lines[0].split()
    if "PID" not in titles:
        raise InvalidState("Couldn't find PID field in ps output")
    at = titles.index("PID")
    rows = []
    for line in lines[1:]:
        fields = line.split(None, len(titles) - 1)
        try:
            if int(fields[at]) not in pids:
                continue
        except (ValueError, IndexError):
            continue
        rows.append(fields)
    return {"Titles": titles, "Processes": rows}
