"""The verbs a user (or containerd) drives: run, create/start/state/kill/delete, list."""

from __future__ import annotations

import json
import os
import time

import pytest

from tests.support.runtime import Bundle, Runtime

pytestmark = pytest.mark.root


def test_run_prints_from_inside_and_returns_exit_code(rt: Runtime, bundle: Bundle) -> None:
    bundle.process["args"] = ["sh", "-c", "echo hello from $(hostname) pid $$; exit 7"]
    bundle.write()
    proc = rt("run", "--bundle", bundle.path, rt.new_id(), check=False)
    assert proc.returncode == 7, proc.stderr
    assert proc.stdout == "hello from pallet pid 1\n"


def test_run_removes_the_container_afterwards(rt: Runtime, bundle: Bundle) -> None:
    cid = rt.new_id()
    rt("run", "-b", bundle.path, cid)
    assert rt("list", "-q").stdout == ""


def test_create_blocks_until_start(rt: Runtime, bundle: Bundle, tmp_path: str) -> None:
    marker = os.path.join(bundle.rootfs, "started")
    bundle.process["args"] = ["touch", "/started"]
    bundle.write()
    cid = rt.new_id()
    pidfile = os.path.join(str(tmp_path), "pid")
    rt("create", "--bundle", bundle.path, "--pid-file", pidfile, cid)
    st = rt.state(cid)
    assert st["status"] == "created"
    assert st["id"] == cid and st["bundle"] == bundle.path
    with open(pidfile) as f:
        assert int(f.read()) == st["pid"] > 0
    time.sleep(0.2)
    assert not os.path.exists(marker), "the user process ran before start"
    rt("start", cid)
    deadline = time.monotonic() + 5
    while rt.state(cid)["status"] != "stopped" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert os.path.exists(marker)
    assert rt.state(cid)["status"] == "stopped"
    rt("delete", cid)
    assert rt("state", cid, check=False).returncode == 1


def test_kill_and_delete_running_container(rt: Runtime, bundle: Bundle) -> None:
    bundle.process["args"] = ["sleep", "1000"]
    bundle.write()
    cid = rt.new_id()
    rt("run", "-d", "--bundle", bundle.path, cid)
    assert rt.state(cid)["status"] == "running"
    refused = rt("delete", cid, check=False)
    assert refused.returncode == 1 and "not stopped" in refused.stderr
    rt("kill", cid, "KILL")
    deadline = time.monotonic() + 5
    while rt.state(cid)["status"] != "stopped" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert rt.state(cid)["status"] == "stopped"
    again = rt("kill", cid, "TERM", check=False)
    assert again.returncode == 1 and "not running" in again.stderr
    rt("delete", cid)


def test_delete_force_kills_a_running_container(rt: Runtime, bundle: Bundle) -> None:
    bundle.process["args"] = ["sleep", "1000"]
    bundle.write()
    cid = rt.new_id()
    rt("run", "-d", "--bundle", bundle.path, cid)
    pid = rt.state(cid)["pid"]
    rt("delete", "--force", cid)
    assert not os.path.exists(f"/proc/{pid}") or _state_letter(pid) == "Z"


def _state_letter(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_list_formats(rt: Runtime, bundle: Bundle) -> None:
    bundle.process["args"] = ["sleep", "1000"]
    bundle.write()
    cid = rt.new_id()
    rt("create", "--bundle", bundle.path, cid)
    table = rt("list").stdout.splitlines()
    assert table[0].split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    assert table[1].split()[0] == cid and table[1].split()[2] == "created"
    rows = json.loads(rt("list", "--format", "json").stdout)
    assert [r["id"] for r in rows] == [cid] and rows[0]["status"] == "created"
    assert rt("list", "-q").stdout == f"{cid}\n"


def test_state_of_missing_container(rt: Runtime) -> None:
    proc = rt("state", "nosuch", check=False)
    assert proc.returncode == 1
    assert 'level=error msg="container does not exist: nosuch"' in proc.stderr


def test_kill_signal_by_number_and_name(rt: Runtime, bundle: Bundle) -> None:
    bundle.process["args"] = ["sh", "-c", "trap 'exit 3' USR1; while :; do sleep 0.05; done"]
    bundle.write()
    cid = rt.new_id()
    rt("run", "-d", "--bundle", bundle.path, cid)
    time.sleep(0.2)
    rt("kill", cid, "10")  # SIGUSR1
    deadline = time.monotonic() + 5
    while rt.state(cid)["status"] != "stopped" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert rt.state(cid)["status"] == "stopped"
    assert rt("kill", cid, "NOSUCHSIG", check=False).returncode == 1
