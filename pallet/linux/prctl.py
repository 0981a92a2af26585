"""prctl(2), personality(2), sethostname/setdomainname, close_range(2), ioprio, scheduler."""

from __future__ import annotations

from pallet.linux import ffi
from pallet.linux.libc import SYS_close_range, check, libc, syscall

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

CLOSE_RANGE_CLOEXEC = 4

_prctl = libc.function("prctl", [ffi.c_int, ffi.c_ulong, ffi.c_ulong, ffi.c_ulong, ffi.c_ulong])
_personality = libc.function("personality", [ffi.c_ulong])
_sethostname = libc.function("sethostname", [ffi.c_char_p, ffi.c_size_t])
_setdomainname = libc.function("setdomainname", [ffi.c_char_p, ffi.c_size_t])


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return check(_prctl(option, arg2, arg3, arg4, arg5), "prctl")


def set_no_new_privs() -> None:
    prctl(PR_SET_NO_NEW_PRIVS, 1)


def set_dumpable(on: bool) -> None:
    prctl(PR_SET_DUMPABLE, 1 if on else 0)


def set_keepcaps(on: bool) -> None:
    prctl(PR_SET_KEEPCAPS, 1 if on else 0)


def set_child_subreaper() -> None:
    prctl(PR_SET_CHILD_SUBREAPER, 1)


def set_pdeathsig(sig: int) -> None:
    prctl(PR_SET_PDEATHSIG, sig)


def personality(persona: int) -> None:
    check(_personality(persona), "personality")


def sethostname(name: str) -> None:
    raw = name.encode()
    check(_sethostname(raw, len(raw)), "sethostname")


def setdomainname(name: str) -> None:
    raw = name.encode()
    check(_setdomainname(raw, len(raw)), "setdomainname")


def cloexec_from(first: int) -> None:
    """Mark every descriptor >= ``first`` close-on-exec (close_range, Linux 5.11)."""
    check(syscall(SYS_close_range, first, 0xFFFFFFFF, CLOSE_RANGE_CLOEXEC), "close_range")


# ioprio_set(2)
IOPRIO_WHO_PROCESS = 1
IOPRIO_CLASS_SHIFT = 13
IOPRIO_CLASSES = {"IOPRIO_CLASS_RT": 1, "IOPRIO_CLASS_BE": 2, "IOPRIO_CLASS_IDLE": 3}
_SYS_ioprio_set = {"x86_64": 251, "aarch64": 30}


def ioprio_set(ioclass: int, priority: int) -> None:
    import os

    nr = _SYS_ioprio_set[os.uname().machine]
    value = (ioclass << IOPRIO_CLASS_SHIFT) | priority
    check(syscall(nr, IOPRIO_WHO_PROCESS, 0, value), "ioprio_set")
