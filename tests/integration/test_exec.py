"""`pallet-runtime exec`: a new process inside a running container, seen from inside it."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import signal
import socket
import subprocess
import termios
import time

import pytest

from pallet.linux import caps
from tests.support.console import read_until, recv_master
from tests.support.runtime import Bundle, Runtime, runtime_command

pytestmark = pytest.mark.root

NAMESPACES = ("cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts")
NOT_FOUND = 'exec: \\"nosuch\\": executable file not found in $PATH'


def _running(rt: Runtime, bundle: Bundle) -> str:
    """A running container whose init sleeps; returns its id."""
    bundle.process["args"] = ["sleep", "1000"]
    bundle.write()
    cid = rt.new_id()
    rt("run", "-d", "--bundle", bundle.path, cid)
    return cid


def _all_namespaces(bundle: Bundle) -> None:
    """Every namespace kind, the user namespace mapping ids onto themselves."""
    lx = bundle.linux
    have = {ns["type"] for ns in lx["namespaces"]}
    lx["namespaces"] += [{"type": t} for t in ("user", "cgroup", "time") if t not in have]
    lx["uidMappings"] = [{"containerID": 0, "hostID": 0, "size": 65536}]
    lx["gidMappings"] = [{"containerID": 0, "hostID": 0, "size": 65536}]
    # sysfs cannot be mounted from a user namespace that does not own the host's; the
    # tests here do not need /sys.
    bundle.config["mounts"] = [m for m in bundle.config["mounts"]
                               if not m["destination"].startswith("/sys")]


def _init_pid(rt: Runtime, cid: str) -> int:
    pid: int = rt.state(cid)["pid"]
    return pid


@pytest.fixture
def ctr(rt: Runtime, bundle: Bundle) -> str:
    return _running(rt, bundle)


def test_exec_joins_every_namespace_of_init(rt: Runtime, bundle: Bundle) -> None:
    _all_namespaces(bundle)
    cid = _running(rt, bundle)
    script = "; ".join(f"echo {n} $(readlink /proc/1/ns/{n}) $(readlink /proc/self/ns/{n})"
                       for n in NAMESPACES)
    out = rt("exec", cid, "sh", "-c", script).stdout.splitlines()
    host_init = _init_pid(rt, cid)
    assert len(out) == len(NAMESPACES)
    for line in out:
        name, init_ns, own_ns = line.split()
        assert own_ns == init_ns, f"exec is not in init's {name} namespace"
        # ...and that is really the container's, not the host's
        assert init_ns == os.readlink(f"/proc/{host_init}/ns/{name}")
        assert init_ns != os.readlink(f"/proc/self/ns/{name}"), name


def test_exec_sees_the_containers_init_as_pid_1(rt: Runtime, ctr: str) -> None:
    out = rt("exec", ctr, "sh", "-c", "tr '\\0' ' ' </proc/1/cmdline; echo; echo $$").stdout
    cmdline, own_pid = out.splitlines()
    assert cmdline.split() == ["sleep", "1000"]
    assert int(own_pid) > 1


def test_exec_is_in_the_containers_cgroup(rt: Runtime, ctr: str) -> None:
    out = rt("exec", ctr, "sh", "-c", "cat /proc/self/cgroup; echo --; cat /proc/1/cgroup").stdout
    own, init = out.split("--\n")
    assert own == init
    with open(f"/proc/{_init_pid(rt, ctr)}/cgroup") as f:
        assert own == f.read()  # no cgroup namespace here: the host's view is the same


def test_exec_returns_the_exit_code(rt: Runtime, ctr: str) -> None:
    assert rt("exec", ctr, "sh", "-c", "exit 42", check=False).returncode == 42
    killed = rt("exec", ctr, "sh", "-c", "kill -TERM $$", check=False)
    assert killed.returncode == 128 + signal.SIGTERM
    assert rt("exec", ctr, "true").returncode == 0


def test_exec_forwards_signals_in_the_foreground(rt: Runtime, ctr: str) -> None:
    proc = subprocess.Popen(
        [*runtime_command(), "--root", rt.root, "exec", ctr, "sh", "-c",
         'trap "echo got TERM; exit 9" TERM; echo ready; while :; do sleep 0.05; done'],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 9, err
    assert out == "got TERM\n"


def test_exec_process_starts_with_default_signal_dispositions(rt: Runtime, ctr: str) -> None:
    # The runtime is Python, which ignores SIGPIPE and SIGXFSZ; none of that may leak.
    status = rt("exec", ctr, "cat", "/proc/self/status").stdout
    assert "SigIgn:\t0000000000000000" in status
    assert "SigBlk:\t0000000000000000" in status


def test_exec_env_cwd_and_user_flags(rt: Runtime, bundle: Bundle) -> None:
    bundle.process["env"] = ["PATH=/usr/bin:/bin", "TERM=xterm", "KEEP=1"]
    cid = _running(rt, bundle)
    out = rt("exec", "-e", "FOO=bar baz", "--env", "TERM=dumb", "--cwd", "/tmp",
             "-u", "1000:1000", "-g", "44", "-g", "45", cid,
             "sh", "-c", "id -u; id -g; id -G; pwd; env | sort").stdout.splitlines()
    uid, gid, groups, cwd, *env = out
    assert (uid, gid, cwd) == ("1000", "1000", "/tmp")
    assert set(groups.split()) == {"1000", "44", "45"}
    assert "FOO=bar baz" in env and "KEEP=1" in env
    assert [e for e in env if e.startswith("TERM=")] == ["TERM=dumb"]


def test_exec_user_without_group_keeps_the_configs_gid(rt: Runtime, bundle: Bundle) -> None:
    bundle.process["user"] = {"uid": 0, "gid": 7}
    cid = _running(rt, bundle)
    out = rt("exec", "-u", "1000", cid, "sh", "-c", "id -u; id -g").stdout.split()
    assert out == ["1000", "7"]


def _cap_eff(status: str) -> int:
    line = next(x for x in status.splitlines() if x.startswith("CapEff:"))
    return int(line.split()[1], 16)


def test_exec_cap_adds_capabilities(rt: Runtime, ctr: str) -> None:
    bit = 1 << caps.BY_NAME["CAP_NET_RAW"]
    before = _cap_eff(rt("exec", ctr, "cat", "/proc/self/status").stdout)
    after = _cap_eff(rt("exec", "--cap", "CAP_NET_RAW", ctr, "cat", "/proc/self/status").stdout)
    assert not before & bit
    assert after == before | bit


def test_exec_process_json(rt: Runtime, ctr: str, tmp_path: str) -> None:
    path = os.path.join(str(tmp_path), "process.json")
    with open(path, "w") as f:
        json.dump({"args": ["sh", "-c", "echo $GREETING; id -u; pwd"],
                   "env": ["PATH=/bin", "GREETING=from-process-json"], "cwd": "/etc",
                   "user": {"uid": 1234, "gid": 1234}}, f)
    out = rt("exec", "-p", path, ctr).stdout.split()
    assert out == ["from-process-json", "1234", "/etc"]


def test_exec_process_json_is_validated(rt: Runtime, ctr: str, tmp_path: str) -> None:
    path = os.path.join(str(tmp_path), "process.json")
    with open(path, "w") as f:
        json.dump({"args": ["true"], "cwd": "relative"}, f)
    bad = rt("exec", "-p", path, ctr, check=False)
    assert bad.returncode == 1 and "cwd" in bad.stderr and "absolute" in bad.stderr


def test_exec_detached_writes_the_pid_file(rt: Runtime, ctr: str, tmp_path: str) -> None:
    pidfile = os.path.join(str(tmp_path), "exec.pid")
    start = time.monotonic()
    rt("exec", "-d", "--pid-file", pidfile, ctr, "sleep", "1000", timeout=10)
    assert time.monotonic() - start < 10
    with open(pidfile) as f:
        pid = int(f.read())
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        assert f.read() == b"sleep\x001000\x00"
    init = _init_pid(rt, ctr)
    for name in ("mnt", "pid", "net"):
        assert os.readlink(f"/proc/{pid}/ns/{name}") == os.readlink(f"/proc/{init}/ns/{name}")
    with open(f"/proc/{pid}/cgroup") as a, open(f"/proc/{init}/cgroup") as b:
        assert a.read() == b.read()
    assert rt("exec", ctr, "ps").stdout.count("sleep 1000") == 2  # init and ours
    # delete --force (teardown) kills it with the rest of the container's cgroup


def test_exec_tty_detached_needs_a_console_socket(rt: Runtime, ctr: str) -> None:
    bad = rt("exec", "-t", "-d", ctr, "true", check=False)
    assert bad.returncode == 1
    assert "cannot allocate tty" in bad.stderr and "console socket" in bad.stderr


def test_exec_into_a_stopped_container_fails(rt: Runtime, bundle: Bundle) -> None:
    bundle.process["args"] = ["true"]
    bundle.write()
    cid = rt.new_id()
    rt("create", "--bundle", bundle.path, cid)
    rt("start", cid)
    deadline = time.monotonic() + 5
    while rt.state(cid)["status"] != "stopped" and time.monotonic() < deadline:
        time.sleep(0.02)
    bad = rt("exec", cid, "true", check=False)
    assert bad.returncode == 1
    assert "cannot exec in a stopped container" in bad.stderr
    assert len(bad.stderr.splitlines()) == 1


def test_exec_into_a_paused_container_needs_ignore_paused(rt: Runtime, ctr: str) -> None:
    rt("pause", ctr)
    try:
        bad = rt("exec", ctr, "true", check=False)
        assert bad.returncode == 1 and "--ignore-paused" in bad.stderr
    finally:
        rt("resume", ctr)
    assert rt("exec", ctr, "true").returncode == 0


def test_exec_into_a_created_container(rt: Runtime, bundle: Bundle) -> None:
    bundle.process["args"] = ["true"]
    bundle.write()
    cid = rt.new_id()
    rt("create", "--bundle", bundle.path, cid)
    assert rt("exec", cid, "hostname").stdout == "pallet\n"
    assert rt.state(cid)["status"] == "created"


def test_exec_of_a_missing_command_reports_one_error(rt: Runtime, ctr: str) -> None:
    bad = rt("exec", ctr, "nosuch", check=False)
    assert bad.returncode == 1
    assert bad.stdout == ""
    lines = bad.stderr.splitlines()
    assert len(lines) == 1 and "level=error" in lines[0] and NOT_FOUND in lines[0]


def test_exec_of_a_missing_container_fails(rt: Runtime) -> None:
    bad = rt("exec", "no-such-container", "true", check=False)
    assert bad.returncode == 1 and "does not exist" in bad.stderr


def test_exec_applies_the_containers_seccomp_profile(rt: Runtime, bundle: Bundle) -> None:
    bundle.linux["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                      "errnoRet": 1}],
    }
    cid = _running(rt, bundle)
    out = rt("exec", cid, "sh", "-c",
             "grep '^Seccomp:' /proc/self/status; mkdir /tmp/blocked; echo rc=$?").stdout
    assert "Seccomp:\t2" in out
    assert "rc=1" in out


def test_exec_preserves_fds_and_closes_the_rest(rt: Runtime, ctr: str, tmp_path: str) -> None:
    data = os.path.join(str(tmp_path), "data")
    with open(data, "w") as f:
        f.write("through fd 3\n")

    def run(*flags: str) -> list[str]:
        # fd 3 of the runtime is the file, as a caller passing descriptors would set it up
        cmd = ["sh", "-c", 'exec 3<"$0"; exec "$@"', data, *runtime_command(), "--root",
               rt.root, "exec", *flags, ctr, "sh", "-c", "cat <&3; ls /proc/self/fd"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30,
                              stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.splitlines()

    # ls's own directory descriptor is the last one listed
    assert run("--preserve-fds", "1") == ["through fd 3", "0", "1", "2", "3", "4"]
    assert run() == ["0", "1", "2", "3"]


# --- terminals ---------------------------------------------------------------------------

def test_exec_tty_over_a_console_socket(rt: Runtime, ctr: str,
                                        console_socket: tuple[str, socket.socket]) -> None:
    path, srv = console_socket
    rt("exec", "-t", "-d", "--console-socket", path, ctr, "sh")
    master, name = recv_master(srv)
    try:
        assert name.startswith(b"/dev/pts/")
        os.write(master, b"echo hi; tty\n")
        out = read_until(master, b"/dev/pts/")
        out += read_until(master, b"\n", timeout=2)
        assert b"hi\r\n" in out
        tty_line = next(x for x in out.split(b"\r\n") if x.startswith(b"/dev/pts/"))
        assert tty_line.strip() == name
        os.write(master, b"exit\n")
    finally:
        os.close(master)
    # the exec's pty was not mounted on the container's /dev/console
    assert " /dev/console " not in rt("exec", ctr, "cat", "/proc/self/mountinfo").stdout


def test_exec_tty_relayed_by_the_runtime(rt: Runtime, ctr: str) -> None:
    proc = rt("exec", "-t", ctr, "sh", input=b"tty\necho $((6*7))\nexit 3\n", check=False)
    assert proc.returncode == 3, proc.stderr
    assert "/dev/pts/" in proc.stdout
    assert "42" in proc.stdout


def test_exec_tty_relay_from_a_terminal(rt: Runtime, ctr: str) -> None:
    """On a real terminal: raw mode while relaying, window size followed, restored after."""
    master, slave = pty.openpty()
    termios.tcsetwinsize(slave, (24, 80))
    before = termios.tcgetattr(slave)

    def take_terminal() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen([*runtime_command(), "--root", rt.root, "exec", "-t", ctr, "sh"],
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                            preexec_fn=take_terminal)
    try:
        os.write(master, b"stty size\n")
        assert b"24 80" in read_until(master, b"24 80")
        raw = termios.tcgetattr(slave)
        assert not raw[3] & (termios.ICANON | termios.ECHO)  # ours is raw while relaying
        termios.tcsetwinsize(master, (50, 132))  # the terminal window is resized: SIGWINCH
        seen = b""
        deadline = time.monotonic() + 10
        while b"50 132" not in seen and time.monotonic() < deadline:
            os.write(master, b"stty size\n")
            seen += read_until(master, b"50 132", timeout=0.5)
        assert b"50 132" in seen
        os.write(master, b"exit 7\n")
        assert proc.wait(timeout=10) == 7
        assert termios.tcgetattr(slave) == before  # restored
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        os.close(slave)


def test_run_with_terminal_relays_it_in_the_foreground(rt: Runtime, bundle: Bundle) -> None:
    bundle.process["terminal"] = True
    bundle.process["args"] = ["sh", "-c", "tty; stty size; exit 4"]
    bundle.process["consoleSize"] = {"height": 33, "width": 101}
    bundle.write()
    cid = rt.new_id()
    proc = rt("run", "--bundle", bundle.path, cid, check=False, stdin=subprocess.DEVNULL)
    assert proc.returncode == 4, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("/dev/")  # the pty (mounted on /dev/console as well)
    assert lines[1] == "33 101"
    assert rt("list", "-q").stdout == ""  # removed afterwards, as without a terminal


def test_run_detached_with_terminal_still_needs_a_console_socket(rt: Runtime,
                                                                bundle: Bundle) -> None:
    bundle.process["terminal"] = True
    bundle.write()
    bad = rt("run", "-d", "--bundle", bundle.path, rt.new_id(), check=False)
    assert bad.returncode == 1 and "console socket" in bad.stderr


# --- the runtime inside the container is not reachable from it -------------------------

def _freezer_dir(init_pid: int) -> str | None:
    with open(f"/proc/{init_pid}/cgroup") as f:
        for line in f:
            _, ctls, path = line.rstrip("\n").split(":", 2)
            if "freezer" in ctls.split(","):
                d = "/sys/fs/cgroup/freezer" + path
                return d if os.path.isdir(d) else None
    return None


def test_runtime_in_the_container_is_not_dumpable(rt: Runtime, bundle: Bundle) -> None:
    """While exec's child runs runtime code inside the container, the container cannot
    open its /proc/<pid>/exe (the host's interpreter), its root or its memory.

    To catch it in that window the child is sent (--cgroup) into a frozen sub-cgroup: it
    freezes once it has joined the namespaces, before exec. The probe runs as root with
    every capability in a user namespace, so only non-dumpability keeps it out.
    """
    _all_namespaces(bundle)
    everything = list(caps.NAMES[: caps.last_cap() + 1])
    bundle.process["capabilities"] = {s: everything for s in ("bounding", "effective",
                                                              "permitted")}
    cid = _running(rt, bundle)
    freezer = _freezer_dir(_init_pid(rt, cid))
    if freezer is None:
        pytest.skip("needs a cgroup v1 freezer hierarchy")
    hold = os.path.join(freezer, "hold")
    os.mkdir(hold)
    held = None
    try:
        with open(os.path.join(hold, "freezer.state"), "w") as f:
            f.write("FROZEN")
        held = subprocess.Popen(
            [*runtime_command(), "--root", rt.root, "exec", "--cgroup", "freezer:hold", cid,
             "true"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        # The parent moves the child in once it has joined the namespaces.
        host_pid = 0
        deadline = time.monotonic() + 10
        while not host_pid and time.monotonic() < deadline:
            pids = _pids(hold)
            host_pid = pids[0] if pids else 0
            time.sleep(0.02)
        assert host_pid, "exec's child never reached the held cgroup"
        assert "python" in os.readlink(f"/proc/{host_pid}/exe")  # runtime code, not `true`
        with open(f"/proc/{host_pid}/status") as f:
            nspid = next(x for x in f if x.startswith("NSpid:")).split()[-1]
        # It has joined the container's namespaces (user and mount among them).
        for name in ("user", "mnt", "pid"):
            assert os.readlink(f"/proc/{host_pid}/ns/{name}") == os.readlink(
                f"/proc/{_init_pid(rt, cid)}/ns/{name}")
        probe = rt("exec", cid, "sh", "-c",
                   f"readlink /proc/1/exe >/dev/null; echo init=$?; "
                   f"readlink /proc/{nspid}/exe; echo readlink=$?; "
                   f"cat /proc/{nspid}/exe >/dev/null; echo read=$?; "
                   f"true >>/proc/{nspid}/exe; echo write=$?; "
                   f"ls /proc/{nspid}/root/ >/dev/null; echo root=$?", check=False)
        results = dict(line.split("=", 1) for line in probe.stdout.splitlines() if "=" in line)
        assert results.pop("init") == "0", probe.stdout  # the probe can read a dumpable one
        assert results and all(v != "0" for v in results.values()), probe.stdout
        assert "Permission denied" in probe.stderr
        assert "/usr/bin" not in probe.stdout
    finally:
        pids = _pids(hold)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        with open(os.path.join(hold, "freezer.state"), "w") as f:
            f.write("THAWED")
        if held is not None:
            held.communicate(timeout=10)
        deadline = time.monotonic() + 5
        while _pids(hold) and time.monotonic() < deadline:
            time.sleep(0.01)
        os.rmdir(hold)
    assert held.returncode != 0


def _pids(cgroup_dir: str) -> list[int]:
    with open(os.path.join(cgroup_dir, "cgroup.procs")) as f:
        return [int(x) for x in f.read().split()]
