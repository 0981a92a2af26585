"""The engine: the services palletd's handlers call, built once per daemon."""

from __future__ import annotations

import os
import uuid

from pallet.engine import mounts, system
from pallet.engine.builds import BuildService
from pallet.engine.config import DaemonConfig
from pallet.engine.containers import ContainerService
from pallet.engine.events import EventBus
from pallet.engine.images import ImageService
from pallet.engine.networks import NetworkService
from pallet.engine.sandbox import Sandboxes
from pallet.engine.volumes import VolumeService


class Engine:
    def __init__(self, cfg: DaemonConfig) -> None:
        self.cfg = cfg
        self.events = EventBus()
        for d in (cfg.data_root, cfg.exec_root):
            os.makedirs(d, mode=0o711, exist_ok=True)
        self.id = self._daemon_id()
        self.images = ImageService(cfg, self.events)
        self.networks = NetworkService(cfg, self.events)
        self.sandboxes = Sandboxes(cfg, self.networks)
        self.volumes = VolumeService(cfg, self.events)
        self.containers = ContainerService(cfg, self.events, self.images, self.sandboxes,
                                           self.volumes)
        self.builds = BuildService(self.images, self.containers)
        # The running containers hold their volumes again (those that died meanwhile let
        # go when the monitor's view is folded in).
        self.volumes.restore({d["Id"]: mounts.volume_names(d.get("MountPoints") or [])
                              for d in self.containers.docs.values()
                              if d["State"]["Running"]})
        docs = self.containers.docs
        self.networks.container_docs = lambda: list(docs.values())

    def _daemon_id(self) -> str:
        """A stable id for /info, kept in the data root (as dockerd's engine-id)."""
        path = self.cfg.path("engine-id")
        try:
            with open(path) as f:
                return f.read().strip()
        except FileNotFoundError:
            ident = str(uuid.uuid4())
            tmp = f"{path}.tmp"
            with open(tmp, "w") as f:
                f.write(ident)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, path)
            return ident

    def info(self) -> dict[str, object]:
        body = system.info_body(self.cfg, images=self.images.count(),
                                containers=self.containers.count(), daemon_id=self.id)
        body["NEventsListener"] = self.events.listeners
        return body

    def disk_usage(self) -> dict[str, object]:
        """`system df`: a container's size is its writable layer plus its logs (which
        pallet rotates, and counts)."""
        from pallet.monitor import logfile

        images = self.images.listing("1.44", {}, shared_size=True)
        containers = self.containers.listing(all_=True, size=True)
        for img in images:
            img["Containers"] = sum(1 for c in containers if c["ImageID"] == img["Id"])
        for c in containers:
            doc = self.containers.docs.get(c["Id"])
            if doc is not None and doc.get("LogPath"):
                c["SizeRw"] = int(c.get("SizeRw") or 0) + logfile.size(doc["LogPath"])
        return {"LayersSize": self.images.layers_size(), "Images": images,
                "Containers": containers, "Volumes": self.volumes.disk_usage(),
                "BuildCache": self.builds.cache_records()}
