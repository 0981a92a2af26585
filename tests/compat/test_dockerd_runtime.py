"""dockerd (through containerd and its runc shim) runs containers with pallet-runtime.

A private dockerd — its own socket, data root, exec root and cgroup parent, no
bridge and no firewall rules — gets pallet-runtime as an extra runtime; the real
docker CLI then drives containers with `--runtime pallet`. This is the path by which
containerd, and through it Kubernetes, would use pallet-runtime.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.support.runtime import busybox_template, runtime_command

pytestmark = pytest.mark.root

CGROUP_PARENT = "pallet-test-docker"


class Docker:
    def __init__(self, sock: str) -> None:
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{sock}"}

    def __call__(self, *args: str, check: bool = True,
                 timeout: float = 60) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["docker", *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} exited {proc.returncode}\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc


@pytest.fixture(scope="module")
def docker() -> Iterator[Docker]:
    if not shutil.which("dockerd"):
        pytest.fail("dockerd is not installed: test.sh installs docker.io")
    launcher = runtime_command()
    if len(launcher) != 1:
        pytest.fail("pallet-runtime launcher missing: run setup.sh")
    tag = uuid.uuid4().hex[:8]
    data = tempfile.mkdtemp(prefix="pallet-test-dockerd-")
    run = f"/run/pallet-test-dk-{tag}"
    sock = f"{run}.sock"
    log = open(os.path.join(data, "dockerd.log"), "wb")  # noqa: SIM115 - kept for the daemon
    daemon = subprocess.Popen([
        "dockerd", "--host", f"unix://{sock}", "--data-root", os.path.join(data, "root"),
        "--exec-root", run, "--pidfile", f"{run}.pid", "--iptables=false",
        "--ip6tables=false", "--bridge=none", "--ip-forward=false", "--ip-masq=false",
        "--cgroup-parent", "/" + CGROUP_PARENT, "--add-runtime", f"pallet={launcher[0]}",
    ], stdout=log, stderr=subprocess.STDOUT)
    d = Docker(sock)
    try:
        deadline = time.monotonic() + 60
        while d("version", check=False).returncode != 0:
            if daemon.poll() is not None or time.monotonic() > deadline:
                log.flush()
                with open(os.path.join(data, "dockerd.log")) as f:
                    pytest.fail(f"dockerd did not start:\n{f.read()[-3000:]}")
            time.sleep(0.2)
        tar = subprocess.run(["tar", "-C", busybox_template(), "-c", "."], capture_output=True,
                             check=True).stdout
        subprocess.run(["docker", "import", "-", "pallet-test-busybox:1"], input=tar,
                       env=d.env, check=True, capture_output=True)
        yield d
    finally:
        ids = d("ps", "-aq", check=False).stdout.split()
        if ids:
            d("rm", "-f", *ids, check=False)
        daemon.terminate()
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        log.close()
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(run, ignore_errors=True)
        for name in (sock, f"{run}.pid"):
            if os.path.exists(name):
                os.unlink(name)
        for hierarchy in os.listdir("/sys/fs/cgroup"):
            path = os.path.join("/sys/fs/cgroup", hierarchy, CGROUP_PARENT)
            if os.path.isdir(path):
                os.rmdir(path)


def run(docker: Docker, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return docker("run", "--runtime", "pallet", "--network", "none", *args, check=check)


def test_docker_run_prints_and_passes_the_exit_code(docker: Docker) -> None:
    out = run(docker, "--rm", "pallet-test-busybox:1", "sh", "-c",
              "echo hello from $(hostname); exit 3", check=False)
    assert out.returncode == 3
    assert out.stdout.startswith("hello from ")


def test_docker_defaults_apply_inside(docker: Docker) -> None:
    status = run(docker, "--rm", "pallet-test-busybox:1", "cat", "/proc/self/status").stdout
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert fields["CapEff"].strip() == "00000000a80425fb"  # docker's 14 default capabilities
    assert fields["Seccomp"].strip() == "2"               # docker's default profile
    cg = run(docker, "--rm", "pallet-test-busybox:1", "cat", "/proc/1/cgroup").stdout
    # every hierarchy places it under docker's cgroup parent (the path may sit below
    # the root this machine's own cgroup namespace shows)
    for line in cg.splitlines():
        assert f"/{CGROUP_PARENT}/" in line, cg


def test_docker_container_lifecycle(docker: Docker) -> None:
    cid = run(docker, "-d", "pallet-test-busybox:1", "sh", "-c",
              "while :; do echo tick; sleep 0.1; done").stdout.strip()
    try:
        deadline = time.monotonic() + 10
        while "tick" not in docker("logs", cid).stdout and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "tick" in docker("logs", cid).stdout
        ex = docker("exec", cid, "sh", "-c", "echo in-exec; grep Seccomp: /proc/self/status")
        assert ex.stdout.split() == ["in-exec", "Seccomp:", "2"]
        docker("pause", cid)
        assert "Paused" in docker("ps", "--filter", f"id={cid}", "--format",
                                  "{{.Status}}").stdout
        docker("unpause", cid)
        docker("update", "--memory", "64m", "--memory-swap", "128m", cid)
        limit = docker("exec", cid, "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
        assert limit.stdout.strip() == str(64 * 1024 * 1024)
        docker("stop", "-t", "1", cid)
        code = docker("inspect", "-f", "{{.State.ExitCode}}", cid).stdout.strip()
        assert code in ("137", "143")
    finally:
        docker("rm", "-f", cid, check=False)


def test_docker_run_with_a_terminal(docker: Docker) -> None:
    out = run(docker, "--rm", "-t", "pallet-test-busybox:1", "tty")
    assert out.stdout.strip() == "/dev/pts/0"
