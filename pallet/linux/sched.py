"""Namespaces: clone(2) with namespace flags, unshare(2), setns(2)."""

from __future__ import annotations

from pallet.linux import ffi
from pallet.linux.libc import SYS_clone, check, libc, syscall

CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
SIGCHLD = 17

_unshare = libc.function("unshare", [ffi.c_int])
_setns = libc.function("setns", [ffi.c_int, ffi.c_int])


def unshare(flags: int) -> None:
    check(_unshare(flags), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    check(_setns(fd, nstype), "setns")


def clone_fork(flags: int) -> int:
    """fork(2) that creates the namespaces in ``flags`` at the same time.

    A raw clone with a NULL stack behaves as fork: the child resumes here with 0. It
    lets one fork make pid 1 of a new pid namespace owned by a new user namespace,
    which unshare cannot do for the calling process. Python's at-fork hooks do not
    run, so only a single-threaded caller may use it.
    """
    return check(syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0), "clone")
