"""Terminals: a pty made inside the container, its master sent over the console socket."""

from __future__ import annotations

import os

from pallet.errors import InvalidArgument
from pallet.linux import mount as m

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pallet.oci.spec import Process


def preload() -> None:
    """Import what a pty needs while the host's modules are still reachable."""
    import array  # noqa: F401
    import fcntl  # noqa: F401
    import socket  # noqa: F401
    import termios  # noqa: F401


def connect(path: str) -> int:
    """Connect to a --console-socket; returns a close-on-exec descriptor."""
    import socket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError as exc:
        s.close()
        raise InvalidArgument(f"console socket {path}: {exc.strerror}") from exc
    return s.detach()


def send_fd(sock_fd: int, fd: int, name: str) -> None:
    """Send ``fd`` with ``name`` as the payload, as runc's utils.SendFile does."""
    import array
    import socket

    s = socket.socket(fileno=sock_fd)
    try:
        s.sendmsg([name.encode()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                     array.array("i", [fd]).tobytes())])
    finally:
        s.detach()


def setup_in_container(console_fd: int, proc: Process, bind_console: bool = True) -> None:
    """A pty from the container's devpts becomes our stdio; its master goes out over
    ``console_fd``. init also bind-mounts it on /dev/console (``bind_console``); an exec'd
    process must leave the container's console alone."""
    import fcntl
    import termios

    master, slave = os.openpty()  # /dev/ptmx of the container: we are in its mount ns
    name = os.ttyname(slave)
    if proc.console_size:
        termios.tcsetwinsize(slave, proc.console_size)
    os.fchown(slave, proc.user.uid, -1)  # the user may reopen its terminal (runc does too)
    if bind_console and os.path.isdir("/dev"):
        if not os.path.exists("/dev/console"):
            os.close(os.open("/dev/console", os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
        m.mount(name, "/dev/console", None, m.MS_BIND)
    if console_fd >= 0:
        send_fd(console_fd, master, name)
        os.close(console_fd)
    os.close(master)
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)
