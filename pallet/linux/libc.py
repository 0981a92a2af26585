"""libc, loaded once, and the checked-call helper every other module uses."""

from __future__ import annotations

import os

from pallet.linux import ffi

# Loaded by soname: find_library would spawn ldconfig and cost tens of milliseconds.
libc = ffi.Library("libc.so.6")

# The raw function, for calls whose arguments are structures (byref).
syscall_fn = libc.function("syscall", returns_long=True)


def check(ret: int, op: str, path: str | None = None, path2: str | None = None) -> int:
    """Return ``ret`` unless it is -1, in which case raise OSError(errno) naming ``op``."""
    if ret == -1:
        err = ffi.get_errno()
        raise OSError(err, f"{op}: {os.strerror(err)}", path, None, path2)
    return ret


def syscall(nr: int, *args: int | bytes | None) -> int:
    """A raw system call; arguments are ints, byte strings or None (NULL)."""
    return int(syscall_fn(ffi.c_long(nr), *(_arg(a) for a in args)))


def _arg(a: int | bytes | None) -> ffi.c_long | ffi.c_char_p | None:
    if a is None or isinstance(a, bytes):
        return ffi.c_char_p(a) if a is not None else None
    return ffi.c_long(a)


# x86_64 and aarch64 syscall numbers for calls glibc 2.36 does not wrap.
_MACHINE = os.uname().machine
if _MACHINE == "x86_64":
    SYS_pivot_root = 155
    SYS_clone = 56
    SYS_setns = 308
    SYS_pidfd_send_signal = 424
    SYS_pidfd_open = 434
    SYS_open_tree = 428
    SYS_move_mount = 429
    SYS_fsopen = 430
    SYS_fsconfig = 431
    SYS_fsmount = 432
    SYS_close_range = 436
    SYS_openat2 = 437
    SYS_mount_setattr = 442
    SYS_capget = 125
    SYS_capset = 126
elif _MACHINE == "aarch64":
    SYS_pivot_root = 41
    SYS_clone = 220
    SYS_setns = 268
    SYS_pidfd_send_signal = 424
    SYS_pidfd_open = 434
    SYS_open_tree = 428
    SYS_move_mount = 429
    SYS_fsopen = 430
    SYS_fsconfig = 431
    SYS_fsmount = 432
    SYS_close_range = 436
    SYS_openat2 = 437
    SYS_mount_setattr = 442
    SYS_capget = 90
    SYS_capset = 91
else:  # pragma: no cover - only the two architectures are built for
    raise ImportError(f"pallet.linux: unsupported architecture {_MACHINE}")
