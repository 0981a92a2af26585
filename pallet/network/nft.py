"""Runs nft: the one place that changes the host's firewall (the rules come from
firewall.py). Each call is one ``nft`` process and, for scripts, one kernel
transaction: a script either applies whole or leaves the ruleset as it was."""

from __future__ import annotations

import shutil
import subprocess

from pallet.errors import NotSupported, SystemFailure
from pallet.network.firewall import FAMILY, validate_table

_TIMEOUT = 60.0  # nft answers in milliseconds; a hang means a wedged netlink socket
_path: str | None = None


class NftFailed(SystemFailure, RuntimeError):
    """nft refused a script or a command; the message carries nft's own stderr."""


def _nft() -> str:
    global _path
    if _path is None:
        found = shutil.which("nft") or shutil.which("nft", path="/usr/sbin:/sbin")
        if found is None:
            raise NotSupported("nft (Debian package nftables) is not installed")
        _path = found
    return _path


def _run(args: list[str], script: str | None = None) -> subprocess.CompletedProcess[str]:
    argv = [_nft(), *args]
    try:
        return subprocess.run(argv, input=script, capture_output=True, text=True,
                              timeout=_TIMEOUT, check=False)
    except subprocess.TimeoutExpired as exc:
        raise NftFailed(f"{' '.join(argv)}: no answer in {_TIMEOUT:.0f}s", op="nft") from exc
    except OSError as exc:
        raise NftFailed(f"{' '.join(argv)}: {exc.strerror}", op="nft",
                        errno=exc.errno or 0, path=argv[0]) from exc


def _failed(what: str, proc: subprocess.CompletedProcess[str]) -> NftFailed:
    err = proc.stderr.strip() or proc.stdout.strip() or f"exit status {proc.returncode}"
    return NftFailed(f"{what} failed: {err}", op="nft")


def apply(script: str) -> None:
    """Run ``script`` as one transaction (``nft -f -``)."""
    proc = _run(["-f", "-"], script)
    if proc.returncode != 0:
        raise _failed("nft -f", proc)


def check(script: str) -> None:
    """Have the kernel check ``script`` without committing it (``nft -c -f -``)."""
    proc = _run(["-c", "-f", "-"], script)
    if proc.returncode != 0:
        raise _failed("nft -c -f", proc)


def _list(table: str) -> subprocess.CompletedProcess[str]:
    return _run(["list", "table", FAMILY, validate_table(table)])


def _absent(proc: subprocess.CompletedProcess[str]) -> bool:
    return proc.returncode != 0 and "No such file or directory" in proc.stderr


def exists(table: str) -> bool:
    """Whether pallet's table named ``table`` is in the kernel."""
    proc = _list(table)
    if _absent(proc):
        return False
    if proc.returncode != 0:
        raise _failed(f"nft list table {FAMILY} {table}", proc)
    return True


def listing(table: str) -> str:
    """``nft list table`` of pallet's table: its rules as the kernel holds them, '' when
    there is no such table."""
    proc = _list(table)
    if _absent(proc):
        return ""
    if proc.returncode != 0:
        raise _failed(f"nft list table {FAMILY} {table}", proc)
    return proc.stdout
