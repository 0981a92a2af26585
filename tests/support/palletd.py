"""A private palletd per test session: its own socket, data root and run dir.

Never the user's /var/lib/pallet or /run/pallet (STYLE.md: test daemons are private).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from tests.conftest import REPO


@dataclass
class Palletd:
    socket: str
    data_root: str
    exec_root: str
    proc: subprocess.Popen[bytes]
    log: str

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.host}

    def request(self, method: str, path: str,
                body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        conn = _UnixConnection(self.socket)
        try:
            conn.request(method, path, body=body)
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()

    def docker(self, *args: str, check: bool = True, cli: str = "docker",
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([cli, *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"{cli} {' '.join(args)} exited {proc.returncode}\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self._path)
        self.sock = s


def start_palletd(base: str, *extra: str, env: dict[str, str] | None = None) -> Palletd:
    sock = os.path.join(base, "pallet.sock")
    data, run = os.path.join(base, "data"), os.path.join(base, "run")
    log = os.path.join(base, "palletd.log")
    if "--bridge" not in extra:
        # its own default bridge and firewall table, never a running palletd's
        tag = hashlib.sha256(base.encode()).hexdigest()[:8]
        extra = ("--bridge", f"pt{tag}", "--firewall-table", f"pallet_t{tag}", *extra)
    with open(log, "wb") as out:
        cgroup = "/" + os.path.basename(base.rstrip("/"))  # named like the test: checked
        proc = subprocess.Popen([sys.executable, "-m", "pallet.api.daemon", "-H", f"unix://{sock}",
                                 "--data-root", data, "--exec-root", run,
                                 "--cgroup-parent", cgroup, *extra],
                                stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                                env={**os.environ, **(env or {})})
    d = Palletd(sock, data, run, proc, log)
    deadline = time.monotonic() + 20
    while True:
        if proc.poll() is not None:
            with open(log) as f:
                raise RuntimeError(f"palletd exited {proc.returncode}:\n{f.read()}")
        try:
            if d.request("GET", "/_ping")[0] == 200:
                return d
        except OSError:
            pass
        if time.monotonic() > deadline:
            stop_palletd(d)
            raise RuntimeError("palletd did not answer /_ping within 20 s")
        time.sleep(0.05)


def stop_palletd(d: Palletd, monitor: bool = True) -> None:
    """Stop palletd; with ``monitor``, also its pallet-monitor and every container left."""
    if d.proc.poll() is None:
        d.proc.send_signal(signal.SIGTERM)
        try:
            d.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            d.proc.kill()
            d.proc.wait()
    if monitor:
        stop_monitor(d.exec_root)
        teardown_network(d)
        # The containers' parent cgroup, named after the daemon's dir (empty by now).
        from tests.support.leftovers import cgroup_dirs

        for path in sorted(cgroup_dirs(os.path.basename(os.path.dirname(d.socket))),
                           key=len, reverse=True):
            os.rmdir(path)


def teardown_network(d: Palletd) -> None:
    """The daemon's bridges, firewall table and leftover netns files (after palletd and
    its containers are gone)."""
    from pallet.engine.config import DaemonConfig
    from pallet.engine.events import EventBus
    from pallet.engine.networks import NetworkService
    from pallet.engine.sandbox import Sandboxes

    args = list(d.proc.args)  # type: ignore[arg-type]
    cfg = DaemonConfig(data_root=d.data_root, exec_root=d.exec_root,
                       firewall_table=args[args.index("--firewall-table") + 1])
    if os.path.isdir(cfg.path("networks")):
        Sandboxes(cfg, NetworkService(cfg, EventBus())).teardown_all()


def stop_monitor(exec_root: str) -> None:
    """Shut the monitor of ``exec_root`` down (its containers killed first) and wait."""
    from pallet.engine.monitorclient import MonitorClient

    MonitorClient(exec_root).shutdown()


@contextmanager
def palletd_with_image(prefix: str, image: str, *changes: str,
                       args: tuple[str, ...] = ()) -> Iterator[Palletd]:
    """A private palletd (dirs named ``prefix``...) with a busybox ``image`` imported;
    at the end every container is removed, palletd and its monitor stopped."""
    from tests.compat.test_docker_cli_images import import_busybox

    base = tempfile.mkdtemp(prefix=prefix)
    d = start_palletd(base, *args)
    try:
        import_busybox(d, image, *changes)
        yield d
    finally:
        d.docker("rm", "-f", *d.docker("ps", "-aq").stdout.split(), check=False)
        stop_palletd(d)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def palletd() -> Iterator[Palletd]:
    base = tempfile.mkdtemp(prefix="pallet-test-palletd-")
    d = start_palletd(base)
    try:
        yield d
    finally:
        stop_palletd(d)
        shutil.rmtree(base, ignore_errors=True)
