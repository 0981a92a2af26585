"""cgroup v2 controllers: each a function of (directory, limits) that writes files there.

runtime-spec speaks cgroup v1; the conversions to v2's files (cpu.weight, memory.swap.max,
io.weight, io.max) follow runc's libcontainer/cgroups/fs2 so a config means the same
under every engine.
"""

from __future__ import annotations

import errno
import math
import time

from pallet.errors import InvalidArgument, NotSupported, SystemFailure

from . import fs, v1

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pallet.oci.resources import CPU, BlockIO, HugepageLimit, Memory, Pids, Rdma


def shares_to_weight(shares: int) -> int:
    """cpu.shares [2, 262144] -> cpu.weight [1, 10000], runc >= 1.3.2's curve.

    The older linear map (1 + (shares-2)*9999/262142) sent the default 1024 shares to
    weight 39 instead of v2's default 100; this quadratic in log2 fits min, default and max.
    """
    if shares <= 2:
        return 1
    if shares >= 262144:
        return 10000
    lg = math.log2(shares)
    return math.ceil(10 ** ((lg * lg + 125 * lg) / 612.0 - 7.0 / 34.0))


def blkio_to_io_weight(weight: int) -> int:
    """blkio.weight [10, 1000] -> io.weight [1, 10000] (runc's linear map)."""
    return 1 + (weight - 10) * 9999 // 990


def _max(value: int) -> str:
    return "max" if value < 0 else str(value)


# --- cpu --------------------------------------------------------------------------------


def apply_cpu(directory: str, cpu: CPU) -> None:
    if cpu.shares:
        fs.write(directory, "cpu.weight", str(shares_to_weight(cpu.shares)))
    if cpu.quota or cpu.period:
        # cpu.max is "$QUOTA $PERIOD" in one file; quota "max" means unlimited.
        value = str(cpu.quota) if cpu.quota and cpu.quota > 0 else "max"
        if cpu.period:
            value += f" {cpu.period}"
        fs.write(directory, "cpu.max", value)
    if cpu.burst is not None:
        fs.write(directory, "cpu.max.burst", str(cpu.burst))
    if cpu.realtime_runtime or cpu.realtime_period:
        raise NotSupported(
            "cgroups: linux.resources.cpu.realtimeRuntime/realtimePeriod: cgroup v2 has no "
            "real-time bandwidth controller"
        )
    if cpu.idle is not None:
        fs.write(directory, "cpu.idle", str(cpu.idle))


def apply_cpuset(directory: str, cpu: CPU) -> None:
    if cpu.cpus:
        fs.write(directory, "cpuset.cpus", cpu.cpus)
    if cpu.mems:
        fs.write(directory, "cpuset.mems", cpu.mems)


# --- memory -----------------------------------------------------------------------------


def swap_to_v2(swap: int | None, limit: int | None) -> int | None:
    """runtime-spec swap is memory+swap (v1 memsw); memory.swap.max is swap alone."""
    if limit == -1 and not swap:
        return -1  # unlimited memory with swap unspecified: unlimited swap too (runc)
    if not swap or swap == -1:
        return None if not swap else -1
    if not limit or limit == -1:
        raise InvalidArgument(
            "cgroups: linux.resources.memory.swap: a swap limit needs a memory limit",
            op="apply",
            obj="memory",
        )
    if swap < limit:
        raise InvalidArgument(
            f"cgroups: linux.resources.memory.swap ({swap}) must be >= memory.limit ({limit}): "
            "it is memory+swap",
            op="apply",
            obj="memory",
        )
    return swap - limit


def apply_memory(directory: str, mem: Memory) -> None:
    limit = mem.limit
    if mem.check_before_update and limit and limit != -1:
        v1.check_memory_usage(directory, limit, "memory.current")
    swap = swap_to_v2(mem.swap, limit)
    if swap is not None:
        if not fs.exists(directory, "memory.swap.max"):
            if swap != -1:
                raise NotSupported(
                    f"cgroups: swap limit needs swap accounting ({directory}/memory.swap.max "
                    "is missing)"
                )
        else:
            # Swap first: no ordering constraint in v2, but it keeps a failed memory.max
            # write from leaving a bigger swap allowance than intended.
            fs.write(directory, "memory.swap.max", _max(swap))
    if limit:
        fs.write(directory, "memory.max", _max(limit))
    if mem.reservation:
        fs.write(directory, "memory.low", _max(mem.reservation))
    if mem.disable_oom_killer:
        raise NotSupported(
            "cgroups: linux.resources.memory.disableOOMKiller: cgroup v2 cannot disable the "
            "OOM killer"
        )
    # kernel, kernelTCP, swappiness and useHierarchy have no v2 files (v2 is always
    # hierarchical and counts kernel memory in memory.max); runc ignores them too.


# --- pids, io, hugetlb, rdma, unified ---------------------------------------------------


def apply_pids(directory: str, pids: Pids) -> None:
    if pids.limit is not None:
        fs.write(directory, "pids.max", "max" if pids.limit <= 0 else str(pids.limit))


def apply_io(directory: str, bio: BlockIO) -> None:
    # With BFQ the weight that counts is io.bfq.weight, in blkio's own 1..1000 range.
    bfq = fs.exists(directory, "io.bfq.weight")
    if bio.weight:
        if bfq:
            fs.write(directory, "io.bfq.weight", str(bio.weight))
        else:
            fs.write(directory, "io.weight", f"default {blkio_to_io_weight(bio.weight)}")
    if bio.leaf_weight:
        raise NotSupported("cgroups: linux.resources.blockIO.leafWeight: not in cgroup v2")
    for wd in bio.weight_device or []:
        if wd.leaf_weight:
            raise NotSupported(
                "cgroups: linux.resources.blockIO.weightDevice.leafWeight: not in cgroup v2"
            )
        if wd.weight:
            if bfq:
                fs.write(directory, "io.bfq.weight", f"{wd.major}:{wd.minor} {wd.weight}")
            else:
                w = blkio_to_io_weight(wd.weight)
                fs.write(directory, "io.weight", f"{wd.major}:{wd.minor} {w}")
    for key, devices in (
        ("rbps", bio.throttle_read_bps),
        ("wbps", bio.throttle_write_bps),
        ("riops", bio.throttle_read_iops),
        ("wiops", bio.throttle_write_iops),
    ):
        for td in devices or []:
            # Rate 0 removes the limit in v1; "max" is how v2 spells that.
            rate = str(td.rate) if td.rate else "max"
            fs.write(directory, "io.max", f"{td.major}:{td.minor} {key}={rate}")


def apply_hugetlb(directory: str, limits: list[HugepageLimit]) -> None:
    for h in limits:
        v1.check_hugetlb_size(directory, h.page_size, "max")
        fs.write(directory, f"hugetlb.{h.page_size}.max", str(h.limit))
        if fs.exists(directory, f"hugetlb.{h.page_size}.rsvd.max"):
            fs.write(directory, f"hugetlb.{h.page_size}.rsvd.max", str(h.limit))


def apply_rdma(directory: str, rdma: dict[str, Rdma]) -> None:
    for line in v1.rdma_lines(rdma):
        fs.write(directory, "rdma.max", line)


def apply_unified(directory: str, files: dict[str, str]) -> None:
    """Write linux.resources.unified verbatim; they override the converted values."""
    for name, value in files.items():
        fs.write(directory, name, value)


# --- freezer ----------------------------------------------------------------------------


def _events_frozen(directory: str) -> bool:
    text = fs.read_opt(directory, "cgroup.events")
    if text is None:
        raise NotSupported(f"cgroups: {directory}/cgroup.events is missing: kernel < 5.2")
    return "frozen 1" in text.splitlines()


def _set_frozen(directory: str, want: bool) -> None:
    fs.write(directory, "cgroup.freeze", "1" if want else "0")
    deadline = time.monotonic() + v1.FREEZE_TIMEOUT
    delay = 0.0002
    while _events_frozen(directory) != want:
        if time.monotonic() >= deadline:
            if want:
                fs.write(directory, "cgroup.freeze", "0")
            raise SystemFailure(
                f"cgroups: {directory} did not {'freeze' if want else 'thaw'} within "
                f"{v1.FREEZE_TIMEOUT:.0f}s",
                op="freeze" if want else "thaw",
                obj=directory,
                errno=errno.ETIMEDOUT,
                path=f"{directory}/cgroup.freeze",
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.01)


def freeze(directory: str) -> None:
    _set_frozen(directory, True)


def thaw(directory: str) -> None:
    _set_frozen(directory, False)


def frozen(directory: str) -> bool:
    wanted = (fs.read_opt(directory, "cgroup.freeze") or "0").strip() == "1"
    return wanted and _events_frozen(directory)
