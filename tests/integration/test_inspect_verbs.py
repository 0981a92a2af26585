"""ps, events, update and features on real containers, checked where a user looks.

Limits set by `update` are read from INSIDE the container: its shell copies what it sees
in /sys/fs/cgroup (where the default spec mounts the container's cgroups) into a file
of its rootfs every 50 ms, which the test reads from the host.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from tests.support.runtime import Bundle, Runtime, runtime_command

pytestmark = pytest.mark.root

# Detached containers must not hold the test's stdout pipe, or `run -d` never returns
# to subprocess.run (it waits for EOF on the pipe the container inherited).
QUIET = "exec >/dev/null 2>&1 </dev/null; "

WATCH_LIMITS = QUIET + (
    "while :; do "
    "{ cat /sys/fs/cgroup/memory/memory.limit_in_bytes; cat /sys/fs/cgroup/pids/pids.max; } "
    "> /tmp/limits.tmp && mv /tmp/limits.tmp /tmp/limits; sleep 0.05; done"
)


def run_detached(rt: Runtime, bundle: Bundle, script: str) -> str:
    bundle.process["args"] = ["sh", "-c", script]
    bundle.write()
    cid = rt.new_id()
    rt("run", "-d", "--bundle", bundle.path, cid)
    return cid


def wait_stopped(rt: Runtime, cid: str) -> None:
    deadline = time.monotonic() + 10
    while rt.state(cid)["status"] != "stopped":
        assert time.monotonic() < deadline, f"{cid} did not stop"
        time.sleep(0.02)


def seen_limits(bundle: Bundle, want: tuple[str, str] | None = None) -> tuple[str, str]:
    """(memory.limit_in_bytes, pids.max) as the container last saw them; waits for
    ``want`` if given (the container looks every 50 ms)."""
    path = os.path.join(bundle.rootfs, "tmp", "limits")
    deadline = time.monotonic() + 5
    while True:
        try:
            with open(path) as f:
                lines = f.read().split()
        except FileNotFoundError:
            lines = []
        seen = (lines[0], lines[1]) if len(lines) == 2 else ("", "")
        if seen[0] and (want is None or seen == want or time.monotonic() > deadline):
            return seen
        assert time.monotonic() < deadline, f"the container wrote no limits to {path}"
        time.sleep(0.02)


# --- ps ---------------------------------------------------------------------------------


def test_ps_lists_the_containers_processes(rt: Runtime, bundle: Bundle) -> None:
    cid = run_detached(rt, bundle, QUIET + "sleep 1000 & wait")
    init = rt.state(cid)["pid"]
    deadline = time.monotonic() + 5
    while True:
        pids = json.loads(rt("ps", "--format", "json", cid).stdout)
        if len(pids) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert init in pids and len(pids) == 2, pids

    table = rt("ps", cid).stdout.splitlines()
    assert table[0].split()[:3] == ["UID", "PID", "PPID"]  # procps `ps -ef`
    rows = {int(line.split()[1]): line for line in table[1:]}
    assert set(rows) == set(pids)
    assert any(line.endswith("sleep 1000") for line in rows.values())
    assert os.getpid() not in rows  # nothing from outside the container


def test_ps_passes_options_to_ps(rt: Runtime, bundle: Bundle) -> None:
    cid = run_detached(rt, bundle, QUIET + "exec sleep 1000")
    out = rt("ps", cid, "-o", "pid,comm").stdout.split()
    assert out == ["PID", "COMMAND", str(rt.state(cid)["pid"]), "sleep"]


def test_ps_of_a_stopped_container_fails(rt: Runtime, bundle: Bundle) -> None:
    cid = run_detached(rt, bundle, QUIET + "true")
    wait_stopped(rt, cid)
    proc = rt("ps", cid, check=False)
    assert proc.returncode == 1 and "stopped" in proc.stderr
    assert proc.stdout == ""


# --- events -----------------------------------------------------------------------------


def test_events_stats_reports_pids_and_memory(rt: Runtime, bundle: Bundle) -> None:
    cid = run_detached(rt, bundle, QUIET + "sleep 1000 & wait")
    out = rt("events", "--stats", cid).stdout
    assert out.count("\n") == 1  # one JSON object, one line
    ev = json.loads(out)
    assert ev["type"] == "stats" and ev["id"] == cid
    data = ev["data"]
    assert data["pids"]["current"] >= 1
    assert data["memory"]["usage"]["usage"] > 0
    assert data["cpu"]["usage"]["total"] > 0


def test_events_streams_until_the_container_stops(rt: Runtime, bundle: Bundle) -> None:
    cid = run_detached(rt, bundle, QUIET + "sleep 1")
    started = time.monotonic()
    proc = rt("events", "--interval", "200ms", cid, timeout=10)
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - started < 3  # ended with the container, not later
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(events) >= 2
    assert {e["type"] for e in events} == {"stats"}
    assert all(e["id"] == cid and e["data"]["pids"]["current"] >= 1 for e in events)


def test_events_reports_an_oom_kill(rt: Runtime, bundle: Bundle) -> None:
    limit = 16 << 20
    bundle.linux["resources"] = {"memory": {"limit": limit, "swap": limit}}
    # tail buffers a line that never ends: it grows until the OOM killer takes it.
    cid = run_detached(rt, bundle, QUIET + "sleep 0.5; tail /dev/zero; sleep 0.5")
    proc = rt("events", "--interval", "10s", cid, timeout=20)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert {"type": "oom", "id": cid} in events


def test_events_of_a_stopped_container_fails(rt: Runtime, bundle: Bundle) -> None:
    cid = run_detached(rt, bundle, QUIET + "true")
    wait_stopped(rt, cid)
    proc = rt("events", "--stats", cid, check=False)
    assert proc.returncode == 1 and "is not running" in proc.stderr


# --- update -----------------------------------------------------------------------------


def test_update_memory_and_pids_limit_show_inside(rt: Runtime, bundle: Bundle) -> None:
    bundle.linux["resources"] = {"memory": {"limit": 256 << 20}, "pids": {"limit": 100}}
    cid = run_detached(rt, bundle, WATCH_LIMITS)
    assert seen_limits(bundle) == (str(256 << 20), "100")
    rt("update", "--memory", "128m", "--pids-limit", "42", cid)
    assert seen_limits(bundle, (str(128 << 20), "42")) == (str(128 << 20), "42")
    # A second update keeps what the first one set.
    rt("update", "--memory", "96m", cid)
    assert seen_limits(bundle, (str(96 << 20), "42")) == (str(96 << 20), "42")


def test_update_resources_from_stdin(rt: Runtime, bundle: Bundle) -> None:
    cid = run_detached(rt, bundle, WATCH_LIMITS)
    body = {"memory": {"limit": 64 << 20}, "pids": {"limit": 33}}
    rt("update", "--resources", "-", cid, input=json.dumps(body).encode())
    assert seen_limits(bundle, (str(64 << 20), "33")) == (str(64 << 20), "33")


def test_update_pids_limit_minus_one_lifts_the_limit(rt: Runtime, bundle: Bundle) -> None:
    bundle.linux["resources"] = {"pids": {"limit": 20}}
    cid = run_detached(rt, bundle, WATCH_LIMITS)
    rt("update", "--pids-limit", "-1", cid)
    assert seen_limits(bundle, (seen_limits(bundle)[0], "max"))[1] == "max"


def test_invalid_update_changes_nothing(rt: Runtime, bundle: Bundle) -> None:
    bundle.linux["resources"] = {"memory": {"limit": 256 << 20}, "pids": {"limit": 100}}
    cid = run_detached(rt, bundle, WATCH_LIMITS)
    bad = rt("update", "--resources", "-", cid, check=False,
             input=b'{"memory": {"limit": 1048576}, "pids": {"limit": "many"}}')
    assert bad.returncode == 1 and "resources.pids.limit" in bad.stderr
    bad = rt("update", "--memory", "12zz", cid, check=False)
    assert bad.returncode == 1 and "invalid value for memory" in bad.stderr
    time.sleep(0.2)
    assert seen_limits(bundle) == (str(256 << 20), "100")


def test_update_of_a_stopped_container_fails(rt: Runtime, bundle: Bundle) -> None:
    cid = run_detached(rt, bundle, QUIET + "true")
    wait_stopped(rt, cid)
    proc = rt("update", "--memory", "64m", cid, check=False)
    assert proc.returncode == 1 and "stopped" in proc.stderr


# --- features ---------------------------------------------------------------------------


def test_features_is_json_naming_namespaces_and_seccomp_actions(rt: Runtime) -> None:
    feat = json.loads(rt("features").stdout)
    assert feat["ociVersionMin"] == "1.0.0"
    linux = feat["linux"]
    assert {"cgroup", "ipc", "mount", "network", "pid", "user", "uts"} <= set(
        linux["namespaces"])
    assert {"SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL"} <= set(
        linux["seccomp"]["actions"])
    with open("/proc/sys/kernel/cap_last_cap") as f:
        assert len(linux["capabilities"]) == min(int(f.read()) + 1, 41)


def test_features_takes_no_arguments() -> None:
    proc = subprocess.run([*runtime_command(), "features", "extra"], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 1 and "takes no arguments" in proc.stderr
