"""A container's filesystem: ContainerService's diff, root for cp and export, and
commit, kept apart.

A container's filesystem is its snapshot (the image's layers under the shared init
layer, its own writable layer on top), mounted at .../merged while it runs or while a
copy or an export reads it. Inside the container's mount namespace /proc, /dev,
volumes and binds lie over it; in palletd's, the snapshot's mount has none of them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from pallet.engine.containerparts import ServiceParts
from pallet.errors import NotSupported
from pallet.storage.changes import overlay_changes


class Filesystem(ServiceParts):
    if TYPE_CHECKING:  # more of what ContainerService brings
        _rootfs_users: dict[str, int]

    def changes(self, ref: str) -> list[dict[str, Any]]:
        """What the container changed: Kind 0 modified, 1 added, 2 deleted (docker diff)."""
        doc = self.get(ref)
        snap = self.snapshots.path(doc["Id"])
        upper = os.path.join(snap, "upper" if self.snapshots.name == "overlay" else "rootfs")
        lowers = self._root_lowers(doc["Image"])
        if self.snapshots.name != "overlay":
            raise NotSupported("changes need the overlay snapshot driver")
        return overlay_changes(upper, lowers)

    @contextmanager
    def rootfs(self, ref: str, mounts: bool = True) -> Iterator[tuple[dict[str, Any], str]]:
        """The container's root as its processes see it (mounts included while it runs),
        or its snapshot mounted for the duration. ``mounts=False``: its filesystem alone,
        without /proc, /dev, volumes or binds, running or not (what `export` writes)."""
        doc = self.get(ref)
        cid = doc["Id"]
        target = os.path.join(self.snapshots.path(cid), "merged")
        with self._lock:
            self._rootfs_users[cid] = self._rootfs_users.get(cid, 0) + 1
            st = doc["State"]
            pid = st["Pid"] if st["Running"] and mounts else 0
            if not pid and not _is_mountpoint(target):
                self.snapshots.mount(cid, self._root_lowers(doc["Image"]))
        try:
            # Running: its root as its processes see it, its mounts included. The
            # snapshot's own mount here has none of them (they are in its namespace).
            yield doc, f"/proc/{pid}/root" if pid else target
        finally:
            with self._lock:
                self._rootfs_users[cid] -= 1
                if not self._rootfs_users[cid]:
                    del self._rootfs_users[cid]
                    if not doc["State"]["Running"]:
                        self._unmount(doc)

    def commit(self, ref: str, repo_tag: str = "", comment: str = "", author: str = "",
               changes: list[str] | None = None, pause: bool = True,
               config: dict[str, Any] | None = None) -> str:
        """A new image: the container's image plus its changes as one more layer."""
        from pallet.build.changes import parse_changes
        from pallet.storage.diff import diff_upper

        doc = self.get(ref)
        if self.snapshots.name != "overlay":
            raise NotSupported("commit needs the overlay snapshot driver")
        paused = False
        if pause and doc["State"]["Running"] and not doc["State"]["Paused"]:
            self.monitor.call("pause", id=doc["Id"])
            paused = True
        try:
            upper = os.path.join(self.snapshots.path(doc["Id"]), "upper")
            cfg = dict(doc["Config"])
            cfg.pop("Hostname", None)
            if config:
                cfg.update({k: v for k, v in config.items() if v is not None})
            cfg.update(parse_changes(changes or []))
            image_id = self.images.commit(
                doc["Image"], diff_upper(upper, self._lowers(doc["Image"])), cfg,
                created_by=" ".join([doc["Path"], *doc["Args"]]), comment=comment,
                author=author, repo_tag=repo_tag, container=doc["Id"])
        finally:
            if paused:
                self.monitor.call("resume", id=doc["Id"])
        self._event(doc, "commit", comment=comment)
        return image_id


def _is_mountpoint(path: str) -> bool:
    try:
        return os.path.ismount(path)
    except OSError:
        return False
