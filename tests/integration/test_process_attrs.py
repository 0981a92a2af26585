"""Process and platform attributes seen from inside: terminal over the console socket,
I/O priority, scheduler, personality, time namespace offsets, id-mapped mounts and
security labels the host cannot apply."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile

import pytest

from tests.support.console import read_until, recv_master
from tests.support.leftovers import leftovers
from tests.support.runtime import Bundle, Runtime, ok, run_sh

pytestmark = pytest.mark.root


def sh(rt: Runtime, bundle: Bundle, script: str) -> str:
    return "\n".join(ok(run_sh(rt, bundle, script))) + "\n"


def test_init_terminal_over_the_console_socket(
    rt: Runtime, bundle: Bundle, console_socket: tuple[str, socket.socket]
) -> None:
    path, srv = console_socket
    bundle.process["terminal"] = True
    bundle.process["consoleSize"] = {"height": 33, "width": 111}
    bundle.process["args"] = ["sh", "-c", "tty; stty size; grep -c ' /dev/console ' "
                              "/proc/self/mountinfo; read line; echo got $line"]
    bundle.write()
    cid = rt.new_id()
    rt("create", "--bundle", bundle.path, "--console-socket", path, cid)
    master, msg = recv_master(srv)
    assert msg.startswith(b"/dev/pts/")
    try:
        rt("start", cid)
        out = read_until(master, b"1\r\n")
        assert b"/dev/pts/0\r\n" in out
        assert b"33 111\r\n" in out  # consoleSize
        assert out.endswith(b"1\r\n")  # the pty is bind-mounted on /dev/console
        os.write(master, b"ping\n")
        assert b"got ping" in read_until(master, b"got ping")
    finally:
        os.close(master)


def test_io_priority_and_scheduler(rt: Runtime, bundle: Bundle) -> None:
    bundle.process["ioPriority"] = {"class": "IOPRIO_CLASS_IDLE", "priority": 0}
    bundle.process["scheduler"] = {"policy": "SCHED_BATCH", "nice": 7}
    out = sh(rt, bundle, "ionice -p $$; grep -E '^policy' /proc/self/sched; "
                             "cut -d' ' -f19 /proc/self/stat")
    lines = out.split("\n")
    assert lines[0].lower().startswith("idle")
    assert lines[1].split()[-1] == "3"  # SCHED_BATCH
    assert lines[2] == "7"  # nice


def test_personality_linux32(rt: Runtime, bundle: Bundle) -> None:
    bundle.linux["personality"] = {"domain": "LINUX32"}
    assert sh(rt, bundle, "uname -m").strip() in ("i686", "i386", "armv8l")


def test_time_namespace_offsets(rt: Runtime, bundle: Bundle) -> None:
    day = 86400
    bundle.linux["namespaces"].append({"type": "time"})
    bundle.linux["timeOffsets"] = {"boottime": {"secs": 10 * day, "nanosecs": 0},
                                   "monotonic": {"secs": 10 * day, "nanosecs": 0}}
    with open("/proc/uptime") as f:
        host_uptime = float(f.read().split()[0])
    inside = float(sh(rt, bundle, "cat /proc/uptime").split()[0])
    assert 10 * day <= inside - host_uptime < 10 * day + 60


def test_idmapped_bind_mount(rt: Runtime, bundle: Bundle) -> None:
    """As runc: the mapping says the source's id N shows as hostID+N through the mount."""
    src = tempfile.mkdtemp(prefix="pallet-test-idmap-")
    os.chmod(src, 0o755)  # the dir shows as an unmapped owner through the mount
    try:
        path = os.path.join(src, "owned")
        with open(path, "w") as f:
            f.write("x")
        os.chown(path, 0, 0)
        bundle.config["mounts"].append({
            "destination": "/mapped", "type": "bind", "source": src,
            "options": ["bind", "idmap"],
            "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
            "gidMappings": [{"containerID": 0, "hostID": 2000, "size": 1}],
        })
        out = sh(rt, bundle, "stat -c '%u:%g' /mapped/owned /")
        assert out.split() == ["1000:2000", "0:0"]  # only the mount is mapped
        assert os.stat(path).st_uid == 0  # the host's view is unchanged
    finally:
        shutil.rmtree(src)


def test_apparmor_profile_without_apparmor_is_a_clear_error(rt: Runtime, bundle: Bundle,
                                                             tmp_path: str) -> None:
    if os.path.isdir("/sys/kernel/security/apparmor"):
        pytest.skip("this host has AppArmor: the profile would be applied")
    bundle.process["apparmorProfile"] = "docker-default"
    bundle.write()
    cid = rt.new_id()
    proc = rt("create", "--bundle", bundle.path, cid, check=False)
    assert proc.returncode == 1
    assert proc.stderr.count("level=error") == 1
    assert "AppArmor is not enabled on this host" in proc.stderr
    assert leftovers(rt.root, cid, bundle.path) == {}


def test_new_session_keyring_unless_no_new_keyring(rt: Runtime, bundle: Bundle) -> None:
    bundle.linux["maskedPaths"] = []  # /proc/keys is masked by default
    bundle.process["args"] = ["sh", "-c", "grep -o '_ses[^ ]*' /proc/keys || true"]
    bundle.write()
    cid = rt.new_id()
    assert f"_ses.{cid}:" in rt("run", "--bundle", bundle.path, cid).stdout.split()
    other = rt.new_id()
    inherited = rt("run", "--no-new-keyring", "--bundle", bundle.path, other).stdout
    assert f"_ses.{other}" not in inherited


def test_exec_joins_the_containers_session_keyring(rt: Runtime, bundle: Bundle) -> None:
    bundle.linux["maskedPaths"] = []
    bundle.process["args"] = ["sleep", "1000"]
    bundle.write()
    cid = rt.new_id()
    rt("run", "-d", "--bundle", bundle.path, cid)
    out = rt("exec", cid, "sh", "-c", "grep -o '_ses[^ ]*' /proc/keys").stdout.split()
    assert f"_ses.{cid}:" in out
