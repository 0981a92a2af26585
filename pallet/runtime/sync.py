"""The parent <-> init protocol, over a pair of pipes.

    parent (pallet-runtime)                 init (the container's first process)
    -----------------------                 ------------------------------------
    clone(namespaces) ----------------------> waits for GO
    write uid_map/gid_map, join cgroup,
    send GO {state} ------------------------>
                                              join namespaces by path, unshare cgroupns,
                                              mount the rootfs and everything in it
                          <------------------ HOOKS (run prestart/createRuntime now)
    run prestart, createRuntime hooks
    send HOOKS_DONE ------------------------->
                                              createContainer hooks, pivot_root,
                                              masked/readonly paths, sysctl, console,
                                              user, capabilities, rlimits
                          <------------------ READY
    write state.json and pid file, exit       open exec.fifo for writing: blocks until
                                              `start` opens it for reading; then
                                              startContainer hooks, seccomp, execve

    At any point init may send ERROR {message} and exit; the parent then reports the
    message, kills init and removes everything it made.

Each message is a 4-byte big-endian length followed by a JSON object with a "type".
Pipes (not a socket) because the socket module alone costs ~10 ms to import.
"""

from __future__ import annotations

import os

from pallet.oci import jsonfast

GO = "go"
HOOKS = "hooks"
HOOKS_DONE = "hooks-done"
READY = "ready"
ERROR = "error"


class ProtocolError(Exception):
    """The other side went away or sent something unexpected."""


class Channel:
    """One end of the pipe pair: read from ``rfd``, write to ``wfd``."""

    def __init__(self, rfd: int, wfd: int) -> None:
        self.rfd = rfd
        self.wfd = wfd

    def send(self, kind: str, **fields: object) -> None:
        fields["type"] = kind
        data = jsonfast.dumps(fields).encode()
        try:
            os.write(self.wfd, len(data).to_bytes(4, "big") + data)
        except BrokenPipeError:
            raise ProtocolError("peer closed the channel") from None

    def recv(self) -> dict[str, object]:
        size = int.from_bytes(self._read_exact(4), "big")
        msg = jsonfast.loads(self._read_exact(size))
        if not isinstance(msg, dict):
            raise ProtocolError("malformed message")
        return msg

    def expect(self, kind: str) -> dict[str, object]:
        msg = self.recv()
        if msg.get("type") == ERROR:
            raise ChildError(str(msg.get("message", "unknown error")))
        if msg.get("type") != kind:
            raise ProtocolError(f"expected {kind!r}, got {msg.get('type')!r}")
        return msg

    def pending_error(self) -> str:
        """The message of an ERROR the peer sent before it went away, if any."""
        try:
            msg = self.recv()
        except (ProtocolError, OSError, ValueError):
            return ""
        return str(msg.get("message", "")) if msg.get("type") == ERROR else ""

    def _read_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = os.read(self.rfd, n - len(buf))
            if not chunk:
                raise ProtocolError("peer closed the channel")
            buf += chunk
        return buf

    def close(self) -> None:
        for fd in (self.rfd, self.wfd):
            try:
                os.close(fd)
            except OSError:
                pass


class ChildError(Exception):
    """init reported a failure; the message is meant for the user."""


def pair() -> tuple[Channel, Channel]:
    """(parent end, child end); every descriptor is close-on-exec."""
    p2c_r, p2c_w = os.pipe2(os.O_CLOEXEC)
    c2p_r, c2p_w = os.pipe2(os.O_CLOEXEC)
    return Channel(c2p_r, p2c_w), Channel(p2c_r, c2p_w)
