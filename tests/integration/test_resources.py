"""linux.resources in effect: memory (OOM kill), pids, cpu, cpuset, freezer (pause)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

import pytest

from tests.support.runtime import Bundle, Runtime, ok, run_sh

pytestmark = pytest.mark.root

MiB = 1 << 20


def wait_for(what: str, predicate: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def resources(bundle: Bundle) -> dict[str, object]:
    res: dict[str, object] = bundle.linux.setdefault("resources", {})
    return res


def cgroup_dir(rt: Runtime, cid: str, controller: str) -> str:
    """The container's cgroup directory on the host, as its state records it."""
    with open(os.path.join(rt.root, cid, "state.json")) as f:
        paths: dict[str, str] = json.load(f)["cgroupPaths"]
    return paths[controller]


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def test_memory_limit_is_in_effect_inside(rt: Runtime, bundle: Bundle) -> None:
    resources(bundle)["memory"] = {"limit": 32 * MiB, "reservation": 16 * MiB}
    out = ok(run_sh(rt, bundle, "cat /sys/fs/cgroup/memory/memory.limit_in_bytes "
                                "/sys/fs/cgroup/memory/memory.soft_limit_in_bytes; "
                                "dd if=/dev/zero of=/dev/null bs=8M count=1 2>/dev/null "
                                "&& echo small-ok"))
    assert out == [str(32 * MiB), str(16 * MiB), "small-ok"]


def test_allocation_over_the_limit_is_oom_killed(rt: Runtime, bundle: Bundle) -> None:
    resources(bundle)["memory"] = {"limit": 32 * MiB}
    proc = run_sh(rt, bundle, "dd if=/dev/zero of=/dev/null bs=100M count=1")
    assert proc.returncode == 137, proc.stderr  # SIGKILL, from the OOM killer


def test_oom_kill_is_counted(rt: Runtime, bundle: Bundle) -> None:
    resources(bundle)["memory"] = {"limit": 32 * MiB}
    bundle.process["args"] = ["sh", "-c", "dd if=/dev/zero of=/dev/null bs=100M count=1; "
                              "echo $? > /rc; exec sleep 100"]
    bundle.write()
    cid = rt.new_id()
    rc_file = os.path.join(bundle.rootfs, "rc")
    rt("run", "-d", "--bundle", bundle.path, cid)
    wait_for("dd to be killed", lambda: os.path.exists(rc_file) and read(rc_file))
    assert read(rc_file) == "137"
    oom_control = dict(line.split() for line in
                       read(os.path.join(cgroup_dir(rt, cid, "memory"),
                                         "memory.oom_control")).splitlines())
    assert oom_control["oom_kill"] == "1"
    events = rt("events", "--stats", cid, check=False)
    if events.returncode == 0:
        ev = json.loads(events.stdout)
        assert ev["type"] == "stats" and ev["id"] == cid
        assert ev["data"]["memory"]["oom_kill"] == 1
    assert rt.state(cid)["status"] == "running"  # only dd died
    rt("delete", "--force", cid)


def test_pids_limit_bounds_a_fork_bomb(rt: Runtime, bundle: Bundle) -> None:
    resources(bundle)["pids"] = {"limit": 10}
    proc = run_sh(rt, bundle, "cat /sys/fs/cgroup/pids/pids.max; "
                              "(for i in $(seq 50); do sleep 10 & done; echo all-50-forked); "
                              "cat /sys/fs/cgroup/pids/pids.current")
    lines = proc.stdout.splitlines()
    assert lines[0] == "10"
    assert "all-50-forked" not in lines
    assert int(lines[-1]) <= 10
    assert "can't fork" in proc.stderr


def test_cpu_shares_and_quota(rt: Runtime, bundle: Bundle) -> None:
    resources(bundle)["cpu"] = {"shares": 512, "quota": 50000, "period": 100000}
    out = ok(run_sh(rt, bundle, "cd /sys/fs/cgroup/cpu && "
                                "cat cpu.shares cpu.cfs_quota_us cpu.cfs_period_us"))
    assert out == ["512", "50000", "100000"]


def test_cpuset(rt: Runtime, bundle: Bundle) -> None:
    resources(bundle)["cpu"] = {"cpus": "0", "mems": "0"}
    out = ok(run_sh(rt, bundle, "cat /sys/fs/cgroup/cpuset/cpuset.cpus; "
                                "grep Cpus_allowed_list /proc/self/status"))
    assert out[0] == "0"
    assert out[1].split() == ["Cpus_allowed_list:", "0"]


def test_limits_set_on_the_host_cgroup(rt: Runtime, bundle: Bundle) -> None:
    res = resources(bundle)
    res["memory"] = {"limit": 48 * MiB}
    res["pids"] = {"limit": 33}
    res["cpu"] = {"shares": 256}
    bundle.process["args"] = ["sleep", "100"]
    bundle.write()
    cid = rt.new_id()
    rt("create", "--bundle", bundle.path, cid)
    assert read(os.path.join(cgroup_dir(rt, cid, "memory"), "memory.limit_in_bytes")) == \
        str(48 * MiB)
    assert read(os.path.join(cgroup_dir(rt, cid, "pids"), "pids.max")) == "33"
    assert read(os.path.join(cgroup_dir(rt, cid, "cpu"), "cpu.shares")) == "256"
    pid = rt.state(cid)["pid"]
    dirs = {ctl: cgroup_dir(rt, cid, ctl) for ctl in ("memory", "pids", "cpu", "freezer")}
    assert str(pid) in read(os.path.join(dirs["pids"], "cgroup.procs")).split()
    rt("delete", "--force", cid)
    assert [d for d in dirs.values() if os.path.exists(d)] == []


def test_pause_and_resume(rt: Runtime, bundle: Bundle) -> None:
    bundle.process["args"] = ["sh", "-c",
                              "i=0; while :; do i=$((i+1)); echo $i > /count.tmp; "
                              "mv /count.tmp /count; done"]
    bundle.write()
    cid = rt.new_id()
    count = os.path.join(bundle.rootfs, "count")

    def counter() -> int:
        try:
            return int(read(count) or 0)
        except FileNotFoundError:
            return 0

    rt("run", "-d", "--bundle", bundle.path, cid)
    wait_for("the counter to start", lambda: counter() > 10)
    rt("pause", cid)
    assert rt.state(cid)["status"] == "paused"
    assert read(os.path.join(cgroup_dir(rt, cid, "freezer"), "freezer.state")) == "FROZEN"
    frozen_at = counter()
    time.sleep(0.2)
    assert counter() == frozen_at, "the counter advanced while paused"
    assert rt("pause", cid, check=False).returncode == 1  # already paused
    rt("resume", cid)
    assert rt.state(cid)["status"] == "running"
    wait_for("the counter to advance", lambda: counter() > frozen_at + 10)
    assert rt("resume", cid, check=False).returncode == 1  # not paused


def test_delete_force_of_a_paused_container(rt: Runtime, bundle: Bundle) -> None:
    bundle.process["args"] = ["sleep", "100"]
    bundle.write()
    cid = rt.new_id()
    rt("run", "-d", "--bundle", bundle.path, cid)
    pid = rt.state(cid)["pid"]
    rt("pause", cid)
    freezer = cgroup_dir(rt, cid, "freezer")
    rt("delete", "--force", cid)
    assert not os.path.exists(freezer)
    assert not os.path.exists(f"/proc/{pid}") or read(f"/proc/{pid}/stat").split()[2] == "Z"
