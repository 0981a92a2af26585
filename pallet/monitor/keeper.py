"""pallet-monitor's keeper: the process that outlives a monitor.

    keeper (subreaper) ──fork+exec──> monitor ──fork──> container inits
      │ holds the listening socket, and a duplicate of each container's stdio that the
      │ monitor sends it over SCM_RIGHTS as it takes them (``hold``/``drop``)
      └ when the monitor dies (a crash, SIGKILL, SIGTERM): the kernel re-parents its
        containers to the keeper, their nearest subreaper; the keeper reaps the monitor,
        starts a new one on the same socket, hands it every container's descriptors and
        the exits it has seen (``adopt``), and passes on each later exit of theirs.

Only a process's parent learns how it ended, so what outlives monitors has to be
their ancestor. The keeper is kept small — the standard library and one prctl, no
runtime code, it reads no container's output — and is upgraded by re-executing in place, as
the monitor is. While no monitor runs, a container's output waits in its pipe (the
writer blocks when the pipe is full): nothing is lost, only late. Connections to the
dead monitor (attach streams) end; palletd's watch reconnects and sees what happened.

The channel is a SOCK_SEQPACKET socketpair, one JSON object per message:
monitor -> keeper ``{"op": "hold", "box": state}`` + its descriptors, ``{"op": "drop",
"id"}``, ``{"op": "adopt"}``, ``{"op": "upgrade"}``, ``{"op": "bye"}`` (a shutdown: the
keeper ends with the monitor); keeper -> monitor, for ``adopt``: ``{"box": state}`` +
descriptors per container, then ``{"exits": {pid: status}}``; later ``{"exit": pid,
"status": status}`` (status -1: gone, how is unknown).
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
import time
from typing import Any

from pallet.monitor import warn

MAX_MESSAGE = 1 << 20
MAX_FDS = 8
SEND_TIMEOUT = 10.0
QUICK_DEATH = 2.0  # a monitor that dies this soon after its start is restarted later
MAX_DELAY = 5.0
IGNORED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def bind_listener(path: str) -> socket.socket:
    """The monitor's listening socket at ``path``, put in place atomically (a client
    never sees a socket that does not answer)."""
    os.makedirs(os.path.dirname(path), mode=0o711, exist_ok=True)
    tmp = f"{path}.{os.getpid()}"
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(tmp)
    os.chmod(tmp, 0o600)
    sock.listen(128)
    os.rename(tmp, path)
    sock.setblocking(False)
    return sock


def monitor_argv(exec_root: str, sock_path: str, *extra: str) -> list[str]:
    """``python -m pallet.monitor`` for ``exec_root`` and ``sock_path``, then ``extra``."""
    return [sys.executable, "-m", "pallet.monitor", "--exec-root", exec_root,
            "--socket", sock_path, *extra]


def reexec(exec_root: str, sock_path: str, flag: str, state: bytes, fds: list[int]) -> None:
    """Replace this process's program with pallet.monitor's (an upgrade in place):
    ``state`` goes in a memfd named by ``flag``, ``fds`` stay open across the exec.
    Returns only by raising OSError, when the exec failed (and nothing changed)."""
    memfd = os.memfd_create("pallet-monitor-state")
    try:
        os.write(memfd, state)
        for fd in (*fds, memfd):
            os.set_inheritable(fd, True)
        os.execv(sys.executable, monitor_argv(exec_root, sock_path, flag, str(memfd)))
    finally:  # still here: the exec failed
        os.close(memfd)
        for fd in fds:
            os.set_inheritable(fd, False)


def read_state(memfd: int) -> Any:
    """What ``reexec`` left for the new program (the memfd is closed)."""
    try:
        return json.loads(os.pread(memfd, os.fstat(memfd).st_size, 0))
    finally:
        os.close(memfd)


def send(chan: socket.socket, msg: dict[str, Any], fds: list[int] | None = None) -> None:
    data = json.dumps(msg, separators=(",", ":")).encode()
    if fds:
        socket.send_fds(chan, [data], fds)
    else:
        chan.send(data)


def recv(chan: socket.socket, flags: int = 0) -> tuple[dict[str, Any] | None, list[int]]:
    """One message and the descriptors that came with it; (None, []) at the end."""
    data, fds, msg_flags, _ = socket.recv_fds(chan, MAX_MESSAGE, MAX_FDS,
                                              socket.MSG_CMSG_CLOEXEC | flags)
    if not data:
        for fd in fds:
            os.close(fd)
        return None, []
    if msg_flags & socket.MSG_CTRUNC:
        for fd in fds:
            os.close(fd)
        raise OSError("pallet-monitor keeper: descriptors cut off in transit")
    return json.loads(data), fds


class Keeper:
    def __init__(self, exec_root: str, sock_path: str, listener: int) -> None:
        self.exec_root = exec_root
        self.sock_path = sock_path
        self.listener = listener
        self.chan: socket.socket | None = None
        self.monitor = 0  # its pid; 0 while none runs
        self.started = 0.0
        self.restart_at = 0.0
        self.delay = 0.1
        self.bye = False
        self.adopted = False  # the running monitor has taken what is held
        self.boxes: dict[str, tuple[dict[str, Any], list[int]]] = {}
        self.exits: dict[int, int] = {}  # for the next monitor: pid -> wait status
        self.wake = -1

    # --- the loop -----------------------------------------------------------------------

    def serve(self) -> None:
        from pallet.linux import prctl

        prctl.set_child_subreaper()
        rfd, self.wake = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.wake)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        for sig in IGNORED:
            signal.signal(sig, signal.SIG_IGN)  # only its monitor's shutdown ends it
        poller = select.poll()
        poller.register(rfd, select.POLLIN)
        watched = -1
        self._reap()
        while True:
            if self.monitor == 0 and time.monotonic() >= self.restart_at:
                self._spawn()
            want = self.chan.fileno() if self.chan is not None else -1
            if want != watched:
                if watched >= 0:
                    poller.unregister(watched)
                if want >= 0:
                    poller.register(want, select.POLLIN)
                watched = want
            timeout = None
            if self.monitor == 0:
                timeout = max(0, int((self.restart_at - time.monotonic()) * 1000) + 1)
            for fd, _ in poller.poll(timeout):
                if fd == rfd:
                    try:
                        while os.read(rfd, 512):
                            pass
                    except BlockingIOError:
                        pass
                elif self.chan is not None and fd == self.chan.fileno():
                    self._message()
            if self._reap():
                return

    def _spawn(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        argv = monitor_argv(self.exec_root, self.sock_path, "--listen-fd", str(self.listener),
                            "--keeper-fd", str(theirs.fileno()))
        pid = os.fork()
        if pid == 0:
            try:
                signal.set_wakeup_fd(-1)
                for sig in (*IGNORED, signal.SIGCHLD):
                    signal.signal(sig, signal.SIG_DFL)
                os.set_inheritable(self.listener, True)
                os.set_inheritable(theirs.fileno(), True)
                os.execv(sys.executable, argv)
            finally:
                os._exit(127)
        theirs.close()
        ours.settimeout(SEND_TIMEOUT)
        self.chan, self.monitor, self.adopted = ours, pid, False
        self.started = time.monotonic()

    def _message(self) -> bool:
        """Take one message from the monitor; False when none is waiting."""
        assert self.chan is not None
        try:
            msg, fds = recv(self.chan, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        except OSError as exc:
            _warn(f"reading from the monitor: {exc}")
            msg, fds = None, []
        if msg is None:  # the monitor is gone (its exit is reaped next)
            self.chan.close()
            self.chan = None
            return False
        op = msg.get("op")
        if op == "hold":
            box = msg["box"]
            self._release(str(box["id"]))
            self.boxes[str(box["id"])] = (box, fds)
            return True
        for fd in fds:
            os.close(fd)
        if op == "drop":
            self._release(str(msg.get("id")))
        elif op == "bye":
            self.bye = True
        elif op == "adopt":
            self._hand_over()
        elif op == "upgrade":
            self._reexec()
        return True

    def _release(self, cid: str) -> None:
        _, fds = self.boxes.pop(cid, ({}, []))
        for fd in fds:
            os.close(fd)

    def _hand_over(self) -> None:
        """Everything held, to the monitor that asks; then the exits seen meanwhile."""
        assert self.chan is not None
        for box, _fds in self.boxes.values():
            pid = int(box.get("pid") or 0)
            if box.get("exit_code") is None and pid and pid not in self.exits \
                    and not _is_child(pid):
                self.exits[pid] = -1  # reaped by a monitor that died before saying how
        try:
            for box, fds in self.boxes.values():
                send(self.chan, {"box": box}, fds)
            send(self.chan, {"exits": {str(p): s for p, s in self.exits.items()}})
        except OSError as exc:
            _warn(f"handing over to the monitor: {exc}")
            return
        self.exits.clear()
        self.adopted = True

    def _reap(self) -> bool:
        """Reap every child that ended; True once the keeper's work is over."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return False
            if pid == 0:
                return False
            if pid != self.monitor:
                self._exited(pid, status)
                continue
            self.monitor = 0
            if self.chan is not None:  # what it sent before dying still counts
                while self._message():
                    pass
                if self.chan is not None:
                    self.chan.close()
                    self.chan = None
            if self.bye:
                return True
            quick = time.monotonic() - self.started < QUICK_DEATH
            self.delay = min(self.delay * 2, MAX_DELAY) if quick else 0.1
            self.restart_at = time.monotonic() + (self.delay if quick else 0.0)
            _warn(f"pallet-monitor {pid} ended ({_how(status)}); starting another")

    def _exited(self, pid: int, status: int) -> None:
        if self.chan is not None and self.adopted:
            try:
                send(self.chan, {"exit": pid, "status": status})
                return
            except OSError:
                pass
        self.exits[pid] = status

    # --- upgrade --------------------------------------------------------------------------

    def _reexec(self) -> None:
        """The keeper's code anew in this same process (its children stay its own)."""
        held = [fd for _, fds in self.boxes.values() for fd in fds]
        fds = [self.listener, *held] + ([self.chan.fileno()] if self.chan else [])
        desc = {"listener": self.listener, "chan": self.chan.fileno() if self.chan else -1,
                "monitor": self.monitor, "started_ago": time.monotonic() - self.started,
                "adopted": self.adopted, "bye": self.bye, "delay": self.delay,
                "boxes": [[box, box_fds] for box, box_fds in self.boxes.values()],
                "exits": {str(p): s for p, s in self.exits.items()}}
        try:
            reexec(self.exec_root, self.sock_path, "--keeper-resume-fd",
                   json.dumps(desc).encode(), fds)
        except OSError as exc:
            _warn(f"upgrading the keeper: {exc}; going on as before")

    @classmethod
    def resume(cls, exec_root: str, sock_path: str, memfd: int) -> Keeper:
        desc = read_state(memfd)
        k = cls(exec_root, sock_path, int(desc["listener"]))
        if int(desc["chan"]) >= 0:
            k.chan = socket.socket(fileno=int(desc["chan"]))
            k.chan.settimeout(SEND_TIMEOUT)
        k.monitor = int(desc["monitor"])
        k.started = time.monotonic() - float(desc["started_ago"])
        k.adopted, k.bye, k.delay = bool(desc["adopted"]), bool(desc["bye"]), desc["delay"]
        k.boxes = {str(box["id"]): (box, [int(fd) for fd in fds])
                   for box, fds in desc["boxes"]}
        k.exits = {int(p): int(s) for p, s in desc["exits"].items()}
        for fd in [k.listener, *(fd for _, fds in k.boxes.values() for fd in fds)]:
            os.set_inheritable(fd, False)
        if k.chan is not None:
            os.set_inheritable(k.chan.fileno(), False)
        if k.monitor == 0:
            k.restart_at = time.monotonic()
        return k


def _is_child(pid: int) -> bool:
    try:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def _how(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"exit {os.WEXITSTATUS(status)}"


def _warn(text: str) -> None:
    warn(text, "pallet-monitor keeper")
