"""How images are read: ImageService's list, inspect and history, kept apart, and the
shapes Docker gives them (the config with every field, the list filters)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pallet.build.patterns import go_match as path_match
from pallet.image import reference
from pallet.image.timefmt import parse_rfc3339

if TYPE_CHECKING:
    from pallet.engine.imagedb import ImageDB, ImageRow
    from pallet.storage.layers import LayerStore


class ImageReading:
    if TYPE_CHECKING:  # what ImageService brings
        db: ImageDB
        layers: LayerStore

        def config(self, image_id: str) -> dict[str, Any]: ...
        def _row(self, name: str) -> ImageRow: ...

    def _familiar(self, names: list[str]) -> list[str]:
        return [reference.parse(n).familiar() for n in names]

    def summary(self, row: ImageRow, api_version: str) -> dict[str, Any]:
        cfg = self.config(row.id)
        out: dict[str, Any] = {
            "Containers": -1, "Created": int(_epoch(row.created)), "Id": row.id,
            "Labels": (cfg.get("config") or {}).get("Labels"),
            "ParentId": self.db.parent_of(row.id),
            "RepoDigests": self._familiar(self.db.digests_of(row.id)),
            "RepoTags": self._familiar(self.db.tags_of(row.id)),
            "SharedSize": -1, "Size": row.size,
        }
        if _older(api_version, "1.44"):
            out["VirtualSize"] = row.size
        return out

    def shared_sizes(self) -> dict[str, int]:
        """Per image, the bytes of its layers that another image has too (dockerd's
        SharedSize: what removing the image alone would not free)."""
        chains = {row.id: [layer.chain_id for layer in self.db.layers(row.id)]
                  for row in self.db.images()}
        users: dict[str, int] = {}
        for image_chains in chains.values():
            for chain in set(image_chains):
                users[chain] = users.get(chain, 0) + 1
        return {image_id: sum(self.layers.get(c).size for c in set(image_chains)
                              if users[c] > 1)
                for image_id, image_chains in chains.items()}

    def listing(self, api_version: str, filters: dict[str, list[str]],
             all_images: bool = False, shared_size: bool = False) -> list[dict[str, Any]]:
        out = []
        parents = self.db.parents()
        shared = self.shared_sizes() if shared_size else {}
        for row in self.db.images():
            tags = self.db.tags_of(row.id)
            # a build's intermediate steps show with -a only, as dockerd's
            if not tags and row.id in parents and not all_images:
                continue
            if not _keep(row, tags, filters, self, parents):
                continue
            summary = self.summary(row, api_version)
            if shared_size:
                summary["SharedSize"] = shared[row.id]
            if filters.get("reference"):
                # as moby: only the names that matched are listed
                summary["RepoTags"] = [t for t in summary["RepoTags"]
                                       if _ref_matches(t, filters["reference"])]
            out.append(summary)
        out.sort(key=lambda s: s["Created"], reverse=True)
        return out

    def inspect(self, name: str, api_version: str) -> dict[str, Any]:
        row = self._row(name)
        cfg = self.config(row.id)
        layers = self.db.layers(row.id)
        dirs = self.layers.chain_paths(row.top_chain) if row.top_chain else []
        history = cfg.get("history") or [{}]
        out: dict[str, Any] = {
            "Id": row.id,
            "RepoTags": self._familiar(self.db.tags_of(row.id)),
            "RepoDigests": self._familiar(self.db.digests_of(row.id)),
            "Parent": self.db.parent_of(row.id), "Comment": history[-1].get("comment", ""),
            "Created": cfg.get("created", row.created), "DockerVersion": "",
            "Author": cfg.get("author", ""),
            "Config": _container_config(cfg.get("config") or {}),
            "Architecture": cfg.get("architecture", ""), "Os": cfg.get("os", ""),
            "Size": row.size,
            "GraphDriver": {"Name": "overlay", "Data": {
                "LowerDir": ":".join(dirs[1:]) if len(dirs) > 1 else None,
                "UpperDir": dirs[0] if dirs else None}},
            "RootFS": {"Type": "layers", "Layers": [layer.diff_id for layer in layers]},
            "Metadata": {"LastTagTime": row.last_tag_time or "0001-01-01T00:00:00Z"},
        }
        if cfg.get("variant"):
            out["Variant"] = cfg["variant"]
        if _older(api_version, "1.44"):
            out["VirtualSize"] = row.size
            out["Container"] = ""
            out["ContainerConfig"] = _container_config({})
        out["GraphDriver"]["Data"] = {k: v for k, v in out["GraphDriver"]["Data"].items() if v}
        return out

    def history(self, name: str) -> list[dict[str, Any]]:
        row = self._row(name)
        cfg = self.config(row.id)
        layers = self.db.layers(row.id)
        sizes = [self.layers.get(layer.chain_id).size for layer in layers]
        out = []
        for h in cfg.get("history") or []:
            size = 0 if h.get("empty_layer") else (sizes.pop(0) if sizes else 0)
            out.append({"Comment": h.get("comment", ""),
                        "Created": int(_epoch(h.get("created", row.created))),
                        "CreatedBy": h.get("created_by", ""), "Id": "<missing>",
                        "Size": size, "Tags": None})
        # The steps a build made here are images of their own: dockerd names them.
        image_id, seen = row.id, set()
        while image_id and image_id not in seen and self.db.image(image_id):
            seen.add(image_id)
            n = len(self.config(image_id).get("history") or [])
            if 0 < n <= len(out):
                out[n - 1]["Id"] = image_id
                out[n - 1]["Tags"] = self._familiar(self.db.tags_of(image_id)) or None
            image_id = self.db.parent_of(image_id)
        out.reverse()
        if out:
            out[0]["Id"] = row.id
            out[0]["Tags"] = self._familiar(self.db.tags_of(row.id)) or None
        return out


def _container_config(c: dict[str, Any]) -> dict[str, Any]:
    """An image's config as Docker's inspect shows it: every field, nulls included."""
    base: dict[str, Any] = {
        "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False,
        "AttachStdout": False, "AttachStderr": False, "Tty": False, "OpenStdin": False,
        "StdinOnce": False, "Env": None, "Cmd": None, "Image": "", "Volumes": None,
        "WorkingDir": "", "Entrypoint": None, "OnBuild": None, "Labels": None,
    }
    base.update(c)
    return base


def _epoch(rfc3339: str) -> float:
    try:
        return parse_rfc3339(rfc3339)
    except ValueError:
        return 0.0


def _older(version: str, than: str) -> bool:
    a, _, b = version.partition(".")
    c, _, d = than.partition(".")
    return (int(a), int(b)) < (int(c), int(d))


def _ref_matches(familiar: str, patterns: list[str]) -> bool:
    """Docker's reference filter: a glob on name:tag, or on the name alone."""
    name = familiar.rpartition(":")[0] if ":" in familiar.rpartition("/")[2] else familiar
    return any(path_match(p, familiar) or path_match(p, name) for p in patterns)


def _keep(row: ImageRow, tags: list[str], filters: dict[str, list[str]],
          svc: ImageReading, parents: set[str]) -> bool:
    for value in filters.get("dangling", []):
        if (value == "true") != (not tags and row.id not in parents):
            return False
    patterns = filters.get("reference", [])
    if patterns and not any(_ref_matches(reference.parse(t).familiar(), patterns)
                            for t in tags):
        return False
    labels = (svc.config(row.id).get("config") or {}).get("Labels") or {}
    for spec in filters.get("label", []):
        k, eq, v = spec.partition("=")
        if k not in labels or (eq and labels[k] != v):
            return False
    return True
