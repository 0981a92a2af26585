"""podman (with conmon) runs containers with pallet-runtime as its OCI runtime.

Private storage and run roots under a temp dir; the cgroupfs manager (no systemd here).
This machine has no CAP_SYS_RESOURCE, so podman's default rlimits cannot be set: the
ulimits below are the ones ../shared/BENCHMARKS.md gives.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator

import pytest

from tests.support.runtime import busybox_template, runtime_command

pytestmark = pytest.mark.root

ULIMITS = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768"]
CGROUPS = "/sys/fs/cgroup"


class Podman:
    def __init__(self, storage: str, run_root: str) -> None:
        self.base = ["podman", "--root", storage, "--runroot", run_root,
                     "--cgroup-manager", "cgroupfs", "--runtime", runtime_command()[0]]

    def __call__(self, *args: str, check: bool = True,
                 input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        proc = subprocess.run([*self.base, *args], capture_output=True, input=input,
                              timeout=120, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} exited {proc.returncode}\n"
                                 f"{proc.stdout.decode()}\n{proc.stderr.decode()}")
        return proc


def _parent_cgroups() -> set[str]:
    return {h for h in os.listdir(CGROUPS) if os.path.isdir(f"{CGROUPS}/{h}/libpod_parent")}


@pytest.fixture(scope="module")
def podman() -> Iterator[Podman]:
    if not shutil.which("podman") or len(runtime_command()) != 1:
        pytest.fail("podman or the pallet-runtime launcher is missing: run test.sh")
    had_parent = _parent_cgroups()
    storage = tempfile.mkdtemp(prefix="pallet-test-podman-")
    run_root = f"/run/pallet-test-podman-{uuid.uuid4().hex[:8]}"
    p = Podman(storage, run_root)
    try:
        tar = subprocess.run(["tar", "-C", busybox_template(), "-c", "."], capture_output=True,
                             check=True).stdout
        p("import", "-", "pallet-test-busybox:1", input=tar)
        yield p
    finally:
        p("rm", "-a", "-f", check=False)
        p("system", "reset", "-f", check=False)
        shutil.rmtree(storage, ignore_errors=True)
        shutil.rmtree(run_root, ignore_errors=True)
        for h in _parent_cgroups() - had_parent:  # conmon's cgroups, made for this test
            for dirpath, _dirs, _files in sorted(os.walk(f"{CGROUPS}/{h}/libpod_parent"),
                                                 key=lambda w: -len(w[0])):
                os.rmdir(dirpath)


def run(podman: Podman, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    return podman("run", "--network", "none", "--pull=never", *ULIMITS, *args, check=check)


def test_podman_run(podman: Podman) -> None:
    out = run(podman, "--rm", "pallet-test-busybox:1", "sh", "-c",
              "echo hello; grep Seccomp: /proc/self/status; exit 5", check=False)
    assert out.returncode == 5
    assert out.stdout.decode().split() == ["hello", "Seccomp:", "2"]


def test_podman_detached_exec_and_stop(podman: Podman) -> None:
    cid = run(podman, "-d", "pallet-test-busybox:1", "sleep", "100").stdout.decode().strip()
    try:
        assert podman("exec", cid, "echo", "in-exec").stdout.decode() == "in-exec\n"
        podman("pause", cid)
        podman("unpause", cid)
        podman("stop", "-t", "1", cid)
        state = podman("inspect", "-f", "{{.State.Status}}", cid).stdout.decode().strip()
        assert state in ("exited", "stopped")
    finally:
        podman("rm", "-f", cid, check=False)
