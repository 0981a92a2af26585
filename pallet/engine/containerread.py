"""How containers are read: ContainerService's inspect, list and count, kept apart
(the shapes themselves are containerview's)."""

from __future__ import annotations

import os
from typing import Any

from pallet.engine import mounts
from pallet.engine.containerparts import ServiceParts
from pallet.engine.containerview import matches, network_settings, status_text
from pallet.errors import InvalidArgument
from pallet.monitor import logfile
from pallet.network import ports as portmap
from pallet.oci import jsonfast


class Reading(ServiceParts):
    def inspect(self, ref: str, size: bool = False) -> dict[str, Any]:
        doc = self.get(ref)
        with self._lock:
            out: dict[str, Any] = jsonfast.loads(jsonfast.dumps(doc))
        out.pop("ImageName", None)
        st = out["State"]
        st.pop("ManuallyStopped", None)
        st.pop("Removing", None)
        snap = self.snapshots.path(doc["Id"])
        out["GraphDriver"] = {"Name": self.snapshots.name, "Data": {
            "MergedDir": os.path.join(snap, "merged"), "UpperDir": os.path.join(snap, "upper"),
            "WorkDir": os.path.join(snap, "work"),
            "LowerDir": ":".join(self._root_lowers(doc["Image"])) or None}}
        out.pop("MountPoints", None)
        out["Mounts"] = [mounts.view(p) for p in sorted(
            self._mount_points(doc), key=lambda p: str(p["Destination"]))]
        out["NetworkSettings"] = network_settings(doc)
        if size:
            out["SizeRw"] = self.snapshots.usage(doc["Id"])
            out["SizeRootFs"] = out["SizeRw"] + self._image_size(doc["Image"])
        return out

    def _image_size(self, image_id: str) -> int:
        row = self.images.db.image(image_id)
        return row.size if row else 0

    def listing(self, all_: bool = False, limit: int = -1, size: bool = False,
                filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        filters = filters or {}
        for key in filters:
            if key not in ("id", "name", "label", "status", "exited", "ancestor", "before",
                           "since", "health", "is-task", "volume", "network", "publish",
                           "expose", "isolation"):
                raise InvalidArgument(f"invalid filter '{key}'")
        with self._lock:
            docs = sorted(self.docs.values(), key=lambda d: d["Created"], reverse=True)
        if not all_ and limit <= 0 and not filters.get("status") and \
                not filters.get("exited"):
            docs = [d for d in docs if d["State"]["Running"]]
        docs = [d for d in docs if matches(d, filters, self)]
        if limit > 0:
            docs = docs[:limit]
        out = []
        for d in docs:
            cfg = d["Config"]
            entry: dict[str, Any] = {
                "Id": d["Id"], "Names": [d["Name"]], "Image": d.get("ImageName") or cfg["Image"],
                "ImageID": d["Image"],
                "Command": " ".join([d["Path"], *d["Args"]]),
                "Created": int(logfile.parse_time(d["Created"])),
                "Ports": portmap.listing((d.get("NetworkSettings") or {}).get("Ports")),
                "Labels": cfg.get("Labels") or {},
                "State": d["State"]["Status"], "Status": status_text(d["State"]),
                "HostConfig": {"NetworkMode": d["HostConfig"].get("NetworkMode", "default")},
                "NetworkSettings": {"Networks": network_settings(d)["Networks"]},
                "Mounts": [mounts.view(p) for p in self._mount_points(d)],
            }
            if size:
                entry["SizeRw"] = self.snapshots.usage(d["Id"])
                entry["SizeRootFs"] = entry["SizeRw"] + self._image_size(d["Image"])
            out.append(entry)
        return out

    def count(self) -> dict[str, int]:
        """How many are running, paused and stopped (what /info reports)."""
        with self._lock:
            docs = list(self.docs.values())
        return {"running": sum(1 for d in docs if d["State"]["Status"] == "running"),
                "paused": sum(1 for d in docs if d["State"]["Paused"]),
                "stopped": sum(1 for d in docs if not d["State"]["Running"])}
