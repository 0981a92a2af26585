"""What ContainerService's parts kept in other modules (containercontrol, containerexec,
containerexits, containerfs, containerread) use of the whole: its records, its lock,
the monitor, the snapshots and a few of its methods, declared for the type checker.
Nothing here exists at run time but the empty class."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio
    import threading

    from pallet.engine.images import ImageService
    from pallet.engine.monitorclient import MonitorClient
    from pallet.storage.snapshot import Snapshotter


class ServiceParts:
    if TYPE_CHECKING:  # what ContainerService brings
        monitor: MonitorClient
        images: ImageService
        snapshots: Snapshotter
        run_root: str
        docs: dict[str, dict[str, Any]]
        execs: dict[str, dict[str, Any]]
        _lock: threading.RLock
        _exec_exits: dict[str, list[asyncio.Future[None]]]

        def get(self, ref: str) -> dict[str, Any]: ...
        def _save(self, doc: dict[str, Any]) -> None: ...
        def _event(self, doc: dict[str, Any], action: str, **extra: str) -> None: ...
        def start(self, ref: str, policy: bool = False) -> bool: ...
        def _lowers(self, image_id: str) -> list[str]: ...
        def _root_lowers(self, image_id: str) -> list[str]: ...
        def _mount_points(self, doc: dict[str, Any]) -> list[dict[str, Any]]: ...
        def _unmount(self, doc: dict[str, Any]) -> None: ...
