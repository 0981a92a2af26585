"""Each controller as a function of (limits, directory), on a fake cgroupfs directory.

A fake cgroup directory is a temp dir holding the files the kernel would show; a write
replaces the file's content, so the file shows the last value written. Where the order of
writes is the point (devices, memory+swap, cpu period), the ``writes`` fixture records it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pallet.errors import InvalidArgument, InvalidState, NotFound, NotSupported
from pallet.oci.resources import (
    CPU,
    BlockIO,
    DeviceRule,
    HugepageLimit,
    InterfacePriority,
    Memory,
    Network,
    Pids,
    Rdma,
    ThrottleDevice,
    WeightDevice,
)
from pallet.runtime.cgroups import devices, fs, stats, v1, v2

UNLIMITED = (1 << 64) - 1


def cgdir(path: Path, files: dict[str, str]) -> str:
    path.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (path / name).write_text(content)
    return str(path)


def content(d: str, name: str) -> str:
    return Path(d, name).read_text()


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every fs.write as (file name, value), in order."""
    log: list[tuple[str, str]] = []
    real = fs.write

    def record(directory: str, name: str, value: str) -> None:
        log.append((name, value))
        real(directory, name, value)

    monkeypatch.setattr(fs, "write", record)
    return log


# --- v1 -----------------------------------------------------------------------------------

V1_CPU = ["cpu.shares", "cpu.cfs_period_us", "cpu.cfs_quota_us", "cpu.cfs_burst_us"]
V1_CPU += ["cpu.rt_period_us", "cpu.rt_runtime_us", "cpu.idle"]


def test_v1_cpu_writes_each_file(tmp_path: Path, writes: list[tuple[str, str]]) -> None:
    d = cgdir(tmp_path, dict.fromkeys(V1_CPU, ""))
    v1.apply_cpu(
        d,
        CPU(
            shares=512,
            quota=20000,
            period=50000,
            burst=1000,
            realtime_period=1000,
            realtime_runtime=950,
            idle=0,
        ),
    )
    assert writes == [
        ("cpu.shares", "512"),
        ("cpu.cfs_period_us", "50000"),
        ("cpu.cfs_burst_us", "1000"),
        ("cpu.cfs_quota_us", "20000"),
        ("cpu.rt_period_us", "1000"),
        ("cpu.rt_runtime_us", "950"),
        ("cpu.idle", "0"),
    ]


def test_v1_cpu_retries_period_after_quota_on_einval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = cgdir(tmp_path, dict.fromkeys(V1_CPU, ""))
    log: list[tuple[str, str]] = []
    real = fs.write

    def kernel(directory: str, name: str, value: str) -> None:
        log.append((name, value))
        # The kernel refuses the new period until the quota has shrunk.
        if name == "cpu.cfs_period_us" and content(directory, "cpu.cfs_quota_us") == "":
            raise InvalidArgument("EINVAL")
        real(directory, name, value)

    monkeypatch.setattr(fs, "write", kernel)
    v1.apply_cpu(d, CPU(quota=1000, period=10000))
    assert log == [
        ("cpu.cfs_period_us", "10000"),
        ("cpu.cfs_quota_us", "1000"),
        ("cpu.cfs_period_us", "10000"),
    ]
    assert content(d, "cpu.cfs_period_us") == "10000"


def test_v1_cpu_zero_means_unset_and_minus_one_unlimited(tmp_path: Path) -> None:
    d = cgdir(tmp_path, dict.fromkeys(V1_CPU, "x"))
    v1.apply_cpu(d, CPU(shares=0, quota=0))
    assert content(d, "cpu.shares") == "x" and content(d, "cpu.cfs_quota_us") == "x"
    v1.apply_cpu(d, CPU(quota=-1))
    assert content(d, "cpu.cfs_quota_us") == "-1"


def test_v1_cpuset_and_init_copy_parent(tmp_path: Path) -> None:
    root = cgdir(tmp_path, {"cpuset.cpus": "0-3\n", "cpuset.mems": "0\n"})
    mid = cgdir(tmp_path / "pallet", {"cpuset.cpus": "\n", "cpuset.mems": "\n"})
    leaf = cgdir(tmp_path / "pallet" / "c1", {"cpuset.cpus": "\n", "cpuset.mems": "\n"})
    v1.init_cpuset(root, leaf)
    assert content(mid, "cpuset.cpus") == "0-3" and content(leaf, "cpuset.mems") == "0"
    v1.apply_cpuset(leaf, CPU(cpus="1,3", mems="0"))
    assert content(leaf, "cpuset.cpus") == "1,3"


V1_MEM = {
    "memory.limit_in_bytes": "9223372036854771712",
    "memory.memsw.limit_in_bytes": "9223372036854771712",
    "memory.soft_limit_in_bytes": "",
    "memory.kmem.tcp.limit_in_bytes": "",
    "memory.swappiness": "60",
    "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
    "memory.use_hierarchy": "1\n",
    "memory.usage_in_bytes": "4096",
}


def test_v1_memory_all_fields(tmp_path: Path, writes: list[tuple[str, str]]) -> None:
    d = cgdir(tmp_path, V1_MEM)
    v1.apply_memory(
        d,
        Memory(
            limit=64 << 20,
            swap=128 << 20,
            reservation=32 << 20,
            kernel=1 << 20,  # no memory.kmem.limit_in_bytes here: ignored
            kernel_tcp=1 << 20,
            swappiness=0,
            disable_oom_killer=True,
            use_hierarchy=True,  # already 1: not written
        ),
    )
    # Growing memsw from "unlimited"... is shrinking it: memory first, then memsw.
    assert writes == [
        ("memory.limit_in_bytes", str(64 << 20)),
        ("memory.memsw.limit_in_bytes", str(128 << 20)),
        ("memory.soft_limit_in_bytes", str(32 << 20)),
        ("memory.kmem.tcp.limit_in_bytes", str(1 << 20)),
        ("memory.swappiness", "0"),
        ("memory.oom_control", "1"),
    ]


def test_v1_memory_raising_limit_writes_memsw_first(
    tmp_path: Path, writes: list[tuple[str, str]]
) -> None:
    d = cgdir(tmp_path, {**V1_MEM, "memory.limit_in_bytes": str(64 << 20)})
    v1.apply_memory(d, Memory(limit=256 << 20, swap=512 << 20))
    assert [name for name, _ in writes] == [
        "memory.memsw.limit_in_bytes",
        "memory.limit_in_bytes",
    ]


def test_v1_memory_unlimited_also_unlimits_swap(tmp_path: Path) -> None:
    d = cgdir(tmp_path, {**V1_MEM, "memory.limit_in_bytes": "1000"})
    v1.apply_memory(d, Memory(limit=-1))
    assert content(d, "memory.limit_in_bytes") == "-1"
    assert content(d, "memory.memsw.limit_in_bytes") == "-1"


def test_v1_memory_swap_without_accounting(tmp_path: Path) -> None:
    files = {k: v for k, v in V1_MEM.items() if "memsw" not in k}
    d = cgdir(tmp_path, files)
    v1.apply_memory(d, Memory(limit=-1))  # fine: swap not asked for
    with pytest.raises(NotSupported, match="swapaccount=1"):
        v1.apply_memory(d, Memory(limit=100 << 20, swap=200 << 20))


def test_v1_memory_check_before_update(tmp_path: Path) -> None:
    d = cgdir(tmp_path, V1_MEM)
    with pytest.raises(InvalidState, match="below current usage 4096"):
        v1.apply_memory(d, Memory(limit=1024, check_before_update=True))
    v1.apply_memory(d, Memory(limit=8192, check_before_update=True))
    assert content(d, "memory.limit_in_bytes") == "8192"


def test_v1_pids(tmp_path: Path) -> None:
    d = cgdir(tmp_path, {"pids.max": "max"})
    v1.apply_pids(d, Pids(limit=50))
    assert content(d, "pids.max") == "50"
    v1.apply_pids(d, Pids(limit=0))
    assert content(d, "pids.max") == "max"
    v1.apply_pids(d, Pids(limit=-1))
    assert content(d, "pids.max") == "max"


BLKIO_THROTTLE = {
    f"blkio.throttle.{n}_device": "" for n in ("read_bps", "write_bps", "read_iops", "write_iops")
}


def test_v1_blkio_bfq(tmp_path: Path) -> None:
    bfq = {"blkio.bfq.weight": "100", "blkio.bfq.weight_device": ""}
    d = cgdir(tmp_path, {**bfq, **BLKIO_THROTTLE})
    v1.apply_blkio(
        d,
        BlockIO(
            weight=500,
            weight_device=[WeightDevice(major=8, minor=0, weight=700)],
            throttle_read_bps=[ThrottleDevice(major=8, minor=0, rate=1048576)],
            throttle_write_bps=[ThrottleDevice(major=8, minor=0, rate=2)],
            throttle_read_iops=[ThrottleDevice(major=8, minor=16, rate=100)],
            throttle_write_iops=[ThrottleDevice(major=8, minor=16, rate=0)],
        ),
    )
    assert content(d, "blkio.bfq.weight") == "500"
    assert content(d, "blkio.bfq.weight_device") == "8:0 700"
    assert content(d, "blkio.throttle.read_bps_device") == "8:0 1048576"
    assert content(d, "blkio.throttle.write_bps_device") == "8:0 2"
    assert content(d, "blkio.throttle.read_iops_device") == "8:16 100"
    assert content(d, "blkio.throttle.write_iops_device") == "8:16 0"
    with pytest.raises(NotSupported, match=r"blockIO.leafWeight.*blkio.leaf_weight"):
        v1.apply_blkio(d, BlockIO(leaf_weight=300))


def test_v1_blkio_cfq(tmp_path: Path) -> None:
    d = cgdir(
        tmp_path,
        {
            "blkio.weight": "",
            "blkio.weight_device": "",
            "blkio.leaf_weight": "",
            "blkio.leaf_weight_device": "",
        },
    )
    v1.apply_blkio(
        d,
        BlockIO(
            weight=10,
            leaf_weight=1000,
            weight_device=[WeightDevice(major=8, minor=0, weight=20, leaf_weight=30)],
        ),
    )
    assert content(d, "blkio.weight") == "10"
    assert content(d, "blkio.leaf_weight") == "1000"
    assert content(d, "blkio.weight_device") == "8:0 20"
    assert content(d, "blkio.leaf_weight_device") == "8:0 30"


def test_v1_hugetlb(tmp_path: Path) -> None:
    d = cgdir(
        tmp_path,
        {
            "hugetlb.2MB.limit_in_bytes": "",
            "hugetlb.2MB.rsvd.limit_in_bytes": "",
            "hugetlb.1GB.limit_in_bytes": "",
        },
    )
    v1.apply_hugetlb(d, [HugepageLimit(page_size="2MB", limit=4 << 20)])
    assert content(d, "hugetlb.2MB.limit_in_bytes") == str(4 << 20)
    assert content(d, "hugetlb.2MB.rsvd.limit_in_bytes") == str(4 << 20)
    with pytest.raises(NotSupported, match=r"hugepage size 64KB .*\(have: 1GB, 2MB\)"):
        v1.apply_hugetlb(d, [HugepageLimit(page_size="64KB", limit=1)])


def test_v1_net_and_rdma(tmp_path: Path, writes: list[tuple[str, str]]) -> None:
    d = cgdir(tmp_path, {"net_cls.classid": "0", "net_prio.ifpriomap": "", "rdma.max": ""})
    net = Network(
        class_id=0x100001,
        priorities=[
            InterfacePriority(name="eth0", priority=5),
            InterfacePriority(name="lo", priority=1),
        ],
    )
    v1.apply_net_cls(d, net)
    v1.apply_net_prio(d, net)
    v1.apply_rdma(d, {"mlx5_1": Rdma(hca_handles=3), "mlx4_0": Rdma(hca_objects=7)})
    assert writes == [
        ("net_cls.classid", "1048577"),
        ("net_prio.ifpriomap", "eth0 5"),
        ("net_prio.ifpriomap", "lo 1"),
        ("rdma.max", "mlx5_1 hca_handle=3 hca_object=max"),
        ("rdma.max", "mlx4_0 hca_handle=max hca_object=7"),
    ]


def test_v1_freezer(tmp_path: Path) -> None:
    d = cgdir(tmp_path, {"freezer.state": "THAWED\n"})
    v1.freeze(d)
    assert v1.frozen(d)
    v1.thaw(d)
    assert not v1.frozen(d)


def test_v1_freeze_timeout_thaws_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = cgdir(tmp_path, {"freezer.state": "THAWED\n"})
    real = fs.write

    def stuck(directory: str, name: str, value: str) -> None:
        real(directory, name, "FREEZING" if value == "FROZEN" else value)

    monkeypatch.setattr(fs, "write", stuck)
    monkeypatch.setattr(v1, "FREEZE_TIMEOUT", 0.05)
    with pytest.raises(Exception, match="did not reach FROZEN"):
        v1.freeze(d)
    assert content(d, "freezer.state") == "THAWED"


# --- devices ------------------------------------------------------------------------------

DOCKER_RULES = [
    DeviceRule(allow=False, type="a", major=None, minor=None, access="rwm"),
    DeviceRule(allow=True, type="c", major=None, minor=None, access="m"),
    DeviceRule(allow=True, type="c", major=1, minor=3, access="rwm"),
    DeviceRule(allow=True, type="c", major=136, minor=None, access="rw"),
    DeviceRule(allow=False, type="c", major=10, minor=229, access="rwm"),
]


def test_v1_devices_deny_all_then_rules_in_order(
    tmp_path: Path, writes: list[tuple[str, str]]
) -> None:
    d = cgdir(tmp_path, {"devices.allow": "", "devices.deny": "", "devices.list": "a *:* rwm\n"})
    devices.apply_v1(d, DOCKER_RULES)
    assert writes == [
        ("devices.deny", "a"),
        ("devices.deny", "a"),
        ("devices.allow", "c *:* m"),
        ("devices.allow", "c 1:3 rwm"),
        ("devices.allow", "c 136:* rw"),
        ("devices.deny", "c 10:229 rwm"),
    ]


def test_v1_devices_skips_rewrite_when_list_already_matches(
    tmp_path: Path, writes: list[tuple[str, str]]
) -> None:
    listing = "c *:* m\nc 1:3 rwm\nc 136:* rw\n"
    d = cgdir(tmp_path, {"devices.allow": "", "devices.deny": "", "devices.list": listing})
    devices.apply_v1(d, DOCKER_RULES)
    assert writes == []


def test_devices_emulation() -> None:
    allow_all_but = [
        DeviceRule(allow=True, type="a", major=None, minor=None, access="rwm"),
        DeviceRule(allow=False, type="b", major=8, minor=0, access="w"),
    ]
    assert devices.emulate(allow_all_but) == (True, {("b", "8", "0"): "w"})
    merged = [
        DeviceRule(allow=True, type="c", major=1, minor=3, access="r"),
        DeviceRule(allow=True, type="c", major=1, minor=3, access="mw"),
        DeviceRule(allow=False, type="c", major=1, minor=5, access="rwm"),
        DeviceRule(allow=True, type="c", major=1, minor=9, access="rw"),
        DeviceRule(allow=False, type="c", major=1, minor=9, access="rw"),
    ]
    assert devices.emulate(merged) == (False, {("c", "1", "3"): "rwm"})


def test_default_rules_follow_the_spec_rules() -> None:
    rules = devices.with_defaults(DOCKER_RULES[:1])
    assert rules[0] == DOCKER_RULES[0]
    assert [devices.rule_text(r) for r in rules[1:4]] == ["c *:* m", "b *:* m", "c 1:3 rwm"]
    assert devices.rule_text(rules[-1]) == "c 136:* rwm"
    assert all(r.allow for r in rules[1:])
    assert devices.with_defaults(None) == rules[1:]


def test_v2_device_policy() -> None:
    devices.check_v2(DOCKER_RULES)  # accepted (not enforced)
    devices.check_v2([])
    with pytest.raises(NotSupported, match=r"'deny b 8:0 w' cannot be enforced.*eBPF"):
        devices.check_v2(
            [
                DeviceRule(allow=True, type="a", major=None, minor=None, access="rwm"),
                DeviceRule(allow=False, type="b", major=8, minor=0, access="w"),
            ]
        )


# --- v2 -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shares", "weight"), [(2, 1), (512, 59), (1024, 100), (2048, 174), (262144, 10000)]
)
def test_shares_to_weight(shares: int, weight: int) -> None:
    assert v2.shares_to_weight(shares) == weight


def test_blkio_to_io_weight() -> None:
    assert [v2.blkio_to_io_weight(w) for w in (10, 500, 1000)] == [1, 4950, 10000]


def test_v2_cpu(tmp_path: Path) -> None:
    d = cgdir(tmp_path, {"cpu.weight": "100", "cpu.max": "max 100000", "cpu.max.burst": "0"})
    v2.apply_cpu(d, CPU(shares=1024, quota=50000, period=100000, burst=1000))
    assert content(d, "cpu.weight") == "100"
    assert content(d, "cpu.max") == "50000 100000"
    assert content(d, "cpu.max.burst") == "1000"
    v2.apply_cpu(d, CPU(quota=-1))
    assert content(d, "cpu.max") == "max"
    with pytest.raises(NotSupported, match="real-time"):
        v2.apply_cpu(d, CPU(realtime_runtime=950))


@pytest.mark.parametrize(
    ("swap", "limit", "expected"),
    [
        (None, None, None),
        (None, -1, -1),
        (0, -1, -1),
        (-1, 100, -1),
        (300, 100, 200),
        (100, 100, 0),
    ],
)
def test_swap_to_v2(swap: int | None, limit: int | None, expected: int | None) -> None:
    assert v2.swap_to_v2(swap, limit) == expected


@pytest.mark.parametrize(("swap", "limit"), [(300, None), (300, -1), (100, 300)])
def test_swap_to_v2_rejects(swap: int, limit: int | None) -> None:
    with pytest.raises(InvalidArgument, match=r"linux.resources.memory.swap"):
        v2.swap_to_v2(swap, limit)


def test_v2_memory(tmp_path: Path, writes: list[tuple[str, str]]) -> None:
    files = {"memory.max": "max", "memory.swap.max": "max", "memory.low": "0"}
    d = cgdir(tmp_path, {**files, "memory.current": "4096"})
    v2.apply_memory(
        d,
        Memory(limit=64 << 20, swap=128 << 20, reservation=1 << 20, swappiness=10, kernel=5),
    )
    assert writes == [
        ("memory.swap.max", str(64 << 20)),
        ("memory.max", str(64 << 20)),
        ("memory.low", str(1 << 20)),
    ]
    v2.apply_memory(d, Memory(limit=-1))
    assert content(d, "memory.max") == "max" and content(d, "memory.swap.max") == "max"
    with pytest.raises(NotSupported, match="disableOOMKiller"):
        v2.apply_memory(d, Memory(disable_oom_killer=True))
    v2.apply_memory(d, Memory(disable_oom_killer=False))
    with pytest.raises(InvalidState, match="below current usage 4096"):
        v2.apply_memory(d, Memory(limit=100, check_before_update=True))


def test_v2_pids_io_hugetlb_rdma_unified(tmp_path: Path, writes: list[tuple[str, str]]) -> None:
    d = cgdir(
        tmp_path,
        {
            "pids.max": "max",
            "io.weight": "default 100",
            "io.max": "",
            "hugetlb.2MB.max": "max",
            "rdma.max": "",
            "memory.high": "max",
        },
    )
    v2.apply_pids(d, Pids(limit=10))
    v2.apply_io(
        d,
        BlockIO(
            weight=500,
            weight_device=[WeightDevice(major=8, minor=0, weight=10)],
            throttle_read_bps=[ThrottleDevice(major=8, minor=0, rate=1024)],
            throttle_write_iops=[ThrottleDevice(major=8, minor=0, rate=0)],
        ),
    )
    v2.apply_hugetlb(d, [HugepageLimit(page_size="2MB", limit=2 << 20)])
    v2.apply_rdma(d, {"mlx5_1": Rdma(hca_handles=3, hca_objects=4)})
    v2.apply_unified(d, {"memory.high": "1000000"})
    assert writes == [
        ("pids.max", "10"),
        ("io.weight", "default 4950"),
        ("io.weight", "8:0 1"),
        ("io.max", "8:0 rbps=1024"),
        ("io.max", "8:0 wiops=max"),
        ("hugetlb.2MB.max", str(2 << 20)),
        ("rdma.max", "mlx5_1 hca_handle=3 hca_object=4"),
        ("memory.high", "1000000"),
    ]
    with pytest.raises(NotSupported, match=r"hugepage size 1GB .*\(have: 2MB\)"):
        v2.apply_hugetlb(d, [HugepageLimit(page_size="1GB", limit=1)])
    with pytest.raises(NotSupported, match="leafWeight"):
        v2.apply_io(d, BlockIO(leaf_weight=100))


def test_v2_io_prefers_bfq_weight(tmp_path: Path) -> None:
    d = cgdir(tmp_path, {"io.bfq.weight": "default 100", "io.weight": "default 100"})
    v2.apply_io(d, BlockIO(weight=500))
    assert content(d, "io.bfq.weight") == "500"
    assert content(d, "io.weight") == "default 100"


def test_v2_freezer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = cgdir(tmp_path, {"cgroup.freeze": "0", "cgroup.events": "populated 1\nfrozen 0\n"})
    real = fs.write

    def kernel(directory: str, name: str, value: str) -> None:
        real(directory, name, value)
        if name == "cgroup.freeze":  # the kernel reports completion in cgroup.events
            Path(directory, "cgroup.events").write_text(f"populated 1\nfrozen {value}\n")

    monkeypatch.setattr(fs, "write", kernel)
    v2.freeze(d)
    assert v2.frozen(d)
    v2.thaw(d)
    assert not v2.frozen(d)


# --- fs errors ----------------------------------------------------------------------------


def test_write_errors_name_the_file(tmp_path: Path) -> None:
    d = cgdir(tmp_path / "cg", {})
    with pytest.raises(NotSupported, match=r"cg/pids.max does not exist"):
        fs.write(d, "pids.max", "5")
    with pytest.raises(NotFound, match=r"gone does not exist"):
        fs.write(str(tmp_path / "gone"), "pids.max", "5")
    os.mkdir(tmp_path / "cg" / "adir")
    with pytest.raises(Exception, match=r"write '5' to .*cg/adir"):
        fs.write(d, "adir", "5")


# --- stats --------------------------------------------------------------------------------


def test_v1_stats(tmp_path: Path) -> None:
    acct = cgdir(
        tmp_path / "cpuacct",
        {
            "cpuacct.usage": "3000\n",
            "cpuacct.usage_percpu": "1000 2000 \n",
            "cpuacct.usage_percpu_sys": "100 200\n",
            "cpuacct.usage_percpu_user": "900 1800\n",
            "cpuacct.stat": "user 2\nsystem 1\n",
        },
    )
    cpu = cgdir(
        tmp_path / "cpu", {"cpu.stat": "nr_periods 10\nnr_throttled 3\nthrottled_time 777\n"}
    )
    hz = os.sysconf("SC_CLK_TCK")
    assert stats.v1_cpu(acct, cpu) == {
        "usage": {
            "total": 3000,
            "percpu": [1000, 2000],
            "percpu_kernel": [100, 200],
            "percpu_user": [900, 1800],
            "user": 2 * 1_000_000_000 // hz,
            "kernel": 1 * 1_000_000_000 // hz,
        },
        "throttling": {"periods": 10, "throttledPeriods": 3, "throttledTime": 777},
    }
    mem = cgdir(
        tmp_path / "memory",
        {
            "memory.usage_in_bytes": "8192\n",
            "memory.max_usage_in_bytes": "16384\n",
            "memory.limit_in_bytes": "9223372036854771712\n",
            "memory.failcnt": "2\n",
            "memory.memsw.usage_in_bytes": "8192\n",
            "memory.memsw.limit_in_bytes": "-1\n",
            "memory.stat": "cache 4096\nrss 4096\ntotal_cache 4096\n",
            "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
        },
    )
    m = stats.v1_memory(mem)
    assert m["usage"] == {"limit": 9223372036854771712, "usage": 8192, "max": 16384, "failcnt": 2}
    assert m["swap"] == {"limit": UNLIMITED, "usage": 8192, "max": 0, "failcnt": 0}
    assert m["kernel"] == {"limit": 0, "usage": 0, "max": 0, "failcnt": 0}
    assert m["cache"] == 4096 and m["oom_kill"] == 3
    assert m["raw"] == {"cache": 4096, "rss": 4096, "total_cache": 4096}
    blk = cgdir(
        tmp_path / "blkio",
        {
            "blkio.bfq.io_serviced_recursive": "",
            "blkio.throttle.io_serviced_recursive": "254:0 Read 3\n254:0 Write 4\nTotal 7\n",
            "blkio.throttle.io_service_bytes_recursive": "254:0 Read 4096\nTotal 4096\n",
        },
    )
    assert stats.v1_blkio(blk) == {
        "ioServiceBytesRecursive": [{"major": 254, "minor": 0, "op": "Read", "value": 4096}],
        "ioServicedRecursive": [
            {"major": 254, "minor": 0, "op": "Read", "value": 3},
            {"major": 254, "minor": 0, "op": "Write", "value": 4},
        ],
    }
    pids = cgdir(tmp_path / "pids", {"pids.current": "3\n", "pids.max": "max\n"})
    assert stats.pids(pids) == {"current": 3, "limit": 0}
    huge = cgdir(
        tmp_path / "hugetlb",
        {
            "hugetlb.2MB.limit_in_bytes": "1",
            "hugetlb.2MB.usage_in_bytes": "2097152",
            "hugetlb.2MB.max_usage_in_bytes": "4194304",
            "hugetlb.2MB.failcnt": "1",
            "hugetlb.2MB.rsvd.limit_in_bytes": "1",
        },
    )
    assert stats.v1_hugetlb(huge) == {"2MB": {"usage": 2097152, "max": 4194304, "failcnt": 1}}


def test_v2_stats(tmp_path: Path) -> None:
    d = cgdir(
        tmp_path,
        {
            "cpu.stat": "usage_usec 30\nuser_usec 20\nsystem_usec 10\nnr_periods 5\n"
            "nr_throttled 1\nthrottled_usec 7\n",
            "memory.current": "8192\n",
            "memory.max": "max\n",
            "memory.peak": "16384\n",
            "memory.swap.current": "4096\n",
            "memory.swap.max": "max\n",
            "memory.stat": "anon 4096\nfile 4096\n",
            "memory.events": "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n",
            "io.stat": "254:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n",
            "hugetlb.2MB.current": "0\n",
            "hugetlb.2MB.max": "max\n",
            "hugetlb.2MB.events": "max 2\n",
            "hugetlb.2MB.rsvd.max": "max\n",
        },
    )
    assert stats.v2_cpu(d) == {
        "usage": {"total": 30000, "kernel": 10000, "user": 20000},
        "throttling": {"periods": 5, "throttledPeriods": 1, "throttledTime": 7000},
    }
    m = stats.v2_memory(d)
    assert m["usage"] == {"limit": UNLIMITED, "usage": 8192, "max": 16384, "failcnt": 4}
    assert m["swap"] == {"limit": UNLIMITED, "usage": 12288, "max": 0, "failcnt": 4}
    assert m["cache"] == 4096 and m["oom_kill"] == 1
    assert stats.v2_oom_kills(d) == 1
    assert stats.v2_io(d) == {
        "ioServiceBytesRecursive": [
            {"major": 254, "minor": 0, "op": "Read", "value": 4096},
            {"major": 254, "minor": 0, "op": "Write", "value": 8192},
        ],
        "ioServicedRecursive": [
            {"major": 254, "minor": 0, "op": "Read", "value": 1},
            {"major": 254, "minor": 0, "op": "Write", "value": 2},
        ],
    }
    assert stats.v2_hugetlb(d) == {"2MB": {"usage": 0, "max": 0, "failcnt": 2}}
