"""The new mount API: fsopen(2), fsconfig(2), fsmount(2), move_mount(2).

A filesystem context is configured one parameter per call, so no option string has to
fit in the single page mount(2) copies: overlayfs takes one ``lowerdir+`` per layer.

The kernel explains a refused parameter in the context's log (read(2) on the fd gives
one message per call: ``e`` error, ``w`` warning, ``i`` info). The errors here carry
those ``e`` lines, so "Invalid argument" becomes "overlay: Unknown parameter 'lowerdir+'".
"""

from __future__ import annotations

import errno
import os
from typing import NoReturn

from pallet.linux import ffi
from pallet.linux.libc import SYS_fsconfig, SYS_fsmount, SYS_fsopen, syscall
from pallet.linux.mount import move_mount

__all__ = [
    "FSCONFIG_CMD_CREATE", "FSCONFIG_SET_FD", "FSCONFIG_SET_FLAG", "FSCONFIG_SET_PATH",
    "FSCONFIG_SET_STRING", "FSMOUNT_CLOEXEC", "FSOPEN_CLOEXEC", "STRING_MAX",
    "fsconfig_create", "fsconfig_set_fd", "fsconfig_set_flag", "fsconfig_set_path",
    "fsconfig_set_string", "fsmount", "fsopen", "kernel_log", "move_mount",
]

FSOPEN_CLOEXEC = 0x1
FSMOUNT_CLOEXEC = 0x1

FSCONFIG_SET_FLAG = 0
FSCONFIG_SET_STRING = 1
FSCONFIG_SET_BINARY = 2
FSCONFIG_SET_PATH = 3
FSCONFIG_SET_PATH_EMPTY = 4
FSCONFIG_SET_FD = 5
FSCONFIG_CMD_CREATE = 6
FSCONFIG_CMD_RECONFIGURE = 7
FSCONFIG_CMD_CREATE_EXCL = 8

AT_FDCWD = -100

# fsconfig copies a FSCONFIG_SET_STRING value with strndup_user(value, 256): longer
# values (a deep layer path) fail with EINVAL before the filesystem sees them.
STRING_MAX = 255


def kernel_log(fd: int) -> list[str]:
    """Drain the messages the kernel logged on filesystem context ``fd``."""
    messages: list[str] = []
    while True:
        try:
            raw = os.read(fd, 4096)
        except OSError as exc:
            if exc.errno != errno.ENODATA:  # ENODATA: the log is empty
                raise
            return messages
        messages.append(raw.decode(errors="replace").rstrip("\n"))


def _fail(fd: int, op: str, path: str | None = None) -> NoReturn:
    err = ffi.get_errno()  # before anything else can clobber it
    errors = [m[2:] for m in kernel_log(fd) if m.startswith("e ")]
    detail = f": {'; '.join(errors)}" if errors else ""
    raise OSError(err, f"{op}: {os.strerror(err)}{detail}", path)


def fsopen(fstype: str, flags: int = FSOPEN_CLOEXEC) -> int:
    """A new filesystem context for ``fstype``; the caller closes the fd."""
    ret = syscall(SYS_fsopen, fstype.encode(), flags)
    if ret == -1:
        err = ffi.get_errno()
        raise OSError(err, f"fsopen {fstype}: {os.strerror(err)}")
    return ret


def _fsconfig(fd: int, cmd: int, key: bytes | None, value: bytes | None, aux: int,
              op: str, path: str | None = None) -> None:
    if syscall(SYS_fsconfig, fd, cmd, key, value, aux) == -1:
        _fail(fd, op, path)


def fsconfig_set_string(fd: int, key: str, value: str) -> None:
    """Set string parameter ``key`` (at most STRING_MAX bytes of value)."""
    _fsconfig(fd, FSCONFIG_SET_STRING, key.encode(), value.encode(), 0,
              f"fsconfig {key}", value)


def fsconfig_set_flag(fd: int, key: str) -> None:
    """Set flag parameter ``key`` (a parameter that takes no value, e.g. "ro")."""
    _fsconfig(fd, FSCONFIG_SET_FLAG, key.encode(), None, 0, f"fsconfig {key}")


def fsconfig_set_path(fd: int, key: str, path: str, dirfd: int = AT_FDCWD) -> None:
    """Set path parameter ``key``, resolved relative to ``dirfd``."""
    _fsconfig(fd, FSCONFIG_SET_PATH, key.encode(), path.encode(), dirfd,
              f"fsconfig {key}", path)


def fsconfig_set_fd(fd: int, key: str, value_fd: int) -> None:
    """Set parameter ``key`` to the open file ``value_fd``."""
    _fsconfig(fd, FSCONFIG_SET_FD, key.encode(), None, value_fd, f"fsconfig {key}")


def fsconfig_create(fd: int) -> None:
    """Create the superblock from the parameters set so far."""
    _fsconfig(fd, FSCONFIG_CMD_CREATE, None, None, 0, "fsconfig create")


def fsmount(fd: int, flags: int = FSMOUNT_CLOEXEC, attr_flags: int = 0) -> int:
    """A detached mount of the created superblock; attach it with move_mount()."""
    ret = syscall(SYS_fsmount, fd, flags, attr_flags)
    if ret == -1:
        _fail(fd, "fsmount")
    return ret
