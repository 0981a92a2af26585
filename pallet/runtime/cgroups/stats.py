"""Statistics in runc's ``events --stats`` shape, read from v1 or v2 files.

Each reader takes the directory of one controller and returns the JSON fragment for it;
``Cgroup.stats`` picks the directory per controller (v1 or unified) and assembles them.
Times are nanoseconds and sizes bytes, whatever unit the kernel file uses.
"""

from __future__ import annotations

import os

from . import fs
from .v1 import hugetlb_sizes

_UNLIMITED = (1 << 64) - 1


# --- cgroup v1 --------------------------------------------------------------------------


def v1_cpu(cpuacct_dir: str | None, cpu_dir: str | None) -> dict[str, object]:
    usage: dict[str, object] = {"total": 0, "kernel": 0, "user": 0}
    if cpuacct_dir is not None:
        usage["total"] = fs.read_uint_opt(cpuacct_dir, "cpuacct.usage") or 0
        for key, name in (
            ("percpu", "cpuacct.usage_percpu"),
            ("percpu_kernel", "cpuacct.usage_percpu_sys"),
            ("percpu_user", "cpuacct.usage_percpu_user"),
        ):
            text = fs.read_opt(cpuacct_dir, name)
            if text is not None:
                usage[key] = [int(v) for v in text.split()]
        user = fs.read_uint_opt(cpuacct_dir, "cpuacct.usage_user")
        system = fs.read_uint_opt(cpuacct_dir, "cpuacct.usage_sys")
        if user is None or system is None:
            # Older kernels only have cpuacct.stat, in clock ticks.
            ticks = fs.read_keyed(cpuacct_dir, "cpuacct.stat")
            hz = os.sysconf("SC_CLK_TCK")
            user = ticks.get("user", 0) * 1_000_000_000 // hz
            system = ticks.get("system", 0) * 1_000_000_000 // hz
        usage["user"], usage["kernel"] = user, system
    throttling: dict[str, int] = {}
    if cpu_dir is not None:
        st = fs.read_keyed(cpu_dir, "cpu.stat")
        throttling = {
            "periods": st.get("nr_periods", 0),
            "throttledPeriods": st.get("nr_throttled", 0),
            "throttledTime": st.get("throttled_time", 0),
        }
    return {"usage": usage, "throttling": throttling}


def _v1_entry(directory: str, prefix: str) -> dict[str, int]:
    """usage/max/failcnt/limit of one v1 memory counter family ("memory.memsw" ...)."""
    return {
        "limit": fs.read_uint_opt(directory, f"{prefix}.limit_in_bytes") or 0,
        "usage": fs.read_uint_opt(directory, f"{prefix}.usage_in_bytes") or 0,
        "max": fs.read_uint_opt(directory, f"{prefix}.max_usage_in_bytes") or 0,
        "failcnt": fs.read_uint_opt(directory, f"{prefix}.failcnt") or 0,
    }


def v1_memory(directory: str) -> dict[str, object]:
    raw = fs.read_keyed(directory, "memory.stat")
    return {
        "cache": raw.get("cache", 0),
        "usage": _v1_entry(directory, "memory"),
        "swap": _v1_entry(directory, "memory.memsw"),
        "kernel": _v1_entry(directory, "memory.kmem"),
        "kernelTCP": _v1_entry(directory, "memory.kmem.tcp"),
        "raw": raw,
        "oom_kill": v1_oom_kills(directory),
    }


def v1_oom_kills(directory: str) -> int:
    # "oom_kill N" in memory.oom_control since Linux 4.13.
    return fs.read_keyed(directory, "memory.oom_control").get("oom_kill", 0)


def pids(directory: str) -> dict[str, int]:
    """pids.current/pids.max; same files on v1 and v2. A limit of 0 means unlimited."""
    limit = fs.read_uint_opt(directory, "pids.max")
    return {
        "current": fs.read_uint_opt(directory, "pids.current") or 0,
        "limit": 0 if limit is None or limit == _UNLIMITED else limit,
    }


def _blkio_entries(text: str) -> list[dict[str, object]]:
    """Lines "8:0 Read 4096" -> entries; the per-file "Total N" line is dropped."""
    out: list[dict[str, object]] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) != 3 or ":" not in fields[0]:
            continue
        major, _, minor = fields[0].partition(":")
        out.append(
            {"major": int(major), "minor": int(minor), "op": fields[1], "value": int(fields[2])}
        )
    return out


def v1_blkio(directory: str) -> dict[str, object]:
    # CFQ's files, else BFQ's, else the throttle layer's (always present): the first
    # family that reports anything, as runc does.
    for prefix in ("blkio.", "blkio.bfq.", "blkio.throttle."):
        served = fs.read_opt(directory, f"{prefix}io_serviced_recursive")
        if served is None or (not served.strip() and prefix != "blkio.throttle."):
            continue
        nbytes = fs.read_opt(directory, f"{prefix}io_service_bytes_recursive") or ""
        return {
            "ioServiceBytesRecursive": _blkio_entries(nbytes),
            "ioServicedRecursive": _blkio_entries(served),
        }
    return {"ioServiceBytesRecursive": [], "ioServicedRecursive": []}


def v1_hugetlb(directory: str) -> dict[str, dict[str, int]]:
    out = {}
    for size in hugetlb_sizes(directory, "limit_in_bytes"):
        out[size] = {
            "usage": fs.read_uint_opt(directory, f"hugetlb.{size}.usage_in_bytes") or 0,
            "max": fs.read_uint_opt(directory, f"hugetlb.{size}.max_usage_in_bytes") or 0,
            "failcnt": fs.read_uint_opt(directory, f"hugetlb.{size}.failcnt") or 0,
        }
    return out


# --- cgroup v2 --------------------------------------------------------------------------


def v2_cpu(directory: str) -> dict[str, object]:
    st = fs.read_keyed(directory, "cpu.stat")
    return {
        "usage": {
            "total": st.get("usage_usec", 0) * 1000,
            "kernel": st.get("system_usec", 0) * 1000,
            "user": st.get("user_usec", 0) * 1000,
        },
        "throttling": {
            "periods": st.get("nr_periods", 0),
            "throttledPeriods": st.get("nr_throttled", 0),
            "throttledTime": st.get("throttled_usec", 0) * 1000,
        },
    }


def v2_memory(directory: str) -> dict[str, object]:
    raw = fs.read_keyed(directory, "memory.stat")
    events = fs.read_keyed(directory, "memory.events")
    usage = fs.read_uint_opt(directory, "memory.current") or 0
    limit = fs.read_uint_opt(directory, "memory.max") or _UNLIMITED
    swap_usage = fs.read_uint_opt(directory, "memory.swap.current") or 0
    swap_limit = fs.read_uint_opt(directory, "memory.swap.max") or _UNLIMITED
    # Report swap as memory+swap, the v1 memsw meaning every stats consumer expects.
    return {
        "cache": raw.get("file", 0),
        "usage": {
            "limit": limit,
            "usage": usage,
            "max": fs.read_uint_opt(directory, "memory.peak") or 0,
            "failcnt": events.get("max", 0),
        },
        "swap": {
            "limit": _UNLIMITED if _UNLIMITED in (limit, swap_limit) else limit + swap_limit,
            "usage": usage + swap_usage,
            "max": 0,
            "failcnt": events.get("max", 0),
        },
        "raw": raw,
        "oom_kill": events.get("oom_kill", 0),
    }


def v2_oom_kills(directory: str) -> int:
    return fs.read_keyed(directory, "memory.events").get("oom_kill", 0)


def v2_io(directory: str) -> dict[str, object]:
    """io.stat lines "8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0"."""
    nbytes: list[dict[str, object]] = []
    served: list[dict[str, object]] = []
    for line in (fs.read_opt(directory, "io.stat") or "").splitlines():
        dev, *pairs = line.split()
        major, _, minor = dev.partition(":")
        values = dict(p.split("=", 1) for p in pairs if "=" in p)
        for key, op, into in (
            ("rbytes", "Read", nbytes),
            ("wbytes", "Write", nbytes),
            ("rios", "Read", served),
            ("wios", "Write", served),
        ):
            if key in values:
                into.append(
                    {"major": int(major), "minor": int(minor), "op": op, "value": int(values[key])}
                )
    return {"ioServiceBytesRecursive": nbytes, "ioServicedRecursive": served}


def v2_hugetlb(directory: str) -> dict[str, dict[str, int]]:
    out = {}
    for size in hugetlb_sizes(directory, "max"):
        events = fs.read_keyed(directory, f"hugetlb.{size}.events")
        out[size] = {
            "usage": fs.read_uint_opt(directory, f"hugetlb.{size}.current") or 0,
            "max": 0,  # v2 keeps no high-water mark
            "failcnt": events.get("max", 0),
        }
    return out
