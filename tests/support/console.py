"""Terminals in tests: a --console-socket to receive a pty master on, and reading it."""

from __future__ import annotations

import os
import select
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator

import pytest


@pytest.fixture
def console_socket() -> Iterator[tuple[str, socket.socket]]:
    """A listening unix socket for --console-socket (short path: sun_path is 108 bytes)."""
    d = tempfile.mkdtemp(prefix="pallet-test-console-")
    path = os.path.join(d, "console.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    yield path, srv
    srv.close()
    shutil.rmtree(d)


def recv_master(srv: socket.socket) -> tuple[int, bytes]:
    """The pty master the runtime sends, and the name it sends with it."""
    srv.settimeout(10)
    conn, _ = srv.accept()
    with conn:
        msg, fds, _flags, _addr = socket.recv_fds(conn, 1024, 1)
    assert len(fds) == 1
    return fds[0], msg


def read_until(fd: int, marker: bytes, timeout: float = 10) -> bytes:
    """Read ``fd`` until ``marker`` shows, the other side closes, or ``timeout``."""
    buf = b""
    deadline = time.monotonic() + timeout
    while marker not in buf and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the other side has closed
                break
            if not chunk:
                break
            buf += chunk
    return buf
