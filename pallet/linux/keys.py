"""keyctl(2): the session keyring a container starts with."""

from __future__ import annotations

import errno
import os

from pallet.linux.libc import check, syscall

_SYS_keyctl = {"x86_64": 250, "aarch64": 219}[os.uname().machine]
KEYCTL_JOIN_SESSION_KEYRING = 1


def join_session_keyring(name: str) -> int:
    """Join (creating it if need be) the session keyring ``name``; its serial, or 0 when
    the kernel has no keyrings (ENOSYS)."""
    try:
        return check(syscall(_SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.encode()),
                     "keyctl(JOIN_SESSION_KEYRING)", name)
    except OSError as exc:
        if exc.errno == errno.ENOSYS:
            return 0
        raise
