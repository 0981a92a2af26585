"""The cgroup layer against the real kernel: create, limit, join, freeze, stats, destroy.

Every cgroup made here has "pallet-test" in its path and is removed by the test's teardown,
which also kills any child left behind; the last assertion of each test is that nothing
of ours is left in any hierarchy.
"""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Iterator

import pytest

from pallet.errors import Conflict
from pallet.oci.resources import merge_update, parse_resources
from pallet.runtime.cgroups import Cgroup, detect_layout, tree, v2

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create cgroups"),
]


class Child:
    """A forked, single-threaded child that blocks on a pipe and works when poked."""

    def __init__(self) -> None:
        self.to_child_r, self.to_child = os.pipe()
        self.from_child, self.from_child_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - runs in the child
            try:
                os.close(self.to_child)
                os.close(self.from_child)
                while True:
                    cmd = os.read(self.to_child_r, 1)
                    if cmd in (b"", b"q"):
                        os._exit(0)
                    if cmd == b"w":  # burn a little CPU and touch some memory
                        data = bytearray(4 << 20)
                        total = sum(range(200_000)) + len(data)
                        os.write(self.from_child_w, b"k" if total else b"?")
                    if cmd == b"m":  # far more memory than the test's limit
                        hog = bytearray(256 << 20)
                        for i in range(0, len(hog), 4096):
                            hog[i] = 1
                        os.write(self.from_child_w, b"k")
            finally:
                os._exit(1)
        os.close(self.to_child_r)
        os.close(self.from_child_w)

    def poke(self, cmd: bytes) -> bytes:
        os.write(self.to_child, cmd)
        return os.read(self.from_child, 1)

    def reap(self) -> int:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _, status = os.waitpid(self.pid, 0)
        for fd in (self.to_child, self.from_child):
            os.close(fd)
        return status


@pytest.fixture
def made() -> Iterator[list[tuple[Cgroup, list[Child]]]]:
    """Cgroups (with their children) to tear down whatever the test did."""
    items: list[tuple[Cgroup, list[Child]]] = []
    yield items
    for cg, children in items:
        for child in children:
            if child.pid:
                try:
                    child.reap()
                except (ChildProcessError, OSError):
                    pass
        cg.destroy()


def our_dirs(tag: str) -> list[str]:
    """Every directory under /sys/fs/cgroup/* whose path holds ``tag`` (two levels deep)."""
    found = []
    for hierarchy in os.scandir("/sys/fs/cgroup"):
        if not hierarchy.is_dir() or hierarchy.is_symlink():
            continue
        for top in os.scandir(hierarchy.path):
            if not top.is_dir():
                continue
            if tag in top.name:
                found.append(top.path)
            elif top.name == "pallet":
                found += [e.path for e in os.scandir(top.path) if tag in e.name]
    return found


def read(directory: str, name: str) -> str:
    with open(f"{directory}/{name}") as f:
        return f.read().strip()


DEVICES = [
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
    {"allow": True, "type": "c", "major": 136, "access": "rw"},
    {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
]


def test_lifecycle(
    made: list[tuple[Cgroup, list[Child]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    tag = f"pallet-test-{os.getpid()}-life"
    cg = Cgroup.open(f"/{tag}/ctr", tag)
    children: list[Child] = []
    made.append((cg, children))
    cg.create()
    paths = cg.paths()
    layout = detect_layout()
    doc: dict[str, object] = {
        "devices": DEVICES,
        "memory": {"limit": 64 << 20, "reservation": 32 << 20},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
        "pids": {"limit": 20},
    }
    if "memory" in paths and os.path.exists(f"{paths['memory']}/memory.memsw.limit_in_bytes"):
        doc["memory"] = {"limit": 64 << 20, "swap": 128 << 20, "reservation": 32 << 20}
    hugetlb = "hugetlb" in layout.v1_controllers() | layout.v2_controllers()
    if hugetlb and os.path.isdir("/sys/kernel/mm/hugepages/hugepages-2048kB"):
        doc["hugepageLimits"] = [{"pageSize": "2MB", "limit": 4 << 20}]
    resources = parse_resources(doc)
    cg.apply(resources)

    child = Child()
    children.append(child)
    cg.add_pid(child.pid)
    with open(f"/proc/{child.pid}/cgroup") as f:
        own = f.read()
    assert f"/{tag}/ctr\n" in own
    assert cg.pids() == [child.pid]
    assert child.poke(b"w") == b"k"

    # Limits as the kernel shows them.
    if layout.mode == "v2":
        d = paths[""]
        assert read(d, "memory.max") == str(64 << 20)
        assert read(d, "pids.max") == "20"
        assert read(d, "cpu.max") == "50000 100000"
        assert read(d, "cpu.weight") == "59"
    else:
        assert read(paths["memory"], "memory.limit_in_bytes") == str(64 << 20)
        assert read(paths["memory"], "memory.soft_limit_in_bytes") == str(32 << 20)
        assert read(paths["pids"], "pids.max") == "20"
        assert read(paths["cpu"], "cpu.shares") == "512"
        assert read(paths["cpu"], "cpu.cfs_quota_us") == "50000"
        assert read(paths["cpuset"], "cpuset.cpus") == "0"
        listing = set(read(paths["devices"], "devices.list").splitlines())
        assert listing == {"c 1:3 rwm", "c 136:* rw"}
        if "swap" in doc["memory"]:  # type: ignore[operator]
            assert read(paths["memory"], "memory.memsw.limit_in_bytes") == str(128 << 20)
    if "hugepageLimits" in doc:
        d = paths.get("hugetlb") or paths[""]
        name = "hugetlb.2MB.limit_in_bytes" if "hugetlb" in paths else "hugetlb.2MB.max"
        assert read(d, name) == str(4 << 20)

    # pause / unpause: a frozen child does not answer.
    cg.freeze()
    assert cg.frozen()
    os.write(child.to_child, b"w")
    time.sleep(0.05)
    assert select.select([child.from_child], [], [], 0)[0] == []
    cg.thaw()
    assert not cg.frozen()
    assert os.read(child.from_child, 1) == b"k"

    s = cg.stats()
    assert s["pids"] == {"current": 1, "limit": 20}
    memory = s["memory"]
    assert isinstance(memory, dict) and memory["usage"]["usage"] > 0
    cpu = s["cpu"]
    assert isinstance(cpu, dict) and cpu["usage"]["total"] > 0
    assert cg.oom_kills() == 0

    # update: a later verb reopens from state.json's paths and lowers the limit.
    again = Cgroup.from_paths(paths)
    again.apply(merge_update(resources, parse_resources({"memory": {"limit": 48 << 20}})))
    if layout.mode == "v2":
        assert read(paths[""], "memory.max") == str(48 << 20)
    else:
        assert read(paths["memory"], "memory.limit_in_bytes") == str(48 << 20)
        assert set(read(paths["devices"], "devices.list").splitlines()) == listing

    # destroy waits for exiting processes; one that stays is reported, not ignored.
    monkeypatch.setattr(tree, "RMDIR_DELAYS", (0.01, 0.01))
    with pytest.raises(Conflict, match="processes are still inside"):
        again.destroy()
    assert child.reap() != 0
    child.pid = 0
    again.destroy()
    cg.destroy()  # removes the /pallet-test-... parents create() made
    assert our_dirs(tag) == []


def test_default_path_and_oom_kill(made: list[tuple[Cgroup, list[Child]]]) -> None:
    tag = f"pallet-test-{os.getpid()}-oom"
    cg = Cgroup.open(None, tag)
    children: list[Child] = []
    made.append((cg, children))
    cg.create()
    assert all(p.endswith(f"/pallet/{tag}") for p in cg.paths().values())
    memory: dict[str, object] = {"limit": 32 << 20}
    if os.path.exists(f"{cg.paths().get('memory', '')}/memory.memsw.limit_in_bytes"):
        memory["swap"] = 32 << 20  # no swapping out of the OOM
    cg.apply(parse_resources({"memory": memory}))
    child = Child()
    children.append(child)
    cg.add_pid(child.pid)
    assert child.poke(b"m") == b""  # killed before it could answer
    status = child.reap()
    child.pid = 0
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert cg.oom_kills() == 1
    memory_stats = cg.stats()["memory"]
    assert isinstance(memory_stats, dict) and memory_stats["oom_kill"] == 1
    cg.destroy()
    assert our_dirs(tag) == []


def test_cgroup2_freezer_in_the_unified_tree(made: list[tuple[Cgroup, list[Child]]]) -> None:
    layout = detect_layout()
    if layout.unified is None:
        pytest.skip("no cgroup2 mount on this host")
    tag = f"pallet-test-{os.getpid()}-v2freeze"
    cg = Cgroup.open(f"/{tag}", tag)
    children: list[Child] = []
    made.append((cg, children))
    cg.create()
    child = Child()
    children.append(child)
    cg.add_pid(child.pid)
    d = cg.paths()[""]
    if not os.path.exists(f"{d}/cgroup.freeze"):
        pytest.skip("kernel without cgroup.freeze")
    v2.freeze(d)
    assert v2.frozen(d)
    v2.thaw(d)
    assert not v2.frozen(d)
    assert child.poke(b"w") == b"k"
    child.reap()
    child.pid = 0
    cg.destroy()
    assert our_dirs(tag) == []
