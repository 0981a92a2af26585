"""dockerd (through containerd and its runc shim) runs containers with pallet-runtime.

A private dockerd — its own socket, data root, exec root and cgroup parent, no
bridge and no firewall rules — gets pallet-runtime as an extra runtime; the real
docker CLI then drives containers with `--runtime pallet`. This is the path by which
containerd, and through it Kubernetes, would use pallet-runtime.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.support.dockerd import Dockerd, private_dockerd
from tests.support.runtime import busybox_template, runtime_command

pytestmark = pytest.mark.root

CGROUP_PARENT = "pallet-test-docker"


@pytest.fixture(scope="module")
def docker() -> Iterator[Dockerd]:
    launcher = runtime_command()
    if len(launcher) != 1:
        pytest.fail("pallet-runtime launcher missing: run setup.sh")
    had_parent = {h for h in os.listdir("/sys/fs/cgroup")
                  if os.path.isdir(os.path.join("/sys/fs/cgroup", h, CGROUP_PARENT))}
    try:
        with private_dockerd("--cgroup-parent", "/" + CGROUP_PARENT,
                             "--add-runtime", f"pallet={launcher[0]}") as d:
            tar = subprocess.run(["tar", "-C", busybox_template(), "-c", "."],
                                 capture_output=True, check=True).stdout
            d("import", "-", "pallet-test-busybox:1", input=tar)
            yield d
    finally:
        for hierarchy in os.listdir("/sys/fs/cgroup"):
            path = os.path.join("/sys/fs/cgroup", hierarchy, CGROUP_PARENT)
            if os.path.isdir(path) and hierarchy not in had_parent:
                os.rmdir(path)


def run(docker: Dockerd, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return docker("run", "--runtime", "pallet", "--network", "none", *args, check=check)


def test_docker_run_prints_and_passes_the_exit_code(docker: Dockerd) -> None:
    out = run(docker, "--rm", "pallet-test-busybox:1", "sh", "-c",
              "echo hello from $(hostname); exit 3", check=False)
    assert out.returncode == 3
    assert out.stdout.startswith("hello from ")


def test_docker_defaults_apply_inside(docker: Dockerd) -> None:
    status = run(docker, "--rm", "pallet-test-busybox:1", "cat", "/proc/self/status").stdout
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert fields["CapEff"].strip() == "00000000a80425fb"  # docker's 14 default capabilities
    assert fields["Seccomp"].strip() == "2"               # docker's default profile
    cg = run(docker, "--rm", "pallet-test-busybox:1", "cat", "/proc/1/cgroup").stdout
    # every hierarchy places it under docker's cgroup parent (the path may sit below
    # the root this machine's own cgroup namespace shows)
    for line in cg.splitlines():
        assert f"/{CGROUP_PARENT}/" in line, cg


def test_docker_container_lifecycle(docker: Dockerd) -> None:
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


def test_docker_run_with_a_terminal(docker: Dockerd) -> None:
    out = run(docker, "--rm", "-t", "pallet-test-busybox:1", "tty")
    assert out.stdout.strip() == "/dev/pts/0"
