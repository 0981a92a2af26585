"""palletd's side of the monitor socket: start the monitor when absent, ask it things.

Requests are short (one line out, one line back) and made from worker threads; attach
and watch are long-lived asyncio streams.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator

from pallet.errors import SystemFailure
from pallet.monitor import wire

START_TIMEOUT = 10.0


class MonitorClient:
    def __init__(self, exec_root: str) -> None:
        self.exec_root = exec_root
        self.path = os.path.join(exec_root, "monitor.sock")
        self.log = os.path.join(exec_root, "monitor.log")
        self._lock = threading.Lock()

    def ensure(self) -> None:
        """Start pallet-monitor unless one answers on the socket already."""
        with self._lock:
            try:
                self.call("ping")
                return
            except (OSError, SystemFailure):
                pass
            with open(self.log, "ab") as log:
                proc = subprocess.run(
                    [sys.executable, "-m", "pallet.monitor", "--exec-root", self.exec_root,
                     "--daemon"],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, check=False,
                    env={**os.environ, "PYTHONPATH": _repo_path()},
                    timeout=START_TIMEOUT)
            if proc.returncode != 0:
                raise SystemFailure(f"pallet-monitor did not start (see {self.log})",
                                    op="monitor")
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                try:
                    self.call("ping")
                    return
                except (OSError, SystemFailure):
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)

    def shutdown(self, timeout: float = 20.0) -> None:
        """Stop the monitor (its containers killed first) and wait until it is gone;
        nothing to do when none answers."""
        try:
            pong = self.call("ping")
            pids = [int(str(pong["pid"])), int(str(pong.get("keeper") or 0))]
            self.call("shutdown", force=True)
        except OSError:
            return
        deadline = time.monotonic() + timeout
        for pid in filter(None, pids):  # the monitor, then its keeper
            while True:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                if time.monotonic() > deadline:
                    raise SystemFailure(f"pallet-monitor {pid} did not exit", op="monitor")
                time.sleep(0.02)

    def call_started(self, op: str, **args: object) -> dict[str, object]:
        """``call``, starting the monitor first if none listens (nothing was sent then)."""
        try:
            return self.call(op, **args)
        except (FileNotFoundError, ConnectionRefusedError):
            self.ensure()
            return self.call(op, **args)

    def call(self, op: str, **args: object) -> dict[str, object]:
        """One request, one reply; the monitor's error comes back as its exception."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(self.path)
            s.sendall(wire.encode({"op": op, **args}))
            buf = b""
            while b"\n" not in buf:
                chunk = s.recv(65536)
                if not chunk:
                    raise SystemFailure(f"pallet-monitor closed the connection during {op}",
                                        op="monitor")
                buf += chunk
        finally:
            s.close()
        reply = wire.decode(buf.partition(b"\n")[0])
        wire.raise_error(reply)
        return reply

    async def open_stream(self, op: str, **args: object) -> tuple[
            asyncio.StreamReader, asyncio.StreamWriter, dict[str, object]]:
        """A connection switched to ``op``'s stream mode (attach, watch), and the reply."""
        reader, writer = await asyncio.open_unix_connection(self.path, limit=1 << 22)
        writer.write(wire.encode({"op": op, **args}))
        await writer.drain()
        line = await reader.readline()
        if not line:
            writer.close()
            raise SystemFailure(f"pallet-monitor closed the connection during {op}",
                                op="monitor")
        reply = wire.decode(line)
        try:
            wire.raise_error(reply)
        except BaseException:
            writer.close()
            raise
        return reader, writer, reply


async def frames(reader: asyncio.StreamReader) -> AsyncIterator[tuple[int, bytes, bytes]]:
    """An attach stream's frames: (stream 1 or 2, the frame's header, its data), until
    the stream ends."""
    header = wire.HEADER
    while True:
        try:
            head = await reader.readexactly(header.size)
            stream, size = header.unpack(head)
            data = await reader.readexactly(size)
        except asyncio.IncompleteReadError:
            return
        yield stream, head, data


def _repo_path() -> str:
    """Where the ``pallet`` package lives, for a monitor started by a checkout's palletd."""
    import pallet

    return os.path.dirname(os.path.dirname(os.path.abspath(pallet.__file__)))
