"""The monitor's loop: one thread, one epoll, every container's stdio and exit.

    palletd ──unix socket──> Monitor ──fork (runtime code, imported once)──> container init
                               │  holds stdin/stdout/stderr (or the pty master)
                               │  writes the log, fans output out to attach streams
                               └─ reaps init (SIGCHLD), writes <state_dir>/exit.json

A container's exit is final once its output is drained: the exit record, the end of
its attach streams and the ``exit`` event all come after its last log line (or after
DRAIN_SECONDS, when something outside the container's pid namespace keeps its stdout
open).
"""

from __future__ import annotations

import errno
import os
import select
import signal
import socket
import time

from pallet.errors import InvalidArgument, InvalidState, NotFound
from pallet.monitor import keeper, logfile, warn, wire
from pallet.monitor.keeperlink import KeeperLink
from pallet.oci import jsonfast
from pallet.oci import spec as ocispec
from pallet.runtime import container, lifecycle, state

DRAIN_SECONDS = 2.0
CHUNK = 65536
MAX_BUFFER = 4 << 20  # what an attach client may fall behind before it is cut off
EXIT_RECORD = "exit.json"


class Box:
    """One container the monitor is the parent of."""

    def __init__(self, cid: str, state_dir: str, tty: bool, container: str = "") -> None:
        self.id = cid
        self.container = container  # for a process exec'd in a container: that container
        self.state_dir = state_dir
        self.tty = tty
        self.pid = 0
        self.master = -1
        self.stdin = -1  # our end of the container's stdin pipe (or the pty master)
        self.stdin_once = False
        self.stdin_buf = b""
        self.stdin_closing = False  # close stdin once stdin_buf is written
        self.stdin_polled = False  # stdin is in the epoll set for EPOLLOUT
        self.outputs: dict[int, str] = {}  # fd -> "stdout" | "stderr"
        self.log: logfile.LogWriter | None = None
        self.attached: list[Conn] = []
        self.started_at = 0.0
        self.exit_code: int | None = None
        self.finished_at = 0.0
        self.oom_killed = False
        self.deadline = 0.0
        self.done = False

    def record(self) -> dict[str, object]:
        return {"id": self.id, "container": self.container, "pid": self.pid,
                "running": not self.done,
                "exitCode": self.exit_code if self.done else None,
                "startedAt": self.started_at, "finishedAt": self.finished_at,
                "oomKilled": self.oom_killed}


class Conn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.inbuf = b""
        self.outbuf = bytearray()
        self.mode = "rpc"  # "attach" | "watch" once switched
        self.box_id = ""
        self.stdin = False
        self.streams: tuple[bool, bool] = (True, True)  # stdout, stderr
        self.closing = False  # close once outbuf is flushed
        self.read_eof = False
        self.events = select.EPOLLIN
        self.box: Box | None = None  # the container attached to (None while waiting)
        self.pending = b""  # stdin sent before the container started


class Monitor(KeeperLink):
    def __init__(self, exec_root: str, sock_path: str) -> None:
        self.exec_root = exec_root
        self.runtime_root = os.path.join(exec_root, "runtime")
        self.sock_path = sock_path
        self.ep = select.epoll()
        self.boxes: dict[str, Box] = {}
        self.by_pid: dict[int, Box] = {}
        self.conns: dict[int, Conn] = {}
        self.out_fds: dict[int, Box] = {}
        self.in_fds: dict[int, Box] = {}  # stdin pipes waiting to be writable
        self.waiting: dict[str, list[Conn]] = {}  # attached before the container started
        self.running = True
        self.stopping = False  # shutting down once every container is gone
        self.upgrading = False  # re-exec (handover.reexec) once this round is done
        self.generation = 0  # how many times this monitor was re-executed
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.keeper: socket.socket | None = None  # the channel to our keeper (keeper.py)
        self.to_keep: list[Box] = []  # started: for the keeper once the replies are out

    # --- setup ---------------------------------------------------------------------------

    def bind(self) -> None:
        self.listener.close()
        self.listener = keeper.bind_listener(self.sock_path)

    def serve(self) -> None:
        from pallet.linux import prctl

        prctl.set_child_subreaper()
        rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wfd)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        self.ep.register(self.listener.fileno(), select.EPOLLIN)
        self.ep.register(rfd, select.EPOLLIN)
        while self.running:
            try:
                events = self.ep.poll(self._timeout())
            except InterruptedError:
                events = []
            for fd, ev in events:
                if fd == self.listener.fileno():
                    self._accept()
                elif fd == rfd:
                    try:
                        while os.read(rfd, 512):
                            pass
                    except BlockingIOError:
                        pass
                elif fd in self.out_fds or fd in self.in_fds:
                    box = self.out_fds.get(fd) or self.in_fds[fd]
                    if ev & select.EPOLLOUT and fd == box.stdin:
                        self._write_stdin(box)
                    if ev & ~select.EPOLLOUT and fd in self.out_fds:
                        self._output(fd)
                elif fd in self.conns:
                    self._conn_event(self.conns[fd], ev)
                elif self.keeper is not None and fd == self.keeper.fileno():
                    self._from_keeper()
            for box in self.to_keep:
                self._keep(box)
            self.to_keep.clear()
            self._reap()
            self._deadlines()
            if self.stopping and all(b.done for b in self.boxes.values()):
                self.running = False
            if self.upgrading:
                self.upgrading = False
                from pallet.monitor import handover

                self._tell_keeper({"op": "upgrade"})  # the keeper's code too, in place
                try:
                    handover.reexec(self)  # does not return when it works
                except OSError as exc:
                    warn(f"upgrade: {exc}; going on as before")
        if self.keeper is not None and not self.stopping:
            # Not a shutdown (SIGTERM): the keeper starts another monitor, which takes
            # every container over, with what is buffered for them now.
            for box in self.boxes.values():
                self._keep(box, full=True)
            return
        self._tell_keeper({"op": "bye"})
        self.listener.close()
        try:
            os.unlink(self.sock_path)
        except FileNotFoundError:
            pass

    def _stop(self, *_: object) -> None:
        self.running = False

    def _timeout(self) -> float:
        pending = [b.deadline for b in self.boxes.values() if b.deadline and not b.done]
        if not pending:
            return -1
        return max(0.0, min(pending) - time.monotonic())

    # --- connections -----------------------------------------------------------------------

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except BlockingIOError:
                return
            sock.setblocking(False)
            conn = Conn(sock)
            self.conns[conn.fd] = conn
            self.ep.register(conn.fd, select.EPOLLIN)

    def _conn_event(self, conn: Conn, ev: int) -> None:
        if ev & select.EPOLLOUT:
            self._flush(conn)
            if conn.fd not in self.conns:
                return
        if ev & select.EPOLLHUP:
            self._drop(conn)  # gone both ways
            return
        if ev & (select.EPOLLIN | select.EPOLLERR):
            try:
                data = conn.sock.recv(CHUNK)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._conn_eof(conn)
                return
            if conn.mode == "attach":
                self._stdin(conn, data)
                return
            conn.inbuf += data
            while conn.mode == "rpc" and b"\n" in conn.inbuf:
                line, _, conn.inbuf = conn.inbuf.partition(b"\n")
                self._request(conn, line)
            if conn.mode == "attach" and conn.inbuf:
                rest, conn.inbuf = conn.inbuf, b""
                self._stdin(conn, rest)

    def _conn_eof(self, conn: Conn) -> None:
        """The client shut its write side: for attach, stdin's EOF; else it is done."""
        box = conn.box
        if conn.mode != "attach" or conn.closing or (box is not None and box.done):
            self._drop(conn)
            return
        conn.read_eof = True
        if box is not None and conn.stdin:
            conn.stdin = False
            if box.stdin_once:
                self._close_stdin(box)
        self._modify(conn)  # it still reads the container's output

    def _request(self, conn: Conn, line: bytes) -> None:
        try:
            msg = wire.decode(line)
            op = str(msg.get("op", ""))
            handler = getattr(self, f"op_{op.replace('-', '_')}", None)
            if handler is None:
                raise InvalidArgument(f"unknown monitor operation {op!r}")
            reply = handler(conn, msg)
        except Exception as exc:  # every failure goes back to the caller
            reply = wire.error_reply(exc)
        if reply is not None:
            self._send(conn, wire.encode(reply))

    def _send(self, conn: Conn, data: bytes) -> None:
        if conn.fd not in self.conns:
            return
        if len(conn.outbuf) > MAX_BUFFER:
            self._drop(conn)  # a reader this far behind is cut off, never waited for
            return
        conn.outbuf += data
        self._flush(conn)

    def _flush(self, conn: Conn) -> None:
        while conn.outbuf:
            try:
                n = conn.sock.send(conn.outbuf)
            except BlockingIOError:
                break
            except OSError:
                self._drop(conn)
                return
            del conn.outbuf[:n]
        if not conn.outbuf and conn.closing:
            self._drop(conn)
            return
        self._modify(conn)

    def _modify(self, conn: Conn) -> None:
        want = (select.EPOLLOUT if conn.outbuf else 0) | (0 if conn.read_eof else select.EPOLLIN)
        if want != conn.events:
            conn.events = want
            self.ep.modify(conn.fd, want)

    def _drop(self, conn: Conn) -> None:
        if self.conns.pop(conn.fd, None) is None:
            return
        try:
            self.ep.unregister(conn.fd)
        except OSError:
            pass
        for box in self.boxes.values():
            if conn in box.attached:
                box.attached.remove(conn)
        for waiters in self.waiting.values():
            if conn in waiters:
                waiters.remove(conn)
        conn.sock.close()

    def _finish_conn(self, conn: Conn) -> None:
        conn.closing = True
        self._flush(conn)

    # --- operations ------------------------------------------------------------------------

    def op_ping(self, conn: Conn, msg: dict[str, object]) -> dict[str, object]:
        return {"ok": True, "pid": os.getpid(), "generation": self.generation,
                "keeper": os.getppid() if self.keeper is not None else 0}

    def op_upgrade(self, conn: Conn, msg: dict[str, object]) -> dict[str, object]:
        """Re-execute the monitor's (possibly new) code in this process, keeping every
        container, log and connection (see handover)."""
        self.upgrading = True
        return {"ok": True}

    def op_list(self, conn: Conn, msg: dict[str, object]) -> dict[str, object]:
        return {"ok": True, "containers": [b.record() for b in self.boxes.values()]}

    def op_start(self, conn: Conn, msg: dict[str, object]) -> dict[str, object]:
        """Create and start a container from its bundle; its output goes to the log."""
        cid = str(msg["id"])
        old = self.boxes.get(cid)
        if old is not None:
            if not old.done:
                raise InvalidState(f"container {cid} is already running", obj=cid)
            self._forget(old)
        box = Box(cid, str(msg["state_dir"]), bool(msg.get("tty")))
        box.stdin_once = bool(msg.get("stdin_once"))
        log = msg.get("log")
        if isinstance(log, dict) and log.get("path"):
            attrs = log.get("attrs")
            box.log = logfile.LogWriter(str(log["path"]), int(log.get("max_size", 0)),
                                        int(log.get("max_file", 1)),
                                        bool(log.get("compress")),
                                        attrs if isinstance(attrs, dict) else None)
        try:
            self._spawn(box, str(msg["bundle"]), bool(msg.get("stdin")))
        except BaseException:
            self._close_fds(box)
            if box.log is not None:
                box.log.close()
            for c in self.waiting.pop(cid, []):
                self._finish_conn(c)  # nothing will come: the attach streams end
            raise
        self.boxes[cid] = box
        self.by_pid[box.pid] = box
        self.to_keep.append(box)
        for c in self.waiting.pop(cid, []):
            self._attach_to(box, c)
        return {"ok": True, "pid": box.pid, "startedAt": box.started_at}

    def _spawn(self, box: Box, bundle: str, open_stdin: bool) -> None:
        # A runtime state left by an earlier run of this container goes first.
        if os.path.isdir(os.path.join(self.runtime_root, box.id)):
            try:
                lifecycle.delete(state.load(self.runtime_root, box.id), force=True)
            except NotFound:
                pass
        opts = container.CreateOptions(bundle=bundle, terminal_relay=box.tty)
        opts.defer_save = True
        theirs: list[int] = []
        try:
            stdio = self._stdio(box, open_stdin, theirs)
            opts.stdio = stdio or (theirs[0],) * 3  # with a terminal: /dev/null until then
            ctr, pid = container.create(self.runtime_root, box.id, opts)
            box.pid = pid
            if box.tty:
                self._take_terminal(box, opts.relay_fd, open_stdin)
                opts.relay_fd = -1
            try:
                lifecycle.start(ctr)
                ctr.save()
            except BaseException:
                lifecycle.kill_and_reap(pid)
                lifecycle.destroy(ctr)
                raise
        finally:
            for fd in theirs:
                os.close(fd)
            if opts.relay_fd >= 0:
                os.close(opts.relay_fd)
        box.started_at = time.time()
        self._watch_outputs(box)

    def _stdio(self, box: Box, open_stdin: bool,
               theirs: list[int]) -> tuple[int, int, int] | None:
        """The process's stdin, stdout and stderr ends (None with a terminal), ours kept
        in ``box``; ``theirs`` collects what to close once the process has them (its
        first entry /dev/null)."""
        null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
        theirs.append(null)
        if box.tty:
            return None
        stdin = null
        if open_stdin:
            r, w = os.pipe2(os.O_CLOEXEC)
            theirs.append(r)
            box.stdin = w
            os.set_blocking(w, False)
            stdin = r
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        theirs += [out_w, err_w]
        box.outputs = {out_r: "stdout", err_r: "stderr"}
        return stdin, out_w, err_w

    def _take_terminal(self, box: Box, relay_fd: int, open_stdin: bool) -> None:
        """The pty master the process sends over ``relay_fd`` (closed): its output and,
        with ``open_stdin``, its input."""
        from pallet.runtime import ttyrelay

        box.master = ttyrelay.recv_master(relay_fd)
        os.set_blocking(box.master, False)
        box.outputs = {box.master: "stdout"}
        if open_stdin:
            box.stdin = box.master

    def _watch_outputs(self, box: Box) -> None:
        for fd in box.outputs:
            os.set_blocking(fd, False)
            self.out_fds[fd] = box
            self.ep.register(fd, select.EPOLLIN)

    def op_exec(self, conn: Conn, msg: dict[str, object]) -> dict[str, object] | None:
        """Start one more process in a running container; unless ``detach``, the
        connection becomes its attach stream (after the reply)."""
        eid, cid = str(msg["id"]), str(msg["container"])
        owner = self.boxes.get(cid)
        if owner is None or owner.done:
            raise InvalidState(f"container {cid} is not running", obj=cid)
        if eid in self.boxes:
            raise InvalidState(f"exec {eid} was started already", obj=eid)
        proc = msg.get("process")
        if not isinstance(proc, dict):
            raise InvalidArgument("exec: process missing")
        proc_spec = ocispec.Process(proc)
        box = Box(eid, "", proc_spec.terminal, container=cid)
        box.stdin_once = True  # an exec's stdin ends with its client's
        try:
            self._spawn_exec(box, cid, proc_spec, bool(msg.get("stdin")))
        except BaseException:
            self._close_fds(box)
            raise
        self.boxes[eid] = box
        self.by_pid[box.pid] = box
        box.started_at = time.time()
        self.to_keep.append(box)
        reply: dict[str, object] = {"ok": True, "pid": box.pid}
        if msg.get("detach"):
            return reply
        self._send(conn, wire.encode(reply))
        conn.mode = "attach"
        conn.box_id = eid
        conn.stdin = bool(msg.get("stdin"))
        conn.streams = (bool(msg.get("stdout", True)), bool(msg.get("stderr", True)))
        self._attach_to(box, conn)
        return None

    def _spawn_exec(self, box: Box, cid: str, proc_spec: ocispec.Process,
                    open_stdin: bool) -> None:
        """Fork the process into the container's namespaces and cgroup, its stdio ours."""
        from pallet.runtime import execproc, ttyrelay

        theirs: list[int] = []
        relay = console = -1
        try:
            stdio = self._stdio(box, open_stdin, theirs)
            if box.tty:
                relay, console = ttyrelay.socketpair()
                theirs.append(console)
            # Straight from here: start_in joins the container's pid namespace only for
            # the fork and comes back to ours (no intermediate process, no waiting on it).
            ctr = state.load(self.runtime_root, cid)
            box.pid = execproc.start_in(ctr, proc_spec, console_fd=console, stdio=stdio,
                                        keep_ours=True)
            if box.tty:
                self._take_terminal(box, relay, open_stdin)
                relay = -1
        finally:
            for fd in theirs:
                os.close(fd)
            if relay >= 0:
                os.close(relay)
        self._watch_outputs(box)

    def op_kill(self, conn: Conn, msg: dict[str, object]) -> dict[str, object]:
        box = self._box(msg)
        if box.done:
            raise InvalidState(f"container {box.id} is not running", obj=box.id)
        sig = int(str(msg.get("signal", 9)))
        if box.container:  # an exec'd process: our child, not yet reaped
            os.kill(box.pid, sig)
            return {"ok": True}
        ctr = state.load(self.runtime_root, box.id)
        lifecycle.kill(ctr, sig, all_procs=bool(msg.get("all")))
        return {"ok": True}

    def op_pause(self, conn: Conn, msg: dict[str, object]) -> dict[str, object]:
        lifecycle.pause(state.load(self.runtime_root, self._box(msg).id))
        return {"ok": True}

    def op_resume(self, conn: Conn, msg: dict[str, object]) -> dict[str, object]:
        lifecycle.resume(state.load(self.runtime_root, self._box(msg).id))
        return {"ok": True}

    def op_resize(self, conn: Conn, msg: dict[str, object]) -> dict[str, object]:
        box = self._box(msg)
        if box.master < 0:
            raise InvalidState(f"container {box.id} has no terminal", obj=box.id)
        import fcntl
        import struct
        import termios

        fcntl.ioctl(box.master, termios.TIOCSWINSZ,
                    struct.pack("HHHH", int(str(msg.get("height", 0))),
                                int(str(msg.get("width", 0))), 0, 0))
        return {"ok": True}

    def op_forget(self, conn: Conn, msg: dict[str, object]) -> dict[str, object]:
        """palletd has recorded the exit: drop the container (a running one is refused)."""
        box = self.boxes.get(str(msg.get("id")))
        if box is not None:
            if not box.done:
                raise InvalidState(f"container {box.id} is running", obj=box.id)
            self._forget(box)
        return {"ok": True}

    def op_watch(self, conn: Conn, msg: dict[str, object]) -> None:
        """The connection becomes a feed: every container now, then each exit."""
        conn.mode = "watch"
        self._send(conn, wire.encode({"ok": True, "containers": [
            b.record() for b in self.boxes.values()]}))

    def op_attach(self, conn: Conn, msg: dict[str, object]) -> None:
        cid = str(msg.get("id"))
        conn.mode = "attach"
        conn.box_id = cid
        conn.stdin = bool(msg.get("stdin"))
        conn.streams = (bool(msg.get("stdout", True)), bool(msg.get("stderr", True)))
        self._send(conn, wire.encode({"ok": True}))
        box = self.boxes.get(cid)
        if box is None or (box.done and msg.get("wait_start")):
            # Not started yet (the docker CLI attaches first, then starts).
            self.waiting.setdefault(cid, []).append(conn)
            return
        if box.done:
            self._finish_conn(conn)
            return
        self._attach_to(box, conn)

    def _attach_to(self, box: Box, conn: Conn) -> None:
        box.attached.append(conn)
        conn.box = box
        if conn.stdin and box.stdin < 0:
            conn.stdin = False
        if conn.stdin and conn.pending:
            box.stdin_buf += conn.pending
            self._write_stdin(box)
        conn.pending = b""
        if conn.stdin and conn.read_eof:
            # stdin ended before the container started
            conn.stdin = False
            if box.stdin_once:
                self._close_stdin(box)
        self._modify(conn)

    def op_shutdown(self, conn: Conn, msg: dict[str, object]) -> dict[str, object]:
        """Exit; with ``force``, once every container is killed and reaped."""
        running = [b for b in self.boxes.values() if not b.done]
        if running and not msg.get("force"):
            raise InvalidState(f"{len(running)} containers are running")
        for box in running:
            try:
                lifecycle.kill(state.load(self.runtime_root, box.id), 9, all_procs=True)
            except Exception as exc:  # it may be exiting already
                warn(f"killing {box.id}: {exc}")
        self.stopping = True
        return {"ok": True}

    def _box(self, msg: dict[str, object]) -> Box:
        cid = str(msg.get("id"))
        box = self.boxes.get(cid)
        if box is None:
            raise NotFound(f"container {cid} is not running", obj=cid)
        return box

    # --- container output and input -----------------------------------------------------

    def _output(self, fd: int) -> None:
        box = self.out_fds[fd]
        stream = box.outputs[fd]
        try:
            data = os.read(fd, CHUNK)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno != errno.EIO:  # EIO: the pty's other side is gone
                raise
            data = b""
        if not data:
            self._close_output(box, fd)
            return
        if box.log is not None:
            box.log.write(stream, data)
        which = 1 if stream == "stdout" else 2
        framed = wire.frame(which, data)
        for conn in list(box.attached):
            if conn.streams[which - 1]:
                self._send(conn, framed)

    def _close_output(self, box: Box, fd: int) -> None:
        stream = box.outputs.pop(fd)
        self.out_fds.pop(fd, None)
        self.ep.unregister(fd)
        if box.log is not None:
            box.log.flush(stream)
        if fd == box.master:
            box.master = -1
            if box.stdin == fd:
                box.stdin = -1
                box.stdin_polled = False
        os.close(fd)
        if not box.outputs and box.exit_code is not None:
            self._finish(box)

    def _stdin(self, conn: Conn, data: bytes) -> None:
        box = conn.box
        if box is None:
            if conn.stdin and len(conn.pending) < MAX_BUFFER:
                conn.pending += data  # the container is not started yet
            return
        if box.stdin < 0 or not conn.stdin:
            return
        box.stdin_buf += data
        self._write_stdin(box)

    def _write_stdin(self, box: Box) -> None:
        while box.stdin_buf and box.stdin >= 0:
            try:
                n = os.write(box.stdin, box.stdin_buf)
            except BlockingIOError:
                break  # the container reads slowly: wait until the pipe is writable
            except OSError:
                box.stdin_buf = b""  # nobody reads its stdin any more
                break
            box.stdin_buf = box.stdin_buf[n:]
        if box.stdin >= 0 and box.stdin_closing and not box.stdin_buf:
            self._poll_stdin(box, False)
            if box.stdin != box.master:
                os.close(box.stdin)
            box.stdin = -1
            self._keep(box)  # the keeper's copy must not hold the container's stdin open
            return
        self._poll_stdin(box, bool(box.stdin_buf))

    def _poll_stdin(self, box: Box, want: bool) -> None:
        """Have epoll report stdin writable (``want``) or stop reporting it."""
        if box.stdin < 0 or want == box.stdin_polled:
            return
        box.stdin_polled = want
        if box.stdin == box.master:
            self.ep.modify(box.master, select.EPOLLIN | (select.EPOLLOUT if want else 0))
        elif want:
            self.in_fds[box.stdin] = box
            self.ep.register(box.stdin, select.EPOLLOUT)
        else:
            self.in_fds.pop(box.stdin, None)
            self.ep.unregister(box.stdin)

    def _close_stdin(self, box: Box) -> None:
        """EOF on the container's stdin, after what is still buffered for it."""
        if box.stdin >= 0 and box.stdin != box.master:
            box.stdin_closing = True
            self._write_stdin(box)

    def _close_fds(self, box: Box) -> None:
        for fd in list(box.outputs):
            self.out_fds.pop(fd, None)
            try:
                self.ep.unregister(fd)
            except (OSError, KeyError, ValueError):
                pass
            os.close(fd)
        box.outputs.clear()
        if box.stdin >= 0 and box.stdin != box.master:
            self._poll_stdin(box, False)
            os.close(box.stdin)
        box.stdin = box.master = -1

    # --- exits -------------------------------------------------------------------------------

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._exited(pid, status)

    def _exited(self, pid: int, status: int) -> None:
        """``pid`` ended with wait ``status`` (-1: how is not known)."""
        box = self.by_pid.pop(pid, None)
        if box is None:
            return  # an orphan we adopted as subreaper
        box.exit_code = lifecycle.exit_code(status) if status >= 0 else 255
        box.finished_at = time.time()
        box.oom_killed = self._oom_killed(box)
        if box.outputs:
            box.deadline = time.monotonic() + DRAIN_SECONDS
            self._keep(box)  # a monitor taking over finishes the draining
        else:
            self._finish(box)

    def _deadlines(self) -> None:
        now = time.monotonic()
        for box in list(self.boxes.values()):
            if box.deadline and not box.done and box.deadline <= now:
                for fd in list(box.outputs):
                    self._output(fd)  # what is already buffered still counts
                    if fd in box.outputs:
                        self._close_output(box, fd)
                if not box.done:
                    self._finish(box)

    def _oom_killed(self, box: Box) -> bool:
        if box.container:
            return False
        try:
            ctr = state.load(self.runtime_root, box.id)
        except (NotFound, InvalidState):
            return False
        if not ctr.cgroup_paths:
            return False
        from pallet.runtime.cgroups import Cgroup

        try:
            return Cgroup.from_paths(ctr.cgroup_paths).oom_kills() > 0
        except OSError:
            return False

    def _finish(self, box: Box) -> None:
        """The container is gone and its output drained: record it, tell everyone."""
        box.done = True
        box.deadline = 0.0
        self._close_fds(box)
        self._tell_keeper({"op": "drop", "id": box.id})
        if box.log is not None:
            box.log.close()
            box.log = None
        rec = box.record()
        if box.state_dir:
            try:
                state.write_atomic(os.path.join(box.state_dir, EXIT_RECORD),
                                   jsonfast.dumps(rec).encode(), 0o600)
            except OSError as exc:
                warn(f"writing the exit record of {box.id}: {exc}")
        # The feed first: whoever reads an attach stream's end may ask for the exit code.
        event = wire.encode({"event": "exit", **rec})
        for conn in list(self.conns.values()):
            if conn.mode == "watch":
                self._send(conn, event)
        for conn in list(box.attached):
            self._finish_conn(conn)
        box.attached.clear()
        # Its cgroup and runtime state go last: nobody waits for them.
        if not box.container:
            try:
                lifecycle.delete(state.load(self.runtime_root, box.id), force=True)
            except NotFound:
                pass
            except Exception as exc:  # the exit must be recorded even if cleanup fails
                warn(f"cleaning up container {box.id}: {exc}")

    def _forget(self, box: Box) -> None:
        self.boxes.pop(box.id, None)
        if self.by_pid.get(box.pid) is box:
            del self.by_pid[box.pid]
        if box.state_dir:
            try:
                os.unlink(os.path.join(box.state_dir, EXIT_RECORD))
            except FileNotFoundError:
                pass
