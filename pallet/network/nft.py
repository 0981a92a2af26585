"""Applies nft scripts: the one place that changes the host's firewall (the rules come
from firewall.py). Through libnftables in-process (pallet.linux.nftables): one context
for palletd's life, ~1 ms a script where the nft binary spends ~20 ms starting. A
script is one kernel transaction: it applies whole or leaves the ruleset as it was."""

from __future__ import annotations

from pallet.errors import NotSupported, SystemFailure
from pallet.linux import nftables
from pallet.network.firewall import FAMILY, validate_table


class NftFailed(SystemFailure, RuntimeError):
    """nft refused a script or a command; the message carries nft's own words."""


def _run(text: str, what: str, *, dry_run: bool = False) -> str:
    try:
        ctx = nftables.shared()
    except FileNotFoundError as exc:
        raise NotSupported(f"nftables: {exc} is not installed (apt-get install "
                           "nftables)") from exc
    except OSError as exc:
        raise NftFailed(f"nftables: {exc}", op="nft", errno=exc.errno or 0) from exc
    try:
        return ctx.run(text, dry_run=dry_run)
    except nftables.NftError as exc:
        raise NftFailed(f"{what} failed: {exc}", op="nft") from exc


def apply(script: str) -> None:
    """Run ``script`` as one transaction (as ``nft -f -``)."""
    _run(script, "nft -f")


def check(script: str) -> None:
    """Have the kernel check ``script`` without committing it (as ``nft -c -f -``)."""
    _run(script, "nft -c -f", dry_run=True)


def _list(table: str) -> str | None:
    try:
        return _run(f"list table {FAMILY} {validate_table(table)}",
                    f"nft list table {FAMILY} {table}")
    except NftFailed as exc:
        if "No such file or directory" in str(exc):
            return None
        raise


def exists(table: str) -> bool:
    """Whether pallet's table named ``table`` is in the kernel."""
    return _list(table) is not None


def listing(table: str) -> str:
    """``nft list table`` of pallet's table: its rules as the kernel holds them, '' when
    there is no such table."""
    return _list(table) or ""
