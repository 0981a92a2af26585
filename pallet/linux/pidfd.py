"""pidfd_send_signal(2): signal a process by descriptor, immune to pid reuse."""

from __future__ import annotations

from pallet.linux.libc import SYS_pidfd_send_signal, check, syscall


def send_signal(pidfd: int, sig: int) -> None:
    check(syscall(SYS_pidfd_send_signal, pidfd, sig, None, 0), "pidfd_send_signal")
