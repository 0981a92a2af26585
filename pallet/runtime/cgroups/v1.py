"""cgroup v1 controllers: each a function of (directory, limits) that writes files there.

Unset fields (None) are left alone so the same functions serve ``create`` and ``update``.
File names and write orders follow the kernel's cgroup-v1 documentation and runc's
libcontainer/cgroups/fs, whose orderings exist to get past the kernel's validation.
"""

from __future__ import annotations

import errno
import os
import time

from pallet.errors import InvalidArgument, InvalidState, NotSupported, SystemFailure

from . import fs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pallet.oci.resources import CPU, BlockIO, HugepageLimit, Memory, Network, Pids, Rdma


def _set(value: int | None) -> bool:
    """runc's convention for byte limits: None and 0 both mean "leave alone"."""
    return value is not None and value != 0


# --- cpu --------------------------------------------------------------------------------


def apply_cpu(directory: str, cpu: CPU) -> None:
    if cpu.shares:
        fs.write(directory, "cpu.shares", str(cpu.shares))
    # Shrinking the period can fail (EINVAL) while the old quota/new period ratio exceeds
    # the parent's bandwidth; it succeeds once the quota has shrunk too, so retry then.
    period_later = ""
    if cpu.period:
        try:
            fs.write(directory, "cpu.cfs_period_us", str(cpu.period))
        except InvalidArgument:
            if not cpu.quota:
                raise
            period_later = str(cpu.period)
    burst_later = ""
    if cpu.burst is not None and (cpu.burst or fs.exists(directory, "cpu.cfs_burst_us")):
        if not fs.exists(directory, "cpu.cfs_burst_us"):
            raise NotSupported(
                f"cgroups: cpu burst needs a kernel with {directory}/cpu.cfs_burst_us"
            )
        try:
            fs.write(directory, "cpu.cfs_burst_us", str(cpu.burst))
        except InvalidArgument:
            if not cpu.quota:
                raise
            burst_later = str(cpu.burst)  # the burst may not exceed the quota not yet set
    if cpu.quota:  # 0 is "not set" (runc); -1 is "unlimited"
        fs.write(directory, "cpu.cfs_quota_us", str(cpu.quota))
        if period_later:
            fs.write(directory, "cpu.cfs_period_us", period_later)
        if burst_later:
            fs.write(directory, "cpu.cfs_burst_us", burst_later)
    # The runtime only fits inside the period, so the period goes first.
    if cpu.realtime_period:
        fs.write(directory, "cpu.rt_period_us", str(cpu.realtime_period))
    if cpu.realtime_runtime is not None and cpu.realtime_runtime != 0:
        fs.write(directory, "cpu.rt_runtime_us", str(cpu.realtime_runtime))
    if cpu.idle is not None:
        fs.write(directory, "cpu.idle", str(cpu.idle))


def apply_cpuset(directory: str, cpu: CPU) -> None:
    if cpu.cpus:
        fs.write(directory, "cpuset.cpus", cpu.cpus)
    if cpu.mems:
        fs.write(directory, "cpuset.mems", cpu.mems)


def init_cpuset(mountpoint: str, directory: str) -> None:
    """Give every cpuset from below the mount down to ``directory`` its parent's cpus/mems.

    A new v1 cpuset starts with empty cpuset.cpus/mems and refuses tasks (ENOSPC) until
    both are set; intermediate dirs created by us (or anyone) have the same problem.
    """
    rel = directory[len(mountpoint) :].strip("/")
    parent = mountpoint
    for part in rel.split("/") if rel else []:
        child = f"{parent}/{part}"
        for name in ("cpuset.cpus", "cpuset.mems"):
            if not fs.read(child, name).strip():
                fs.write(child, name, fs.read(parent, name).strip())
        parent = child


# --- memory -----------------------------------------------------------------------------

_MEMSW = "memory.memsw.limit_in_bytes"


def check_memory_usage(directory: str, limit: int, usage_file: str) -> None:
    """checkBeforeUpdate: refuse a limit below what the cgroup already uses."""
    usage = fs.read_uint(directory, usage_file)
    if limit < usage:
        raise InvalidState(
            f"cgroups: memory limit {limit} is below current usage {usage} "
            f"({directory}/{usage_file}); refusing update (checkBeforeUpdate)",
            op="update",
            obj=directory,
        )


def _write_swap(directory: str, swap: int) -> None:
    if not fs.exists(directory, _MEMSW):
        raise NotSupported(
            f"cgroups: swap limit needs swap accounting ({directory}/{_MEMSW} is missing; "
            "boot with swapaccount=1)"
        )
    fs.write(directory, _MEMSW, str(swap))


def apply_memory(directory: str, mem: Memory) -> None:
    limit, swap = mem.limit, mem.swap
    if mem.check_before_update and _set(limit) and limit != -1:
        assert limit is not None
        check_memory_usage(directory, limit, "memory.usage_in_bytes")
    # "unlimited memory" with swap unspecified means unlimited memory+swap too (runc).
    if limit == -1 and not _set(swap) and fs.exists(directory, _MEMSW):
        swap = -1
    if _set(limit) and _set(swap):
        assert limit is not None and swap is not None
        # The kernel keeps memory.limit <= memsw.limit at every step: raise memsw first
        # when growing, lower memory first when shrinking.
        current = fs.read_uint(directory, "memory.limit_in_bytes")
        if swap == -1 or current < swap:
            _write_swap(directory, swap)
            fs.write(directory, "memory.limit_in_bytes", str(limit))
        else:
            fs.write(directory, "memory.limit_in_bytes", str(limit))
            _write_swap(directory, swap)
    elif _set(limit):
        fs.write(directory, "memory.limit_in_bytes", str(limit))
    elif _set(swap):
        assert swap is not None
        _write_swap(directory, swap)
    if _set(mem.reservation):
        fs.write(directory, "memory.soft_limit_in_bytes", str(mem.reservation))
    # Kernel memory limits are gone from recent kernels (and a no-op before that); write
    # them where the file still exists, as runc 1.1 did, and ignore them elsewhere.
    if _set(mem.kernel) and fs.exists(directory, "memory.kmem.limit_in_bytes"):
        fs.write(directory, "memory.kmem.limit_in_bytes", str(mem.kernel))
    if _set(mem.kernel_tcp) and fs.exists(directory, "memory.kmem.tcp.limit_in_bytes"):
        fs.write(directory, "memory.kmem.tcp.limit_in_bytes", str(mem.kernel_tcp))
    if mem.swappiness is not None:
        fs.write(directory, "memory.swappiness", str(mem.swappiness))
    if mem.disable_oom_killer is not None:
        fs.write(directory, "memory.oom_control", "1" if mem.disable_oom_killer else "0")
    if mem.use_hierarchy is not None:
        # Recent kernels are always hierarchical and refuse "0"; writing "1" is a no-op.
        want = "1" if mem.use_hierarchy else "0"
        if fs.read(directory, "memory.use_hierarchy").strip() != want:
            fs.write(directory, "memory.use_hierarchy", want)


# --- pids, blkio, hugetlb, net_cls, net_prio, rdma --------------------------------------


def apply_pids(directory: str, pids: Pids) -> None:
    if pids.limit is not None:
        fs.write(directory, "pids.max", "max" if pids.limit <= 0 else str(pids.limit))


def apply_blkio(directory: str, bio: BlockIO) -> None:
    # CFQ's blkio.weight went away with the legacy block layer; BFQ offers blkio.bfq.*.
    prefix = "blkio." if fs.exists(directory, "blkio.weight") else "blkio.bfq."
    if bio.weight:
        _need(directory, f"{prefix}weight", "blockIO.weight")
        fs.write(directory, f"{prefix}weight", str(bio.weight))
    if bio.leaf_weight:
        _need(directory, "blkio.leaf_weight", "blockIO.leafWeight")
        fs.write(directory, "blkio.leaf_weight", str(bio.leaf_weight))
    for wd in bio.weight_device or []:
        if wd.weight:
            _need(directory, f"{prefix}weight_device", "blockIO.weightDevice")
            fs.write(directory, f"{prefix}weight_device", f"{wd.major}:{wd.minor} {wd.weight}")
        if wd.leaf_weight:
            _need(directory, "blkio.leaf_weight_device", "blockIO.weightDevice.leafWeight")
            fs.write(
                directory, "blkio.leaf_weight_device", f"{wd.major}:{wd.minor} {wd.leaf_weight}"
            )
    for name, devices in (
        ("blkio.throttle.read_bps_device", bio.throttle_read_bps),
        ("blkio.throttle.write_bps_device", bio.throttle_write_bps),
        ("blkio.throttle.read_iops_device", bio.throttle_read_iops),
        ("blkio.throttle.write_iops_device", bio.throttle_write_iops),
    ):
        for td in devices or []:
            fs.write(directory, name, f"{td.major}:{td.minor} {td.rate}")


def _need(directory: str, name: str, what: str) -> None:
    if not fs.exists(directory, name):
        raise NotSupported(
            f"cgroups: linux.resources.{what} is not supported by this kernel's I/O scheduler "
            f"({directory}/{name} does not exist)"
        )


def hugetlb_sizes(directory: str, suffix: str) -> list[str]:
    """Page sizes the kernel offers, from file names like hugetlb.2MB.<suffix>."""
    sizes = []
    for name in os.listdir(directory):
        if name.startswith("hugetlb.") and name.endswith("." + suffix):
            size = name[len("hugetlb.") : -len(suffix) - 1]
            if "." not in size:
                sizes.append(size)
    return sorted(sizes)


def check_hugetlb_size(directory: str, size: str, suffix: str) -> None:
    if not fs.exists(directory, f"hugetlb.{size}.{suffix}"):
        have = ", ".join(hugetlb_sizes(directory, suffix)) or "none"
        raise NotSupported(
            f"cgroups: hugepage size {size} is not supported on this host (have: {have})"
        )


def apply_hugetlb(directory: str, limits: list[HugepageLimit]) -> None:
    for h in limits:
        check_hugetlb_size(directory, h.page_size, "limit_in_bytes")
        fs.write(directory, f"hugetlb.{h.page_size}.limit_in_bytes", str(h.limit))
        # Reservations (kernel 5.7+) must be limited too, or a mapping can reserve pages
        # the fault-time limit would then refuse.
        if fs.exists(directory, f"hugetlb.{h.page_size}.rsvd.limit_in_bytes"):
            fs.write(directory, f"hugetlb.{h.page_size}.rsvd.limit_in_bytes", str(h.limit))


def apply_net_cls(directory: str, net: Network) -> None:
    if net.class_id is not None:
        fs.write(directory, "net_cls.classid", str(net.class_id))


def apply_net_prio(directory: str, net: Network) -> None:
    for prio in net.priorities or []:
        fs.write(directory, "net_prio.ifpriomap", f"{prio.name} {prio.priority}")


def rdma_lines(rdma: dict[str, Rdma]) -> list[str]:
    """rdma.max lines (same syntax on v1 and v2); an unset count means "max"."""
    lines = []
    for device, lim in rdma.items():
        handles = "max" if lim.hca_handles is None else str(lim.hca_handles)
        objects = "max" if lim.hca_objects is None else str(lim.hca_objects)
        lines.append(f"{device} hca_handle={handles} hca_object={objects}")
    return lines


def apply_rdma(directory: str, rdma: dict[str, Rdma]) -> None:
    for line in rdma_lines(rdma):
        fs.write(directory, "rdma.max", line)


# --- freezer ----------------------------------------------------------------------------

FREEZE_TIMEOUT = 5.0


def _wait_state(directory: str, want: str, deadline: float) -> bool:
    delay = 0.0002
    while True:
        if fs.read(directory, "freezer.state").strip() == want:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.01)


def freeze(directory: str) -> None:
    """Freeze and wait for FROZEN; on timeout thaw again so nothing is left half-frozen."""
    deadline = time.monotonic() + FREEZE_TIMEOUT
    while True:
        # A task stuck in an uninterruptible sleep leaves the cgroup FREEZING; writing
        # FROZEN again retries the tasks that were not frozen yet.
        fs.write(directory, "freezer.state", "FROZEN")
        if _wait_state(directory, "FROZEN", min(deadline, time.monotonic() + 0.1)):
            return
        if time.monotonic() >= deadline:
            break
    fs.write(directory, "freezer.state", "THAWED")
    raise SystemFailure(
        f"cgroups: {directory} did not reach FROZEN within {FREEZE_TIMEOUT:.0f}s",
        op="freeze",
        obj=directory,
        errno=errno.ETIMEDOUT,
        path=f"{directory}/freezer.state",
    )


def thaw(directory: str) -> None:
    fs.write(directory, "freezer.state", "THAWED")
    if not _wait_state(directory, "THAWED", time.monotonic() + FREEZE_TIMEOUT):
        raise SystemFailure(
            f"cgroups: {directory} did not reach THAWED within {FREEZE_TIMEOUT:.0f}s",
            op="thaw",
            obj=directory,
            errno=errno.ETIMEDOUT,
            path=f"{directory}/freezer.state",
        )


def frozen(directory: str) -> bool:
    return fs.read(directory, "freezer.state").strip() == "FROZEN"
