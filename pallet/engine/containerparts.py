"""What ContainerService's parts kept in other modules (containerexec, containerexits)
use of the whole: its records, its lock, the monitor and a few of its methods, declared
for the type checker. Nothing here exists at run time but the empty class."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio
    import threading

    from pallet.engine.monitorclient import MonitorClient


class ServiceParts:
    if TYPE_CHECKING:  # what ContainerService brings
        monitor: MonitorClient
        run_root: str
        docs: dict[str, dict[str, Any]]
        execs: dict[str, dict[str, Any]]
        _lock: threading.RLock
        _exec_exits: dict[str, list[asyncio.Future[None]]]

        def get(self, ref: str) -> dict[str, Any]: ...
        def _save(self, doc: dict[str, Any]) -> None: ...
        def _event(self, doc: dict[str, Any], action: str, **extra: str) -> None: ...
        def start(self, ref: str, policy: bool = False) -> bool: ...
