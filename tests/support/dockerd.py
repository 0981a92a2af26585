"""A private dockerd (Debian's docker.io 20.10) for interop tests.

Its own socket, data root and exec root; no bridge, no firewall rules, no IP
forwarding — so it changes nothing on the host and leaves nothing when stopped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


class Dockerd:
    def __init__(self, sock: str) -> None:
        self.sock = sock
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{sock}"}

    def __call__(self, *args: str, check: bool = True, timeout: float = 120,
                 input: bytes | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["docker", *args], env=self.env, capture_output=True,
                              input=input, timeout=timeout, check=False)
        out = subprocess.CompletedProcess(proc.args, proc.returncode,
                                          proc.stdout.decode(errors="replace"),
                                          proc.stderr.decode(errors="replace"))
        if check and out.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} exited {out.returncode}\n"
                                 f"{out.stdout}\n{out.stderr}")
        return out


@contextmanager
def private_dockerd(*extra: str) -> Iterator[Dockerd]:
    """Start a dockerd with ``extra`` flags; stop it and remove all it made at the end."""
    if not shutil.which("dockerd"):
        pytest.fail("dockerd is not installed: test.sh installs docker.io")
    tag = uuid.uuid4().hex[:8]
    data = tempfile.mkdtemp(prefix="pallet-test-dockerd-")
    run = f"/run/pallet-test-dk-{tag}"  # short: containerd's sockets live below it
    sock = f"{run}.sock"
    log_path = os.path.join(data, "dockerd.log")
    with open(log_path, "wb") as log:
        daemon = subprocess.Popen([
            "dockerd", "--host", f"unix://{sock}", "--data-root", os.path.join(data, "root"),
            "--exec-root", run, "--pidfile", f"{run}.pid", "--iptables=false",
            "--ip6tables=false", "--bridge=none", "--ip-forward=false", "--ip-masq=false",
            *extra,
        ], stdout=log, stderr=subprocess.STDOUT)
    d = Dockerd(sock)
    try:
        deadline = time.monotonic() + 60
        while d("version", check=False).returncode != 0:
            if daemon.poll() is not None or time.monotonic() > deadline:
                with open(log_path) as f:
                    pytest.fail(f"dockerd did not start:\n{f.read()[-3000:]}")
            time.sleep(0.2)
        yield d
    finally:
        ids = d("ps", "-aq", check=False).stdout.split() if daemon.poll() is None else []
        if ids:
            d("rm", "-f", *ids, check=False)
        daemon.terminate()
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(run, ignore_errors=True)
        for name in (sock, f"{run}.pid"):
            if os.path.exists(name):
                os.unlink(name)
