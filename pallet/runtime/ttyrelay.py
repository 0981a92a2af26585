"""The runtime's own end of a container terminal, when no --console-socket takes it.

runc relays a pty itself when it runs in the foreground with ``terminal: true`` and no
console socket; so does pallet-runtime (``run`` and ``exec``):

    pallet-runtime                                the container process
    --------------                                ---------------------
    socketpair(); one end goes to the child  ---> opens a pty from the container's
                                                  /dev/ptmx, sends the master over it,
    recv_master()  <----------------------------- takes the slave as its stdio, execs
    relay(): our stdin (raw, if a terminal) -> master -> the process
             master -> our stdout; SIGWINCH -> the master's window size
             until the process exits and the master is drained; its exit code

Cold path only: socket, signal, termios and select are imported inside the functions.
"""

from __future__ import annotations

import errno
import os

from pallet.errors import SystemFailure

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

# Signals a foreground runtime passes on to the process it waits for (runc's set).
FORWARDED = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")
_CHUNK = 65536
# After the process exits, output may still be on its way through the pty's buffers:
# read until the master reports the slave gone (EIO) or stays quiet this long.
_DRAIN_QUIET_MS = 100


def socketpair() -> tuple[int, int]:
    """A connected AF_UNIX pair (ours, theirs), both close-on-exec."""
    import socket

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    return ours.detach(), theirs.detach()


def recv_master(sock_fd: int) -> int:
    """Receive the pty master sent with ``console.send_fd``; closes ``sock_fd``."""
    import socket

    s = socket.socket(fileno=sock_fd)
    try:
        _msg, fds, _flags, _addr = socket.recv_fds(s, 4096, 1)
    except OSError as exc:
        raise SystemFailure(f"receiving the terminal from the container: {exc.strerror}",
                            op="console", errno=exc.errno or 0) from exc
    finally:
        s.close()
    if not fds:
        raise SystemFailure("the container process exited before sending its terminal",
                            op="console")
    os.set_inheritable(fds[0], False)
    return fds[0]


def forward_signals(pid: int, on_winch: Callable[[], None] | None = None) -> dict[int, object]:
    """Pass FORWARDED signals (and SIGWINCH, unless ``on_winch`` handles it) to ``pid``.

    Returns the previous handlers, for ``restore_signals``.
    """
    import signal

    def forward(sig: int, _frame: object) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    def winch(_sig: int, _frame: object) -> None:
        assert on_winch is not None
        on_winch()

    old: dict[int, object] = {}
    for name in FORWARDED:
        sig = getattr(signal, name)
        old[sig] = signal.signal(sig, forward)
    old[signal.SIGWINCH] = signal.signal(signal.SIGWINCH, forward if on_winch is None else winch)
    return old


def restore_signals(old: dict[int, object]) -> None:
    import signal

    for sig, handler in old.items():
        signal.signal(sig, handler)  # type: ignore[arg-type]


def relay(master: int, pid: int, stdin: int = 0, stdout: int = 1) -> int:
    """Copy between our stdio and ``master`` until ``pid`` (our child) exits; its exit code.

    Our stdin is put in raw mode while the relay runs if it is a terminal (so ^C, ^Z and
    line editing reach the container's line discipline) and restored afterwards.
    Closes ``master``.
    """
    import termios

    from pallet.runtime.lifecycle import wait_exit

    stdin_tty = os.isatty(stdin)
    saved = termios.tcgetattr(stdin) if stdin_tty else None

    def resize() -> None:
        if stdin_tty:
            try:
                termios.tcsetwinsize(master, termios.tcgetwinsize(stdin))
            except (OSError, termios.error):
                pass  # the pty is gone: the process is exiting

    old = forward_signals(pid, on_winch=resize)
    try:
        resize()
        if saved is not None:
            import tty

            tty.setraw(stdin, termios.TCSANOW)
        _copy(master, pid, stdin, stdout)
    finally:
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        restore_signals(old)
        os.close(master)
    return wait_exit(pid)


def _copy(master: int, pid: int, stdin: int, stdout: int) -> None:
    import select

    os.set_blocking(master, False)
    pidfd = os.pidfd_open(pid)
    poller = select.poll()
    master_open = stdin_open = True
    pending = b""  # read from stdin, not yet taken by the pty
    exited = False

    def watch_master() -> None:
        if master_open:
            poller.modify(master, select.POLLIN | (select.POLLOUT if pending else 0))

    try:
        poller.register(master, select.POLLIN)
        poller.register(pidfd, select.POLLIN)
        try:
            poller.register(stdin, select.POLLIN)
        except (OSError, ValueError):
            stdin_open = False
        while True:
            if exited:
                # The process is gone: drain what it left in the pty, ignore stdin.
                events = poller.poll(_DRAIN_QUIET_MS)
                if not master_open or not any(fd == master for fd, _ in events):
                    return
            else:
                events = poller.poll()
            for fd, ev in events:
                if fd == pidfd:
                    exited = True
                    poller.unregister(pidfd)
                    pending = b""
                    if stdin_open:
                        poller.unregister(stdin)
                        stdin_open = False
                    watch_master()
                elif fd == master and master_open:
                    if ev & select.POLLOUT and pending:
                        pending = pending[_write_some(master, pending):]
                    if ev & (select.POLLIN | select.POLLHUP | select.POLLERR):
                        data = _read(master)
                        if data is None:  # EIO: every slave is closed
                            master_open = False
                            poller.unregister(master)
                            pending = b""
                            if exited:
                                return
                            continue
                        if data:
                            _write_all(stdout, data)
                    watch_master()
                elif fd == stdin and stdin_open:
                    data = b""
                    if ev & (select.POLLIN | select.POLLHUP):
                        try:
                            data = os.read(stdin, _CHUNK)
                        except OSError:
                            data = b""
                    if not data:  # EOF: stop reading; a pty has no half-close
                        poller.unregister(stdin)
                        stdin_open = False
                        continue
                    if master_open:
                        pending += data
                        watch_master()
    finally:
        os.close(pidfd)


def _read(master: int) -> bytes | None:
    """Some output from the master: b"" if none yet, None once the slave side is gone."""
    try:
        return os.read(master, _CHUNK)
    except BlockingIOError:
        return b""
    except OSError as exc:
        if exc.errno == errno.EIO:
            return None
        raise


def _write_some(fd: int, data: bytes) -> int:
    try:
        return os.write(fd, data)
    except BlockingIOError:
        return 0
    except OSError as exc:
        if exc.errno == errno.EIO:
            return len(data)  # nobody reads the pty any more: drop the input
        raise


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            import select

            select.select([], [fd], [])
            continue
        except BrokenPipeError:
            return  # whoever read our stdout went away; keep relaying to the end
        view = view[n:]
