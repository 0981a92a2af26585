"""The Cgroup interface on fake v1, v2 and hybrid trees: layout detection, path
resolution, create/apply/add_pid/freeze/stats/destroy routing.

``FakeKernel`` builds a cgroupfs-like tree in a temp dir and stands in for the kernel at
the fs seams: mkdir fills a new cgroup with its control files, rmdir removes them, and a
write to cgroup.freeze / cgroup.subtree_control has the kernel's visible effect.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest

from pallet.errors import Conflict, InvalidArgument, NotSupported
from pallet.oci.resources import parse_resources
from pallet.runtime.cgroups import Cgroup, Layout, fs, parse_mountinfo, tree

# The mountinfo of pallet's development VMs (trimmed): the hybrid layout.
HOST_MOUNTINFO = """\
23 1 0:21 / /sys rw,nosuid - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""

V1_FILES = {
    "cpu": {"cpu.shares": "1024", "cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "-1"},
    "cpuacct": {"cpuacct.usage": "0", "cpuacct.usage_percpu": "0 0", "cpuacct.stat": ""},
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": ""},
    "memory": {
        "memory.limit_in_bytes": "9223372036854771712",
        "memory.memsw.limit_in_bytes": "9223372036854771712",
        "memory.soft_limit_in_bytes": "9223372036854771712",
        "memory.usage_in_bytes": "0",
        "memory.swappiness": "60",
        "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
        "memory.stat": "cache 0\nrss 0\n",
    },
    "devices": {"devices.allow": "", "devices.deny": "", "devices.list": "a *:* rwm\n"},
    "freezer": {"freezer.state": "THAWED\n"},
    "blkio": {"blkio.bfq.weight": "100", "blkio.throttle.read_bps_device": ""},
    "pids": {"pids.max": "max", "pids.current": "0"},
    "name=systemd": {},
}
V2_FILES = {
    "cpu": {"cpu.weight": "100", "cpu.max": "max 100000"},
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": ""},
    "memory": {
        "memory.max": "max",
        "memory.swap.max": "max",
        "memory.low": "0",
        "memory.current": "0",
        "memory.events": "oom_kill 0\n",
    },
    "io": {"io.weight": "default 100", "io.max": ""},
    "pids": {"pids.max": "max", "pids.current": "0"},
    "hugetlb": {"hugetlb.2MB.max": "max", "hugetlb.2MB.current": "0", "hugetlb.2MB.events": ""},
}
V2_CORE = {
    "cgroup.procs": "",
    "cgroup.subtree_control": "",
    "cgroup.freeze": "0",
    "cgroup.events": "populated 0\nfrozen 0\n",
    "cpu.stat": "usage_usec 0\n",
}


REAL_MKDIR, REAL_WRITE = fs.mkdir, fs.write
V1_HIERARCHIES = [("cpu", "cpuacct"), ("cpuset",), ("memory",), ("devices",), ("freezer",)]
V1_HIERARCHIES += [("blkio",), ("pids",), ("name=systemd",)]


class FakeKernel:
    def __init__(self, tmp_path: Path, mode: str) -> None:
        self.root = str(tmp_path / "cgroup")
        self.mode = mode
        self.writes: list[tuple[str, str]] = []
        self.hierarchies: dict[str, tuple[str, ...]] = {}  # mountpoint -> controllers
        lines = [f"31 23 0:28 / {self.root} rw - tmpfs tmpfs rw"]
        if mode in ("v1", "hybrid"):
            for i, ctls in enumerate(V1_HIERARCHIES):
                name = ",".join(ctls).removeprefix("name=")
                mp = f"{self.root}/{name}"
                self.hierarchies[mp] = ctls
                opts = ",".join(ctls)
                lines.append(f"{40 + i} 31 0:{40 + i} / {mp} rw - cgroup cgroup rw,{opts}")
        if mode == "hybrid":
            mp = f"{self.root}/unified"
            self.hierarchies[mp] = ()
            lines.append(f"60 31 0:60 / {mp} rw - cgroup2 cgroup2 rw,nsdelegate")
        if mode == "v2":
            self.hierarchies[self.root] = ()
            lines = [f"30 23 0:27 / {self.root} rw - cgroup2 cgroup2 rw,nsdelegate"]
        self.mountinfo = "\n".join(lines) + "\n"
        for mp, ctls in self.hierarchies.items():
            os.makedirs(mp, exist_ok=True)
            self._populate(mp, ctls, root=True)

    def _v2_offered(self, root: bool) -> str:
        if self.mode == "hybrid":
            return "hugetlb"
        return "cpuset cpu io memory hugetlb pids" if root else ""

    def _populate(self, d: str, ctls: tuple[str, ...], root: bool = False) -> None:
        files: dict[str, str] = {"cgroup.procs": ""}
        if ctls:
            files["tasks"] = ""
            for c in ctls:
                files.update(V1_FILES[c])
            if root and "cpuset" in ctls:
                files.update({"cpuset.cpus": "0-1\n", "cpuset.mems": "0\n"})
        else:
            files.update(V2_CORE)
            if root:
                files["cgroup.controllers"] = self._v2_offered(root)
            else:  # a child is offered what its parent enabled for its children
                parent = os.path.dirname(d)
                files["cgroup.controllers"] = Path(parent, "cgroup.subtree_control").read_text()
                for c in files["cgroup.controllers"].split():
                    files.update(V2_FILES[c])
        for name, text in files.items():
            Path(d, name).write_text(text)

    def _ctls_of(self, d: str) -> tuple[str, ...]:
        mp = max((m for m in self.hierarchies if d.startswith(m + "/")), key=len)
        return self.hierarchies[mp]

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real_write = REAL_WRITE

        def mkdir(path: str) -> bool:
            created = REAL_MKDIR(path)
            if created:
                self._populate(path, self._ctls_of(path))
            return created

        def rmdir(path: str) -> None:
            if any(e.is_dir() for e in os.scandir(path)):
                raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), path)
            shutil.rmtree(path)

        def write(directory: str, name: str, value: str) -> None:
            self.writes.append((f"{directory}/{name}", value))
            if name == "cgroup.subtree_control":
                current = set(Path(directory, name).read_text().split())
                current.add(value.lstrip("+"))
                value = " ".join(sorted(current))
            real_write(directory, name, value)
            if name == "cgroup.subtree_control":  # children now offer these controllers
                for child in (e.path for e in os.scandir(directory) if e.is_dir()):
                    Path(child, "cgroup.controllers").write_text(value)
                    for c in value.split():
                        for f, text in V2_FILES[c].items():
                            Path(child, f).write_text(text)
            if name == "cgroup.freeze":
                Path(directory, "cgroup.events").write_text(f"populated 1\nfrozen {value}\n")

        monkeypatch.setattr(fs, "mkdir", mkdir)
        monkeypatch.setattr(fs, "rmdir", rmdir)
        monkeypatch.setattr(fs, "write", write)

    def layout(self) -> Layout:
        return parse_mountinfo(self.mountinfo, root=self.root)


@pytest.fixture(params=["v1", "v2", "hybrid"])
def kernel(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> FakeKernel:
    k = FakeKernel(tmp_path, request.param)
    k.install(monkeypatch)
    return k


def make(kernel_mode: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeKernel:
    k = FakeKernel(tmp_path, kernel_mode)
    k.install(monkeypatch)
    return k


def read(path: str) -> str:
    return Path(path).read_text()


# --- layout -------------------------------------------------------------------------------


def test_detects_the_hybrid_host(tmp_path: Path) -> None:
    layout = parse_mountinfo(HOST_MOUNTINFO)
    assert layout.mode == "hybrid"
    assert [h.controllers for h in layout.v1] == [
        ("cpu",),
        ("cpuacct",),
        ("cpuset",),
        ("memory",),
        ("devices",),
        ("freezer",),
        ("blkio",),
        ("pids",),
        ("name=systemd",),
    ]
    assert layout.unified is not None and layout.unified.mountpoint == "/sys/fs/cgroup/unified"


def test_detection_per_mode(kernel: FakeKernel) -> None:
    layout = kernel.layout()
    assert layout.mode == kernel.mode
    if kernel.mode == "hybrid":
        assert layout.unified_controllers == {"hugetlb"}
        assert layout.v2_controllers() == {"hugetlb"}
    if kernel.mode == "v2":
        assert layout.v1 == [] and "memory" in layout.v2_controllers()
    if kernel.mode != "v2":
        cpu = layout.v1[0]
        assert cpu.controllers == ("cpu", "cpuacct") and cpu.data == "cpu,cpuacct"


def test_mountinfo_details() -> None:
    text = (
        "1 0 0:1 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory,clone_children\n"
        "2 0 0:1 / /sys/fs/cgroup/memory\\040copy rw - cgroup cgroup rw,memory\n"
        "3 0 0:2 /docker/abc /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n"
        "4 0 0:3 / /elsewhere/cpu rw - cgroup cgroup rw,cpu\n"
        "5 0 0:4 / /sys/fs/cgroup/net_cls,net_prio rw shared:5 - cgroup cgroup "
        "rw,net_cls,net_prio\n"
    )
    layout = parse_mountinfo(text)
    assert layout.mode == "v1"
    # The bind mount of the same hierarchy is ignored, the one outside the root too.
    assert [(h.mountpoint, h.controllers, h.root) for h in layout.v1] == [
        ("/sys/fs/cgroup/memory", ("memory",), "/"),
        ("/sys/fs/cgroup/pids", ("pids",), "/docker/abc"),
        ("/sys/fs/cgroup/net_cls,net_prio", ("net_cls", "net_prio"), "/"),
    ]
    # Inside a cgroup namespace-less container the mount root is stripped from paths.
    assert layout.v1[1].dir_for("/docker/abc/pallet/x") == "/sys/fs/cgroup/pids/pallet/x"
    with pytest.raises(NotSupported):
        parse_mountinfo("1 0 0:1 / /proc rw - proc proc rw\n")


# --- path resolution ----------------------------------------------------------------------


def test_default_path(kernel: FakeKernel) -> None:
    cg = Cgroup.open(None, "c1", layout=kernel.layout())
    paths = cg.paths()
    r = kernel.root
    if kernel.mode == "v2":
        assert paths == {"": f"{r}/pallet/c1"}
    else:
        assert paths["cpu"] == paths["cpuacct"] == f"{r}/cpu,cpuacct/pallet/c1"
        assert paths["memory"] == f"{r}/memory/pallet/c1"
        assert paths["name=systemd"] == f"{r}/systemd/pallet/c1"
    if kernel.mode == "hybrid":
        assert paths[""] == f"{r}/unified/pallet/c1"
    assert not os.path.exists(f"{r}/pallet") and not os.path.exists(f"{r}/memory/pallet")


def test_absolute_and_relative_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    k = make("hybrid", tmp_path, monkeypatch)
    r = k.root
    cg = Cgroup.open("/kube//pod1/./ctr", "c1", layout=k.layout())
    assert cg.paths()["memory"] == f"{r}/memory/kube/pod1/ctr"
    own = "4:memory:/process_api/abc\n1:cpu,cpuacct:/\n9:name=systemd:/user.slice\n0::/init.scope\n"
    cg = Cgroup.open("sub/ctr", "c1", layout=k.layout(), proc_self_cgroup=own)
    paths = cg.paths()
    assert paths["memory"] == f"{r}/memory/process_api/abc/sub/ctr"
    assert paths["cpu"] == f"{r}/cpu,cpuacct/sub/ctr"
    assert paths["name=systemd"] == f"{r}/systemd/user.slice/sub/ctr"
    assert paths[""] == f"{r}/unified/init.scope/sub/ctr"
    assert paths["pids"] == f"{r}/pids/sub/ctr"  # not in /proc/self/cgroup: from the root


@pytest.mark.parametrize(
    ("path", "cid"), [("/a/../b", "c1"), ("../x", "c1"), ("/", "c1"), (None, "a/b"), (None, "..")]
)
def test_rejected_paths(path: str | None, cid: str, tmp_path: Path) -> None:
    layout = Layout(unified=None, v1=parse_mountinfo(HOST_MOUNTINFO).v1)
    with pytest.raises(InvalidArgument):
        Cgroup.open(path, cid, layout=layout, proc_self_cgroup="")


# --- create / apply -----------------------------------------------------------------------


def test_create_makes_every_dir_and_prepares_parents(kernel: FakeKernel) -> None:
    cg = Cgroup.open(None, "c1", layout=kernel.layout())
    cg.create()
    for d in set(cg.paths().values()):
        assert os.path.isdir(d)
    r = kernel.root
    if kernel.mode != "v2":
        for d in (f"{r}/cpuset/pallet", f"{r}/cpuset/pallet/c1"):
            assert read(f"{d}/cpuset.cpus") == "0-1" and read(f"{d}/cpuset.mems") == "0"
    if kernel.mode == "hybrid":
        # Only what the cgroup2 tree carries, enabled down to the leaf's parent.
        assert read(f"{r}/unified/cgroup.subtree_control") == "hugetlb"
        assert read(f"{r}/unified/pallet/cgroup.subtree_control") == "hugetlb"
        assert read(f"{r}/unified/pallet/c1/cgroup.subtree_control") == ""
    if kernel.mode == "v2":
        assert read(f"{r}/pallet/cgroup.subtree_control") == "cpu cpuset hugetlb io memory pids"
        assert read(f"{r}/pallet/c1/cgroup.subtree_control") == ""
    # A second container reuses /pallet; create() is idempotent for an existing leaf.
    Cgroup.open(None, "c2", layout=kernel.layout()).create()
    cg.create()


FULL = {
    "devices": [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
    ],
    "memory": {"limit": 64 << 20, "swap": 128 << 20, "reservation": 32 << 20},
    "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "1", "mems": "0"},
    "pids": {"limit": 50},
    "blockIO": {"weight": 500, "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 7}]},
    "hugepageLimits": [{"pageSize": "2MB", "limit": 2 << 20}],
}


def test_apply_v1_and_hybrid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for mode in ("v1", "hybrid"):
        k = make(mode, tmp_path / mode, monkeypatch)
        cg = Cgroup.open(None, "c1", layout=k.layout())
        cg.create()
        res = parse_resources(FULL if mode == "hybrid" else {**FULL, "hugepageLimits": None})
        cg.apply(res)
        p = cg.paths()
        assert read(f"{p['memory']}/memory.limit_in_bytes") == str(64 << 20)
        assert read(f"{p['memory']}/memory.memsw.limit_in_bytes") == str(128 << 20)
        assert read(f"{p['memory']}/memory.soft_limit_in_bytes") == str(32 << 20)
        assert read(f"{p['cpu']}/cpu.shares") == "1024"
        assert read(f"{p['cpu']}/cpu.cfs_quota_us") == "50000"
        assert read(f"{p['cpuset']}/cpuset.cpus") == "1"
        assert read(f"{p['pids']}/pids.max") == "50"
        assert read(f"{p['blkio']}/blkio.bfq.weight") == "500"
        assert read(f"{p['blkio']}/blkio.throttle.read_bps_device") == "8:0 7"
        dev_writes = [(f, v) for f, v in k.writes if f.startswith(p["devices"] + "/")]
        assert dev_writes == [
            (f"{p['devices']}/devices.deny", "a"),
            (f"{p['devices']}/devices.deny", "a"),
            (f"{p['devices']}/devices.allow", "c 1:3 rwm"),
        ]
        assert cg.devices_enforced
        if mode == "hybrid":
            # hugetlb lives in the cgroup2 tree here: its limit goes there.
            assert read(f"{p['']}/hugetlb.2MB.max") == str(2 << 20)
        else:
            with pytest.raises(NotSupported, match="needs the hugetlb controller"):
                cg.apply(parse_resources({"hugepageLimits": FULL["hugepageLimits"]}))


def test_apply_v2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    k = make("v2", tmp_path, monkeypatch)
    cg = Cgroup.open(None, "c1", layout=k.layout())
    cg.create()
    cg.apply(parse_resources({**FULL, "unified": {"pids.max": "40"}}))
    d = cg.paths()[""]
    assert read(f"{d}/memory.max") == str(64 << 20)
    assert read(f"{d}/memory.swap.max") == str(64 << 20)
    assert read(f"{d}/memory.low") == str(32 << 20)
    assert read(f"{d}/cpu.weight") == "100"
    assert read(f"{d}/cpu.max") == "50000 100000"
    assert read(f"{d}/cpuset.cpus") == "1"
    assert read(f"{d}/pids.max") == "40"  # unified overrides the converted value
    assert read(f"{d}/io.weight") == "default 4950"
    assert read(f"{d}/io.max") == "8:0 rbps=7"
    assert read(f"{d}/hugetlb.2MB.max") == str(2 << 20)
    assert not cg.devices_enforced


@pytest.mark.parametrize(
    ("mode", "doc", "message"),
    [
        ("hybrid", {"network": {"classID": 1}}, "network.classID needs the net_cls controller"),
        ("v2", {"network": {"priorities": [{"name": "lo", "priority": 1}]}}, "net_prio"),
        ("v1", {"unified": {"memory.high": "1"}}, "needs cgroup v2; this host mounts only v1"),
        ("hybrid", {"unified": {"memory.high": "1"}}, "memory controller is on cgroup v1"),
        ("v2", {"cpu": {"realtimeRuntime": 10}}, "real-time"),
        ("v2", {"memory": {"disableOOMKiller": True}}, "disableOOMKiller"),
        (
            "v2",
            {"devices": [{"allow": True}, {"allow": False, "type": "c", "major": 1, "minor": 3}]},
            "cannot be enforced",
        ),
        ("hybrid", {"hugepageLimits": [{"pageSize": "1GB", "limit": 1}]}, "size 1GB"),
    ],
)
def test_unsupported_on_this_host(
    mode: str, doc: dict[str, object], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    k = make(mode, tmp_path, monkeypatch)
    cg = Cgroup.open(None, "c1", layout=k.layout())
    cg.create()
    with pytest.raises(NotSupported, match=message):
        cg.apply(parse_resources(doc))


def test_hybrid_unified_file_in_the_cgroup2_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    k = make("hybrid", tmp_path, monkeypatch)
    cg = Cgroup.open(None, "c1", layout=k.layout())
    cg.create()
    cg.apply(parse_resources({"unified": {"hugetlb.2MB.max": "4194304"}}))
    assert read(f"{cg.paths()['']}/hugetlb.2MB.max") == "4194304"


# --- processes, freezer, stats ------------------------------------------------------------


def test_add_pid_and_pids(kernel: FakeKernel) -> None:
    cg = Cgroup.open(None, "c1", layout=kernel.layout())
    cg.create()
    cg.add_pid(4242)
    targets = sorted(f.rsplit("/", 1)[1] for f, v in kernel.writes if v == "4242")
    if kernel.mode == "v1":
        assert targets == ["tasks"] * 8  # one per hierarchy (cpu,cpuacct is one)
    elif kernel.mode == "hybrid":
        assert targets == ["cgroup.procs"] + ["tasks"] * 8
    else:
        assert targets == ["cgroup.procs"]
    # pids() reads the pids hierarchy (or the cgroup2 tree), nested cgroups included.
    d = cg.paths().get("pids") or cg.paths()[""]
    Path(d, "cgroup.procs").write_text("10\n11\n")
    os.mkdir(f"{d}/inner")
    Path(d, "inner", "cgroup.procs").write_text("12\n")
    assert cg.pids() == [10, 11, 12]
    assert Cgroup.open(None, "nope", layout=kernel.layout()).pids() == []


def test_freeze_thaw(kernel: FakeKernel) -> None:
    cg = Cgroup.open(None, "c1", layout=kernel.layout())
    cg.create()
    assert not cg.frozen()
    cg.freeze()
    assert cg.frozen()
    cg.thaw()
    assert not cg.frozen()


def test_stats_route_per_controller(kernel: FakeKernel) -> None:
    cg = Cgroup.open(None, "c1", layout=kernel.layout())
    cg.create()
    s = cg.stats()
    assert set(s) >= {"cpu", "memory", "pids"}
    if kernel.mode in ("hybrid", "v2"):
        assert s["hugetlb"] == {"2MB": {"usage": 0, "max": 0, "failcnt": 0}}
    else:
        assert "hugetlb" not in s
    assert cg.oom_kills() == 0
    if kernel.mode == "v2":
        Path(cg.paths()[""], "memory.events").write_text("oom 2\noom_kill 2\n")
    else:
        Path(cg.paths()["memory"], "memory.oom_control").write_text("oom_kill 2\n")
    assert cg.oom_kills() == 2


# --- destroy ------------------------------------------------------------------------------


def test_destroy_removes_all_and_the_empty_default_parent(kernel: FakeKernel) -> None:
    r = kernel.root
    before = sorted(p for p, _, _ in os.walk(r))
    cg = Cgroup.open(None, "c1", layout=kernel.layout())
    cg.create()
    os.mkdir(f"{cg.paths().get('memory') or cg.paths()['']}/made-inside")
    cg.destroy()
    assert sorted(p for p, _, _ in os.walk(r)) == before
    cg.destroy()  # already gone: fine


def test_destroy_keeps_a_shared_parent(kernel: FakeKernel) -> None:
    a = Cgroup.open(None, "a", layout=kernel.layout())
    b = Cgroup.open(None, "b", layout=kernel.layout())
    a.create()
    b.create()
    a.destroy()
    for d in b.paths().values():
        assert os.path.isdir(d)
    # Reopened from saved paths, destroy still removes the leaf and the empty /pallet.
    Cgroup.from_paths(b.paths(), layout=kernel.layout()).destroy()
    for d in b.paths().values():
        assert not os.path.exists(d) and not os.path.exists(os.path.dirname(d))


def test_destroy_waits_then_reports_busy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    k = make("v2", tmp_path, monkeypatch)
    cg = Cgroup.open(None, "c1", layout=k.layout())
    cg.create()
    monkeypatch.setattr(tree, "RMDIR_DELAYS", (0, 0))
    attempts = []

    def busy(path: str) -> None:
        attempts.append(path)
        raise OSError(errno.EBUSY, "busy", path)

    monkeypatch.setattr(fs, "rmdir", busy)
    with pytest.raises(Conflict, match="processes are still inside"):
        cg.destroy()
    assert len(attempts) == 3


# --- state round trip, mounts -------------------------------------------------------------


def test_from_paths_round_trip(kernel: FakeKernel) -> None:
    cg = Cgroup.open(None, "c1", layout=kernel.layout())
    cg.create()
    again = Cgroup.from_paths(cg.paths(), layout=kernel.layout())
    assert again.paths() == cg.paths() and again.mode == kernel.mode
    again.apply(parse_resources({"pids": {"limit": 7}}))
    d = cg.paths().get("pids") or cg.paths()[""]
    assert read(f"{d}/pids.max") == "7"


def test_mounts(kernel: FakeKernel) -> None:
    cg = Cgroup.open(None, "c1", layout=kernel.layout())
    r = kernel.root
    mounts = cg.mounts()
    if kernel.mode == "v2":
        assert mounts == [("", "cgroup2", "", f"{r}/pallet/c1")]
        return
    assert mounts[0] == ("cpu,cpuacct", "cgroup", "cpu,cpuacct", f"{r}/cpu,cpuacct/pallet/c1")
    assert ("systemd", "cgroup", "name=systemd", f"{r}/systemd/pallet/c1") in mounts
    if kernel.mode == "hybrid":
        assert mounts[-1] == ("unified", "cgroup2", "", f"{r}/unified/pallet/c1")
    else:
        assert all(m[1] == "cgroup" for m in mounts)
