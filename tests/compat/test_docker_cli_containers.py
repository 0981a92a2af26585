"""The real docker CLI runs containers on palletd: what a user types, what a user sees."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import docker
import pytest

from tests.conftest import REPO
from tests.support.leftovers import cgroup_dirs
from tests.support.palletd import Palletd, palletd_with_image, start_palletd

pytestmark = pytest.mark.root

IMAGE = "pallet-test/busybox:run"


@pytest.fixture(scope="module")
def pd() -> Iterator[Palletd]:
    with palletd_with_image("pallet-test-run-", IMAGE, 'CMD ["sh"]', "ENV FROM_IMAGE=yes",
                            "WORKDIR /tmp") as d:
        yield d


@pytest.fixture
def names(pd: Palletd) -> Iterator[list[str]]:
    """Containers a test names; removed at its end whatever happened."""
    made: list[str] = []
    yield made
    if made:
        pd.docker("rm", "-f", *made, check=False)


def run(pd: Palletd, *args: str, stdin: str | None = None,
        timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], env=pd.env, capture_output=True, text=True,
                          input=stdin, timeout=timeout, check=False)


def inspect(pd: Palletd, name: str) -> dict[str, object]:
    out: dict[str, object] = json.loads(pd.docker("inspect", name).stdout)[0]
    return out


def test_run_rm_prints_and_leaves_nothing(pd: Palletd) -> None:
    before = pd.docker("ps", "-aq").stdout
    out = run(pd, "run", "--rm", IMAGE, "echo", "hello from pallet")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "hello from pallet\n"
    assert pd.docker("ps", "-aq").stdout == before
    # no snapshot mount of a removed container survives
    with open("/proc/self/mountinfo") as f:
        assert os.path.join(pd.data_root, "snapshots") not in f.read()


def test_exit_code_and_streams(pd: Palletd) -> None:
    out = run(pd, "run", "--rm", IMAGE, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (out.returncode, out.stdout, out.stderr) == (3, "out\n", "err\n")


def test_image_config_is_honoured(pd: Palletd) -> None:
    out = run(pd, "run", "--rm", "-e", "MINE=1", "-w", "/etc", "-u", "1000:1001",
              "--hostname", "box1", IMAGE, "sh", "-c",
              'echo $FROM_IMAGE $MINE $(pwd) $(id -u):$(id -g) $(hostname) $HOSTNAME')
    assert out.stdout.split() == ["yes", "1", "/etc", "1000:1001", "box1", "box1"]
    out = run(pd, "run", "--rm", IMAGE, "pwd")
    assert out.stdout == "/tmp\n"  # the image's WORKDIR
    out = run(pd, "run", "--rm", "--entrypoint", "echo", IMAGE, "via", "entrypoint")
    assert out.stdout == "via entrypoint\n"


def test_stdin_is_piped_through(pd: Palletd) -> None:
    data = "".join(f"line {i}\n" for i in range(20000))  # more than a pipe holds
    out = run(pd, "run", "--rm", "-i", IMAGE, "sh", "-c", "cat; echo done", stdin=data)
    assert out.returncode == 0, out.stderr
    assert out.stdout == data + "done\n"


def test_run_it_through_a_terminal(pd: Palletd) -> None:
    text, code = read_pty(["docker", "run", "-it", "--rm", IMAGE, "sh", "-c",
                           "tty; stty size; exit 4"], pd.env)
    assert code == 4
    assert "/dev/pts/0\n" in text and "33 99\n" in text


def test_detached_logs_ps_stop_rm(pd: Palletd, names: list[str]) -> None:
    names.append("pt-logger")
    cid = pd.docker("run", "-d", "--name", "pt-logger", IMAGE, "sh", "-c",
                    'trap "echo bye; exit 7" TERM; i=0; '
                    'while true; do echo line $i; echo err $i >&2; i=$((i+1)); sleep 0.1; done'
                    ).stdout.strip()
    assert len(cid) == 64
    time.sleep(0.6)
    ps = pd.docker("ps", "--format", "{{.ID}} {{.Names}} {{.Status}}").stdout
    assert f"{cid[:12]} pt-logger Up" in ps
    assert pd.docker("ps", "-q", "--filter", "name=pt-logger").stdout.strip() == cid[:12]
    logs = run(pd, "logs", "pt-logger")
    assert logs.stdout.startswith("line 0\nline 1\n") and logs.stderr.startswith("err 0\n")
    tail = run(pd, "logs", "--tail", "2", "pt-logger")  # the last two of both streams
    last = tail.stdout.splitlines() + tail.stderr.splitlines()
    assert len(last) == 2 and {ln.split()[0] for ln in last} == {"line", "err"}
    stamped = run(pd, "logs", "-t", "pt-logger").stdout.splitlines()[0]
    assert stamped.endswith(" line 0") and stamped[:4] == time.strftime("%Y")
    # -f follows until the container stops
    follow = subprocess.Popen(["docker", "logs", "-f", "--since", "0", "pt-logger"],
                              env=pd.env, stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)
    t0 = time.monotonic()
    pd.docker("stop", "pt-logger")
    assert time.monotonic() - t0 < 5  # the trap answers SIGTERM: no 10 s wait
    out, _ = follow.communicate(timeout=10)
    assert out.startswith("line 0\n") and out.endswith("bye\n")
    state = inspect(pd, "pt-logger")["State"]
    assert isinstance(state, dict)
    assert (state["Status"], state["ExitCode"], state["Running"]) == ("exited", 7, False)
    assert "Exited (7)" in pd.docker("ps", "-a", "--filter", "name=pt-logger",
                                     "--format", "{{.Status}}").stdout
    pd.docker("rm", "pt-logger")
    assert run(pd, "inspect", "pt-logger").returncode == 1


def test_logs_details_show_the_log_opt_attributes(pd: Palletd, names: list[str]) -> None:
    names.extend(["pt-details", "pt-plain"])
    pd.docker("run", "--name", "pt-details", "-l", "app=web", "-l", "team=a b", "-e",
              "MODE=prod", "--log-opt", "labels=app,team", "--log-opt", "env=MODE", IMAGE,
              "echo", "hi")
    assert pd.docker("logs", "--details", "pt-details").stdout == \
        "MODE=prod,app=web,team=a+b hi\n"
    assert pd.docker("logs", "pt-details").stdout == "hi\n"
    stamped = pd.docker("logs", "-t", "--details", "pt-details").stdout
    assert stamped.endswith(" MODE=prod,app=web,team=a+b hi\n") and stamped[0].isdigit()
    pd.docker("run", "--name", "pt-plain", IMAGE, "echo", "hi")
    assert pd.docker("logs", "--details", "pt-plain").stdout == " hi\n"  # as dockerd


def test_stop_kills_after_timeout(pd: Palletd, names: list[str]) -> None:
    names.append("pt-stubborn")
    pd.docker("run", "-d", "--name", "pt-stubborn", IMAGE, "sh", "-c",
              'trap "" TERM; while true; do sleep 0.1; done')
    t0 = time.monotonic()
    pd.docker("stop", "-t", "1", "pt-stubborn")
    assert 0.9 < time.monotonic() - t0 < 5
    assert inspect(pd, "pt-stubborn")["State"]["ExitCode"] == 137  # type: ignore[index]


def test_kill_wait_restart_rename(pd: Palletd, names: list[str]) -> None:
    names.extend(["pt-k1", "pt-k2"])
    pd.docker("run", "-d", "--name", "pt-k1", IMAGE, "sh", "-c",
              'trap "exit 42" USR1; while :; do sleep 0.1; done')
    waiter = subprocess.Popen(["docker", "wait", "pt-k1"], env=pd.env,
                              stdout=subprocess.PIPE, text=True)
    time.sleep(0.2)
    pd.docker("kill", "-s", "USR1", "pt-k1")
    assert waiter.communicate(timeout=10)[0].strip() == "42"
    pd.docker("restart", "pt-k1")
    assert inspect(pd, "pt-k1")["State"]["Running"] is True  # type: ignore[index]
    pd.docker("rename", "pt-k1", "pt-k2")
    assert inspect(pd, "pt-k2")["Name"] == "/pt-k2"
    pd.docker("kill", "pt-k2")
    assert pd.docker("wait", "pt-k2").stdout.strip() == "137"
    bad = run(pd, "kill", "pt-k2")
    assert bad.returncode == 1 and "is not running" in bad.stderr


def test_pause_freezes_a_busy_loop(pd: Palletd, names: list[str]) -> None:
    names.append("pt-busy")
    pd.docker("run", "-d", "--name", "pt-busy", IMAGE, "sh", "-c", "while :; do :; done")
    cid = inspect(pd, "pt-busy")["Id"]
    pd.docker("pause", "pt-busy")
    assert inspect(pd, "pt-busy")["State"]["Status"] == "paused"  # type: ignore[index]
    usage = f"/sys/fs/cgroup/cpuacct{cgroup_of(pd)}/{cid}/cpuacct.usage"
    with open(usage) as f:
        a = int(f.read())
    time.sleep(0.3)
    with open(usage) as f:
        b = int(f.read())
    assert b - a < 10_000_000  # < 10 ms of CPU in 300 ms: frozen
    pd.docker("unpause", "pt-busy")
    time.sleep(0.3)
    with open(usage) as f:
        c = int(f.read())
    assert c - b > 50_000_000
    bad = run(pd, "unpause", "pt-busy")
    assert bad.returncode == 1 and "is not paused" in bad.stderr


def cgroup_of(pd: Palletd) -> str:
    return "/" + os.path.basename(os.path.dirname(pd.socket))


def test_limits_from_inside_and_outside(pd: Palletd, names: list[str]) -> None:
    # --memory: an allocation over the limit is OOM-killed and inspect says so
    names.append("pt-oom")
    out = run(pd, "run", "--name", "pt-oom", "--memory", "32m", IMAGE, "tail", "/dev/zero")
    assert out.returncode == 137
    state = inspect(pd, "pt-oom")["State"]
    assert isinstance(state, dict) and state["OOMKilled"] is True
    # --pids-limit: a fork bomb hits the ceiling
    out = run(pd, "run", "--rm", "--pids-limit", "10", IMAGE, "sh", "-c",
              "cat /sys/fs/cgroup/pids/pids.max; for i in $(seq 30); do sleep 3 & done")
    assert out.stdout == "10\n" and "can't fork" in out.stderr and out.returncode == 2
    # --cpus: the quota in the container's cgroup
    names.append("pt-cpu")
    pd.docker("run", "-d", "--name", "pt-cpu", "--cpus", "0.5", IMAGE, "sleep", "30")
    cid = inspect(pd, "pt-cpu")["Id"]
    with open(f"/sys/fs/cgroup/cpu{cgroup_of(pd)}/{cid}/cpu.cfs_quota_us") as f:
        assert f.read().strip() == "50000"


def test_bad_input_is_refused_cleanly(pd: Palletd, names: list[str]) -> None:
    before = pd.docker("ps", "-aq").stdout
    out = run(pd, "run", "--rm", IMAGE, "no-such-command")
    assert out.returncode == 127
    assert 'exec: "no-such-command": executable file not found in $PATH' in out.stderr
    out = run(pd, "run", "--rm", "--memory", "12zb", IMAGE, "true")
    assert out.returncode == 125 and "invalid" in out.stderr.lower()
    out = run(pd, "create", "--name", "bad name", IMAGE)
    assert out.returncode == 1 and "Invalid container name" in out.stderr
    # 404 "No such image" makes the CLI fall back to a pull (of a registry that is not
    # there: a closed port on loopback)
    out = run(pd, "create", "127.0.0.1:9/pallet-test/no-such-image:1")
    assert out.returncode == 1 and "Unable to find image" in out.stderr
    status, _, body = pd.request("POST", "/v1.44/containers/create", json.dumps(
        {"Image": "127.0.0.1:9/pallet-test/no-such-image:1"}).encode())
    assert status == 404 and b"No such image: 127.0.0.1:9/pallet-test/no-such-image:1" in body
    assert pd.docker("ps", "-aq").stdout == before
    names.append("pt-dup")
    pd.docker("create", "--name", "pt-dup", IMAGE)
    dup = run(pd, "create", "--name", "pt-dup", IMAGE)
    assert dup.returncode == 1 and 'The container name "/pt-dup" is already in use' \
        in dup.stderr
    status, _, body = pd.request("POST", "/v1.44/containers/create?name=pt-dup",
                                 json.dumps({"Image": IMAGE}).encode())
    assert status == 409 and b"already in use" in body
    running = run(pd, "rm", "pt-dup")
    assert running.returncode == 0


def test_rm_running_needs_force(pd: Palletd, names: list[str]) -> None:
    names.append("pt-run")
    pd.docker("run", "-d", "--name", "pt-run", IMAGE, "sleep", "100")
    out = run(pd, "rm", "pt-run")
    assert out.returncode == 1 and "You cannot remove a running container" in out.stderr
    pd.docker("rm", "-f", "pt-run")
    assert run(pd, "inspect", "pt-run").returncode == 1


def test_inspect_shape(pd: Palletd, names: list[str]) -> None:
    names.append("pt-shape")
    pd.docker("create", "--name", "pt-shape", "-l", "team=pallet", "--memory", "64m",
              "--restart", "on-failure:3", IMAGE, "echo", "x")
    info = inspect(pd, "pt-shape")
    for key in ("Id", "Created", "Path", "Args", "State", "Image", "ResolvConfPath",
                "HostnamePath", "HostsPath", "LogPath", "Name", "RestartCount", "Driver",
                "Platform", "HostConfig", "Config", "GraphDriver", "Mounts",
                "NetworkSettings"):
        assert key in info, key
    cfg, hc = info["Config"], info["HostConfig"]
    assert isinstance(cfg, dict) and isinstance(hc, dict)
    assert cfg["Labels"] == {"team": "pallet"} and "FROM_IMAGE=yes" in cfg["Env"]
    assert hc["Memory"] == 64 * 1024 * 1024
    assert hc["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert info["Path"] == "echo" and info["Args"] == ["x"]
    assert info["State"]["Status"] == "created"  # type: ignore[index]


def test_palletd_sigkill_loses_nothing(pd: Palletd, names: list[str]) -> None:
    """kill -9 palletd while containers run and log; one exits meanwhile."""
    names.extend(["pt-crash-logger", "pt-crash-sleeper"])
    pd.docker("run", "-d", "--name", "pt-crash-logger", IMAGE, "sh", "-c",
              "i=0; while [ $i -lt 40 ]; do echo line $i; i=$((i+1)); sleep 0.05; done; exit 9")
    pd.docker("run", "-d", "--name", "pt-crash-sleeper", IMAGE, "sleep", "100")
    time.sleep(0.3)
    pd.proc.kill()
    pd.proc.wait()
    time.sleep(2.5)  # the logger ends while palletd is down
    base = os.path.dirname(pd.socket)
    new = start_palletd(base)
    pd.proc = new.proc
    state = inspect(pd, "pt-crash-logger")["State"]
    assert isinstance(state, dict)
    assert (state["Status"], state["ExitCode"]) == ("exited", 9)
    logs = pd.docker("logs", "pt-crash-logger").stdout.splitlines()
    assert logs == [f"line {i}" for i in range(40)]
    assert inspect(pd, "pt-crash-sleeper")["State"]["Running"] is True  # type: ignore[index]
    assert pd.docker("ps", "-q", "--filter",
                     "name=pt-crash-sleeper").stdout.strip()


def read_pty(argv: list[str], env: dict[str, str], rows: int = 33,
             cols: int = 99) -> tuple[str, int]:
    """Run ``argv`` on a terminal of its own (as a user's shell would); its output, code."""
    import fcntl
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                            start_new_session=True)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return out.decode().replace("\r", ""), proc.wait(timeout=30)


def test_exec_joins_the_container(pd: Palletd, names: list[str]) -> None:
    names.append("pt-exec")
    pd.docker("run", "-d", "--name", "pt-exec", "--hostname", "exechost", IMAGE,
              "sleep", "100")
    out = run(pd, "exec", "pt-exec", "sh", "-c", "hostname; echo err >&2; exit 6")
    assert (out.returncode, out.stdout, out.stderr) == (6, "exechost\n", "err\n")
    out = run(pd, "exec", "-i", "pt-exec", "cat", stdin="through stdin\n")
    assert out.stdout == "through stdin\n"
    out = run(pd, "exec", "-u", "1000", "-w", "/etc", "-e", "X=y", "pt-exec", "sh", "-c",
              "id -u; pwd; echo $X; echo $FROM_IMAGE")
    assert out.stdout.split() == ["1000", "/etc", "y", "yes"]
    # the same pid namespace and cgroup as the container's init
    out = run(pd, "exec", "pt-exec", "sh", "-c", "ps -o pid,comm | grep -w sleep")
    assert out.stdout.split()[:2] == ["1", "sleep"]
    cid = inspect(pd, "pt-exec")["Id"]
    procs = f"/sys/fs/cgroup/pids{cgroup_of(pd)}/{cid}/cgroup.procs"
    out = run(pd, "exec", "pt-exec", "sh", "-c", "cat /proc/self/cgroup | grep pids")
    assert out.stdout.strip().endswith(f"/{cid}") and os.path.exists(procs)
    pd.docker("exec", "-d", "pt-exec", "sh", "-c", "sleep 0.3; touch /tmp/detached")
    time.sleep(1)
    assert run(pd, "exec", "pt-exec", "ls", "/tmp/detached").returncode == 0
    text, code = read_pty(["docker", "exec", "-it", "pt-exec", "sh", "-c",
                           "tty; stty size; exit 3"], pd.env, 20, 70)
    assert code == 3 and "/dev/pts/" in text and "20 70\n" in text
    out = run(pd, "exec", "pt-exec", "no-such-command")
    assert out.returncode == 127 and "executable file not found" in out.stdout + out.stderr
    assert len(inspect(pd, "pt-exec")["ExecIDs"]) >= 7  # type: ignore[arg-type]
    pd.docker("stop", "-t", "0", "pt-exec")
    out = run(pd, "exec", "pt-exec", "true")
    assert out.returncode == 1 and "is not running" in out.stderr


def test_docker_py_containers(pd: Palletd) -> None:
    client = docker.DockerClient(base_url=pd.host)
    try:
        out = client.containers.run(IMAGE, ["sh", "-c", "echo from docker-py"], remove=True)
        assert out == b"from docker-py\n"
        c = client.containers.run(IMAGE, ["sh", "-c", "echo a; sleep 0.2; echo b"],
                                  detach=True)
        assert c.wait(timeout=10)["StatusCode"] == 0
        assert c.logs() == b"a\nb\n"
        c.reload()
        assert c.status == "exited"
        c.remove()
        c = client.containers.run(IMAGE, ["sleep", "100"], detach=True)
        code, output = c.exec_run(["sh", "-c", "echo in exec; exit 2"])
        assert (code, output) == (2, b"in exec\n")
        c.remove(force=True)
        with pytest.raises(docker.errors.ImageNotFound):
            client.containers.create("127.0.0.1:9/pallet-test/missing:1")
    finally:
        client.close()


def test_dockers_default_seccomp_profile_is_in_effect(pd: Palletd) -> None:
    """unshare(CLONE_NEWUSER) needs no capability: only the seccomp profile refuses it.
    Twice: the monitor compiles a profile once, later containers load the program."""
    for _ in range(2):
        out = run(pd, "run", "--rm", IMAGE, "sh", "-c",
                  "grep Seccomp: /proc/self/status; unshare -U true && echo allowed")
        assert out.stdout.split() == ["Seccomp:", "2"] and "Operation not permitted" \
            in out.stderr
    out = run(pd, "run", "--rm", "--security-opt", "seccomp=unconfined", IMAGE, "sh", "-c",
              "grep Seccomp: /proc/self/status; unshare -U true && echo allowed")
    assert out.stdout.split() == ["Seccomp:", "0", "allowed"]


def test_stats_top_update(pd: Palletd, names: list[str]) -> None:
    names.append("pt-stats")
    pd.docker("run", "-d", "--name", "pt-stats", "--memory", "64m", IMAGE, "sh", "-c",
              "while :; do :; done")
    time.sleep(0.5)
    out = pd.docker("stats", "--no-stream", "--format",
                    "{{.Name}} {{.CPUPerc}} {{.MemUsage}} {{.PIDs}}", "pt-stats").stdout.split()
    assert out[0] == "pt-stats" and float(out[1].rstrip("%")) > 50
    assert out[4] == "64MiB" and out[5] == "1"
    top = pd.docker("top", "pt-stats").stdout.splitlines()
    assert top[0].split()[:2] == ["UID", "PID"] and "while :; do :; done" in top[1]
    assert len(top) == 2  # the container's process only, not the host's
    # --cpus 0.5, live: the quota in the cgroup and the CPU time measured
    pd.docker("update", "--cpus", "0.5", "--memory", "32m", "--restart", "on-failure:2",
              "pt-stats")
    cid = inspect(pd, "pt-stats")["Id"]
    with open(f"/sys/fs/cgroup/cpu{cgroup_of(pd)}/{cid}/cpu.cfs_quota_us") as f:
        assert f.read().strip() == "50000"
    usage = f"/sys/fs/cgroup/cpuacct{cgroup_of(pd)}/{cid}/cpuacct.usage"
    with open(usage) as f:
        a = int(f.read())
    time.sleep(1.0)
    with open(usage) as f:
        b = int(f.read())
    assert 0.35e9 < b - a < 0.65e9  # half a CPU second per second
    hc = inspect(pd, "pt-stats")["HostConfig"]
    assert isinstance(hc, dict) and hc["Memory"] == 32 << 20 and hc["NanoCpus"] == 500_000_000
    assert hc["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}


def test_export_of_a_running_container_is_its_filesystem_alone(pd: Palletd,
                                                               names: list[str]) -> None:
    """As dockerd: the container's filesystem without /proc, /sys, its tmpfs or volume
    content; and the stream ends cleanly (it once carried a second response)."""
    import io
    import tarfile

    names.append("pt-export")
    pd.docker("run", "-d", "--name", "pt-export", "-v", "/vol", "--tmpfs", "/scratch",
              IMAGE, "sh", "-c", "echo a > /in-rootfs; echo b > /vol/in-volume; "
              "echo c > /scratch/in-tmpfs; touch /ready; sleep 60")
    pd.docker("exec", "pt-export", "sh", "-c", "while [ ! -f /ready ]; do sleep 0.05; done",
              timeout=20)
    out = subprocess.run(["docker", "export", "pt-export"], env=pd.env, capture_output=True,
                         check=False)
    assert out.returncode == 0, out.stderr
    with tarfile.open(fileobj=io.BytesIO(out.stdout)) as tar:
        members = {m.removeprefix("./") for m in tar.getnames()}
    assert {"in-rootfs", "bin/busybox", "proc", "vol"} <= members
    assert not members & {"vol/in-volume", "scratch/in-tmpfs", "proc/self", "proc/1"}
    assert not any(m.startswith(("proc/", "sys/")) for m in members)


def test_diff_export_commit(pd: Palletd, names: list[str]) -> None:
    names.append("pt-fs")
    pd.docker("run", "--name", "pt-fs", IMAGE, "sh", "-c",
              "rm /etc/group; mkdir /newdir; echo x > /newdir/f; echo data > /tmp/new")
    diff = pd.docker("diff", "pt-fs").stdout.splitlines()
    assert diff == ["C /etc", "D /etc/group", "A /newdir", "A /newdir/f", "C /tmp",
                    "A /tmp/new"]
    names_in = subprocess.run(["docker", "export", "pt-fs"], env=pd.env, capture_output=True,
                              check=True).stdout
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(names_in)) as tar:
        members = tar.getnames()
    assert "./tmp/new" in members or "tmp/new" in members
    assert not any(m.endswith("etc/group") for m in members)
    # The files the runtime binds over live in the shared init layer (dockerd's "-init"
    # layer), not in the container's own: the export has them, its changes do not.
    assert {"etc/hosts", "etc/hostname", "etc/resolv.conf"} <= \
        {m.removeprefix("./") for m in members}
    upper = inspect(pd, "pt-fs")["GraphDriver"]["Data"]["UpperDir"]  # type: ignore[index]
    assert sorted(os.listdir(os.path.join(str(upper), "etc"))) == ["group"]  # a whiteout
    image = pd.docker("commit", "-m", "from a test", "-c", "ENV COMMITTED=1", "pt-fs",
                      "pallet-test/committed:1").stdout.strip()
    try:
        assert image.startswith("sha256:")
        out = run(pd, "run", "--rm", "pallet-test/committed:1", "sh", "-c",
                  "cat /tmp/new /newdir/f; echo $COMMITTED; ls /etc/group")
        assert out.stdout == "data\nx\n1\n" and "No such file" in out.stderr
        hist = pd.docker("history", "--format", "{{.Comment}}",
                         "pallet-test/committed:1").stdout.splitlines()
        assert hist[0] == "from a test"
    finally:
        pd.docker("rmi", "pallet-test/committed:1", check=False)


def test_cp_both_ways_inside_the_container(pd: Palletd, names: list[str],
                                           tmp_path: os.PathLike[str]) -> None:
    names.append("pt-cp")
    pd.docker("run", "-d", "--name", "pt-cp", IMAGE, "sh", "-c",
              "mkdir -p /data/sub; echo hi > /data/sub/f; ln -s /etc /data/etclink; "
              "sleep 100")
    time.sleep(0.3)
    out = os.path.join(tmp_path, "out")
    os.mkdir(out)
    pd.docker("cp", "pt-cp:/data", out)
    with open(os.path.join(out, "data", "sub", "f")) as f:
        assert f.read() == "hi\n"
    assert os.readlink(os.path.join(out, "data", "etclink")) == "/etc"
    src = os.path.join(tmp_path, "planted")
    with open(src, "w") as f:
        f.write("from the host\n")
    # through the container's absolute symlink: lands in ITS /etc, never the host's
    pd.docker("cp", src, "pt-cp:/data/etclink/")
    assert run(pd, "exec", "pt-cp", "cat", "/etc/planted").stdout == "from the host\n"
    assert not os.path.exists("/etc/planted")
    # a stopped container too
    pd.docker("stop", "-t", "0", "pt-cp")
    pd.docker("cp", src, "pt-cp:/tmp/")
    got = subprocess.run(["docker", "cp", "pt-cp:/tmp/planted", "-"], env=pd.env,
                         capture_output=True, check=True).stdout
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(got)) as tar:
        member = tar.extractfile("planted")
        assert member is not None and member.read() == b"from the host\n"
    bad = run(pd, "cp", "pt-cp:/no/such/file", out)
    assert bad.returncode == 1 and "Could not find the file" in bad.stderr


def test_events_and_attach(pd: Palletd, names: list[str]) -> None:
    since = str(int(time.time()) - 1)
    names.append("pt-ev")
    pd.docker("run", "-d", "-i", "--name", "pt-ev", IMAGE, "sh", "-c",
              "read line; echo got $line; exit 3")
    attach = subprocess.Popen(["docker", "attach", "pt-ev"], env=pd.env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    time.sleep(0.5)
    out, _ = attach.communicate("hello\n", timeout=20)
    assert out == "got hello\n" and attach.returncode == 3
    pd.docker("rm", "pt-ev")
    ev = pd.docker("events", "--since", since, "--until", str(int(time.time()) + 1),
                   "--filter", "container=pt-ev", "--format", "{{.Action}}").stdout.split()
    assert ev[:2] == ["create", "start"] and "attach" not in ev[:1]
    assert ev.index("die") > ev.index("start") and ev[-1] == "destroy"


def test_restart_policies(pd: Palletd, names: list[str]) -> None:
    names.extend(["pt-r1", "pt-r2", "pt-r3"])
    pd.docker("run", "-d", "--name", "pt-r1", "--restart", "on-failure:2", IMAGE, "sh", "-c",
              "echo ran; exit 1")
    pd.docker("run", "-d", "--name", "pt-r2", "--restart", "always", IMAGE, "sh", "-c",
              "sleep 0.2")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if inspect(pd, "pt-r1")["RestartCount"] == 2 and \
                inspect(pd, "pt-r1")["State"]["Status"] == "exited":  # type: ignore[index]
            break
        time.sleep(0.1)
    assert inspect(pd, "pt-r1")["RestartCount"] == 2  # twice, then it stays down
    assert pd.docker("logs", "pt-r1").stdout == "ran\n" * 3
    time.sleep(1)
    assert int(inspect(pd, "pt-r2")["RestartCount"]) >= 2  # type: ignore[call-overload]
    pd.docker("stop", "pt-r2")  # a manual stop is final
    count = inspect(pd, "pt-r2")["RestartCount"]
    time.sleep(0.5)
    assert inspect(pd, "pt-r2")["RestartCount"] == count
    assert inspect(pd, "pt-r2")["State"]["Running"] is False  # type: ignore[index]
    # always / unless-stopped come back when palletd does, even after losing the monitor
    pd.docker("run", "-d", "--name", "pt-r3", "--restart", "unless-stopped", IMAGE,
              "sleep", "100")
    started = inspect(pd, "pt-r2")["State"]["StartedAt"]  # type: ignore[index]
    pd.proc.kill()
    pd.proc.wait()
    from tests.support.palletd import stop_monitor

    stop_monitor(pd.exec_root)  # its containers die with it, as in a host reboot
    new = start_palletd(os.path.dirname(pd.socket))
    pd.proc = new.proc
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if inspect(pd, "pt-r3")["State"]["Running"] and \
                inspect(pd, "pt-r2")["State"]["StartedAt"] != started:  # type: ignore[index]
            break
        time.sleep(0.1)
    assert inspect(pd, "pt-r3")["State"]["Running"] is True  # type: ignore[index]
    # always: even if stopped (it runs 0.2 s at a time: it started again, is all one sees)
    assert inspect(pd, "pt-r2")["State"]["StartedAt"] != started  # type: ignore[index]
    assert inspect(pd, "pt-r1")["State"]["Running"] is False  # type: ignore[index]


def test_init_reaps_and_forwards(pd: Palletd) -> None:
    out = run(pd, "run", "--rm", "--init", IMAGE, "sh", "-c",
              "ps -o pid,comm | grep -w 1; (sleep 0.1 &); sleep 0.3; "
              "ps -o stat,comm | grep -c Z || true")
    assert out.stdout.split()[:2] == ["1", "docker-init"]
    assert out.stdout.split()[-1] == "0"  # the orphaned sleep was reaped


def test_health_checks(pd: Palletd, names: list[str]) -> None:
    names.extend(["pt-h1", "pt-h2"])
    pd.docker("run", "-d", "--name", "pt-h1", "--health-cmd", "test -f /tmp/ok",
              "--health-interval", "200ms", "--health-retries", "2", IMAGE, "sh", "-c",
              "touch /tmp/ok; sleep 1.2; rm /tmp/ok; sleep 100")
    time.sleep(0.8)
    assert "(healthy)" in pd.docker("ps", "--filter", "name=pt-h1",
                                    "--format", "{{.Status}}").stdout
    time.sleep(1.5)
    health = inspect(pd, "pt-h1")["State"]["Health"]  # type: ignore[index]
    assert health["Status"] == "unhealthy" and health["FailingStreak"] >= 2
    assert health["Log"][-1]["ExitCode"] == 1 and len(health["Log"]) <= 5
    # beyond Docker: act on an unhealthy container
    pallet = [sys.executable, "-m", "pallet.cli.main", "run", "-d", "--name", "pt-h2",
              "--health-cmd", "false", "--health-interval", "200ms", "--health-retries", "1",
              "--health-on-failure", "kill", IMAGE, "sleep", "100"]
    subprocess.run(pallet, env={**pd.env, "PYTHONPATH": REPO}, cwd=REPO, check=True,
                   capture_output=True)
    deadline = time.monotonic() + 10
    while inspect(pd, "pt-h2")["State"]["Running"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert inspect(pd, "pt-h2")["State"]["ExitCode"] == 137  # type: ignore[index]


@pytest.mark.parametrize("point", ["create", "remove"])
def test_sigkill_in_the_middle_of_create_and_rm(pd: Palletd, point: str) -> None:
    """palletd dies (SIGKILL) half-way through; after a restart the store is consistent
    and nothing is orphaned: no record without its snapshot, no snapshot without a
    record, no mount."""
    base = os.path.dirname(pd.socket)
    snapshots = os.path.join(pd.data_root, "snapshots")
    if point == "remove":
        pd.docker("run", "--name", "pt-crash-rm", IMAGE, "true")
    pd.proc.terminate()
    pd.proc.wait()
    crashing = start_palletd(base, env={"PALLET_FAILPOINT": point})
    try:
        args = ["create", "--name", "pt-crash-create", IMAGE, "true"] if point == "create" \
            else ["rm", "pt-crash-rm"]
        out = subprocess.run(["docker", *args], env=pd.env, capture_output=True, text=True,
                             timeout=30, check=False)
        assert out.returncode != 0  # it died before answering
        crashing.proc.wait(timeout=10)
        assert crashing.proc.returncode == -9
    finally:
        if crashing.proc.poll() is None:
            crashing.proc.kill()
    new = start_palletd(base)
    pd.proc = new.proc
    ids = set(pd.docker("ps", "-aq", "--no-trunc").stdout.split())
    name = "pt-crash-create" if point == "create" else "pt-crash-rm"
    assert run(pd, "inspect", name).returncode == 1  # never acknowledged / removed
    on_disk = {k for k in os.listdir(snapshots) if len(k) == 64}
    assert on_disk == ids
    assert set(os.listdir(os.path.join(pd.data_root, "containers"))) >= ids
    assert {n for n in os.listdir(os.path.join(pd.data_root, "containers"))
            if len(n) == 64} == ids
    with open("/proc/self/mountinfo") as f:
        assert not [ln for ln in f if snapshots in ln]


def attach_echo(pd: Palletd, name: str, text: str) -> subprocess.Popen[str]:
    """`docker attach` to a running `cat`, which echoes ``text`` back through it."""
    attach = subprocess.Popen(["docker", "attach", name], env=pd.env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert attach.stdin is not None and attach.stdout is not None
    time.sleep(0.3)
    attach.stdin.write(text + "\n")
    attach.stdin.flush()
    assert attach.stdout.readline() == text + "\n"
    return attach


def test_monitor_upgrade_keeps_containers_logs_and_streams(pd: Palletd,
                                                           names: list[str]) -> None:
    """pallet-monitor re-executes itself (an upgrade): the same process, new code, and
    every container, log line, attach stream and exit still there."""
    from pallet.engine.monitorclient import MonitorClient

    names.extend(["pt-up-log", "pt-up-cat"])
    pd.docker("run", "-d", "--name", "pt-up-log", IMAGE, "sh", "-c",
              "i=0; while [ $i -lt 40 ]; do echo line $i; i=$((i+1)); sleep 0.05; done; "
              "exit 5")
    pd.docker("run", "-d", "-i", "--name", "pt-up-cat", IMAGE, "cat")
    attach = attach_echo(pd, "pt-up-cat", "before")
    assert attach.stdin is not None and attach.stdout is not None
    mon = MonitorClient(pd.exec_root)
    before = mon.call("ping")
    mon.call("upgrade")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            after = mon.call("ping")
            if after["generation"] == int(str(before["generation"])) + 1:
                break
        except OSError:
            pass
        time.sleep(0.05)
    assert after["pid"] == before["pid"] and after["generation"] == 1
    # its keeper was re-executed too (the same process, still the monitor's parent)
    assert after["keeper"] == before["keeper"]
    with open(f"/proc/{after['keeper']}/cmdline", "rb") as f:
        assert b"--keeper-resume-fd" in f.read().split(b"\0")
    attach.stdin.write("after\n")
    attach.stdin.flush()
    assert attach.stdout.readline() == "after\n"  # the same stream, across the exec
    deadline = time.monotonic() + 10
    while inspect(pd, "pt-up-log")["State"]["Running"] and time.monotonic() < deadline:
        time.sleep(0.1)
    state = inspect(pd, "pt-up-log")["State"]
    assert isinstance(state, dict) and (state["Status"], state["ExitCode"]) == ("exited", 5)
    assert pd.docker("logs", "pt-up-log").stdout.splitlines() == \
        [f"line {i}" for i in range(40)]
    assert run(pd, "exec", "pt-up-cat", "true").returncode == 0
    attach.stdin.close()  # cat's stdin stays open (not StdinOnce); stop it
    pd.docker("stop", "-t", "1", "pt-up-cat")
    assert attach.wait(timeout=20) == 137


def alive(pid: int) -> bool:
    """Running, not a zombie (a killed orphan waits for the host's init to reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_monitor_killed_is_replaced_and_loses_nothing(pd: Palletd,
                                                         names: list[str]) -> None:
    """kill -9 of pallet-monitor: its keeper starts another, which takes every container
    over (their stdio came to the keeper over SCM_RIGHTS): no log line lost, stdin still
    open, exits that happened while no monitor ran reported with their codes."""
    from pallet.engine.monitorclient import MonitorClient

    names.extend(["pt-mk-log", "pt-mk-sleep", "pt-mk-cat", "pt-mk-exit"])
    pd.docker("run", "-d", "--name", "pt-mk-log", IMAGE, "sh", "-c",
              "i=0; while [ $i -lt 60 ]; do echo line $i; i=$((i+1)); sleep 0.05; done; "
              "exit 5")
    pd.docker("run", "-d", "--name", "pt-mk-sleep", IMAGE, "sleep", "100")
    pd.docker("run", "-d", "-i", "--name", "pt-mk-cat", IMAGE, "cat")
    pd.docker("run", "-d", "--name", "pt-mk-exit", IMAGE, "sh", "-c", "sleep 1; exit 7")
    mon = MonitorClient(pd.exec_root)
    before = mon.call("ping")
    old, keeper = int(str(before["pid"])), int(str(before["keeper"]))
    assert keeper and keeper != old
    os.kill(keeper, signal.SIGSTOP)  # so that pt-mk-exit ends while no monitor runs
    try:
        os.kill(old, 9)
        time.sleep(2)
    finally:
        os.kill(keeper, signal.SIGCONT)
    after = mon.call("ping")
    assert after["pid"] != old and after["keeper"] == keeper
    assert pd.docker("wait", "pt-mk-exit").stdout.strip() == "7"
    assert pd.docker("wait", "pt-mk-log").stdout.strip() == "5"
    assert pd.docker("logs", "pt-mk-log").stdout.splitlines() == \
        [f"line {i}" for i in range(60)]
    state = inspect(pd, "pt-mk-sleep")["State"]
    assert isinstance(state, dict) and state["Running"]
    assert run(pd, "exec", "pt-mk-sleep", "true").returncode == 0
    attach = attach_echo(pd, "pt-mk-cat", "after")  # its stdin, held across the restart
    assert attach.stdin is not None
    attach.stdin.close()  # cat's stdin stays open (not StdinOnce)
    # SIGTERM: a restart the monitor sees coming (it hands over what it buffers too)
    os.kill(int(str(after["pid"])), signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            again = mon.call("ping")
            if again["pid"] != after["pid"]:
                break
        except OSError:
            pass
        time.sleep(0.05)
    assert again["pid"] != after["pid"] and again["keeper"] == keeper
    # (the docker CLI, its stream gone with the monitor, waits for cat to exit)
    attach.kill()
    attach.wait()
    attach = attach_echo(pd, "pt-mk-cat", "again")
    assert attach.stdin is not None
    attach.stdin.close()
    pd.docker("rm", "-f", "pt-mk-cat", "pt-mk-sleep")
    attach.wait(timeout=20)
    assert run(pd, "run", "--rm", IMAGE, "echo", "still works").stdout == "still works\n"


def test_a_monitor_killed_with_its_keeper_leaves_no_orphan(pd: Palletd,
                                                           names: list[str]) -> None:
    """kill -9 of pallet-monitor and its keeper: the containers have lost their stdio
    holder; palletd ends them and cleans up (no process, cgroup or mount left), and
    reports them."""
    from pallet.engine.monitorclient import MonitorClient

    names.append("pt-orphan")
    pd.docker("run", "-d", "--name", "pt-orphan", IMAGE, "sleep", "100")
    info = inspect(pd, "pt-orphan")
    pid, cid = info["State"]["Pid"], info["Id"]  # type: ignore[index]
    pong = MonitorClient(pd.exec_root).call("ping")
    pd.proc.terminate()
    pd.proc.wait()
    os.kill(int(str(pong["keeper"])), 9)
    os.kill(int(str(pong["pid"])), 9)
    time.sleep(0.3)
    new = start_palletd(os.path.dirname(pd.socket))
    pd.proc = new.proc
    state = inspect(pd, "pt-orphan")["State"]
    assert isinstance(state, dict) and state["Status"] == "exited"
    assert not alive(int(str(pid)))
    assert cgroup_dirs(str(cid)) == []
    with open("/proc/self/mountinfo") as f:
        assert str(cid) not in f.read()
    assert run(pd, "run", "--rm", IMAGE, "echo", "still works").stdout == "still works\n"


def test_joined_namespaces_privileged_and_throttles(pd: Palletd, names: list[str]) -> None:
    names.append("pt-base")
    pd.docker("run", "-d", "--name", "pt-base", "--hostname", "basehost", IMAGE,
              "sleep", "100")
    out = run(pd, "run", "--rm", "--pid", "container:pt-base", IMAGE, "ps", "-o", "comm")
    assert out.stdout.split()[:2] == ["COMMAND", "sleep"]  # its pid 1 is pt-base's
    # the monitor's own pid namespace for later containers is untouched
    assert run(pd, "run", "--rm", IMAGE, "sh", "-c", "echo $$").stdout == "1\n"
    out = run(pd, "run", "--rm", "--net", "container:pt-base", "--ipc", "container:pt-base",
              IMAGE, "true")
    assert out.returncode == 0, out.stderr
    out = run(pd, "run", "--rm", "--privileged", IMAGE, "sh", "-c",
              "grep CapEff /proc/self/status; grep Seccomp: /proc/self/status")
    eff = int(out.stdout.split()[1], 16)
    with open("/proc/self/status") as f:
        bnd = next(int(ln.split()[1], 16) for ln in f if ln.startswith("CapBnd:"))
    assert eff == bnd and out.stdout.split()[3] == "0"  # every capability we have; no filter
    dev = os.stat("/").st_dev
    block = f"/dev/block/{os.major(dev)}:{os.minor(dev)}"
    if os.path.exists(block):
        out = run(pd, "run", "--rm", "--device-read-bps", f"{block}:1mb", IMAGE, "cat",
                  "/sys/fs/cgroup/blkio/blkio.throttle.read_bps_device")
        assert out.stdout.split() == [f"{os.major(dev)}:{os.minor(dev)}", "1048576"], out.stderr


def test_mounts_and_what_is_not_there_yet(pd: Palletd, tmp_path: os.PathLike[str]) -> None:
    src = os.path.join(tmp_path, "src")
    os.mkdir(src)
    with open(os.path.join(src, "f"), "w") as f:
        f.write("from the host\n")
    out = run(pd, "run", "--rm", "--mount", f"type=bind,source={src},target=/data,readonly",
              "-v", f"{src}:/rw", IMAGE, "sh", "-c",
              "cat /data/f; touch /data/x 2>/dev/null || echo ro; touch /rw/made")
    assert out.stdout == "from the host\nro\n" and os.path.exists(os.path.join(src, "made"))
    out = run(pd, "run", "--rm", "--mount", "type=tmpfs,target=/scratch,tmpfs-size=1048576",
              IMAGE, "sh", "-c", "df -k /scratch | tail -1")
    assert out.stdout.split()[:2] == ["tmpfs", "1024"]
    before = pd.docker("ps", "-aq").stdout
    for args, words in ((["--network", "mynet"], "network mynet not found"),):
        out = run(pd, "run", "--rm", *args, IMAGE, "true")
        assert out.returncode == 125 and words in out.stderr, (args, out.stderr)
    assert pd.docker("ps", "-aq").stdout == before  # nothing half-created


def test_docker_py_run_returns_the_whole_output_every_time(pd: Palletd) -> None:
    """docker-py's run follows the logs, waits, removes the container and only then
    reads the stream: no line may be lost with the removed log, nor read twice."""
    client = docker.DockerClient(base_url=pd.host)
    try:
        for i in range(20):
            out = client.containers.run(IMAGE, ["echo", f"run {i}"], remove=True,
                                        network_mode="none")
            assert out == f"run {i}\n".encode()
    finally:
        client.close()
