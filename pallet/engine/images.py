"""The image service: import, tag, list, inspect, history, remove, prune (list,
inspect and history are its part in imageread.py).

Blobs in the content store, unpacked layers in the layer store, names and structure in
the image database. A change is visible only once it is complete: blobs and layers are
written first (unreferenced ones are harmless and pruned), the database row last.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, BinaryIO, cast

from pallet.build.changes import parse_changes
from pallet.engine.config import DaemonConfig
from pallet.engine.events import EventBus, make_event
from pallet.engine.imagedb import ImageDB, ImageRow, LayerRow
from pallet.engine.imageread import ImageReading
from pallet.errors import Conflict, InvalidArgument, NotFound
from pallet.image import reference
from pallet.image.digest import Digest
from pallet.image.manifest import host_platform
from pallet.image.store import ContentStore
from pallet.image.timefmt import now_rfc3339
from pallet.storage import layertar, magic
from pallet.storage.chunks import ChunkReader
from pallet.storage.layers import Layer, LayerStore

OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

class ImageService(ImageReading):
    def __init__(self, cfg: DaemonConfig, events: EventBus) -> None:
        self.cfg = cfg
        self.events = events
        self.store = ContentStore(cfg.data_root)
        self.layers = LayerStore(cfg.data_root)
        self.db = ImageDB(cfg.path("images.db"))
        self.tmp = cfg.path("tmp")
        os.makedirs(self.tmp, mode=0o700, exist_ok=True)
        self.layers.collect()
        # Garbage collection waits while a pull, load or import holds a lease: those write
        # blobs and layers first and name them in the database last.
        self._gc_lock = threading.Lock()
        self._leases = 0
        # (container id, running) of the containers made from an image; the container
        # service installs its own. An image in use keeps its layers.
        self.in_use: Callable[[str], list[tuple[str, bool]]] = lambda image_id: []

    @contextmanager
    def lease(self) -> Iterator[None]:
        """Keep collection away from blobs and layers not registered yet."""
        with self._gc_lock:
            self._leases += 1
        try:
            yield
        finally:
            with self._gc_lock:
                self._leases -= 1

    def collect(self) -> int:
        """Remove layers and blobs no image references; returns the layer bytes freed.
        Skipped while a lease is held (the next rmi or prune collects instead)."""
        with self._gc_lock:
            if self._leases:
                return 0
            used = self.db.chains_in_use()
            freed = 0
            for layer in list(self.layers.all()):
                if layer.chain_id not in used:
                    self.layers.remove(layer.chain_id)
                    freed += layer.size
            self.store.prune({Digest.parse(d) for d in self.db.blobs_in_use()})
            return freed

    # --- names -------------------------------------------------------------------------

    def resolve(self, name: str) -> str:
        """An image id from a name[:tag], name@digest, full id or unique id prefix."""
        raw = name.removeprefix("sha256:")
        if 0 < len(raw) <= 64 and all(c in "0123456789abcdef" for c in raw):
            ids = self.db.ids_with_prefix("sha256:" + raw)
            if len(ids) == 1:
                return ids[0]
        try:
            ref = reference.parse(name)
        except InvalidArgument:
            raise NotFound(f"No such image: {name}", obj=name) from None
        target = (self.db.digest_target(f"{ref.name}@{ref.digest}") if ref.digest
                  else self.db.tag_target(str(ref)))
        if target is None:
            raise NotFound(f"No such image: {ref.familiar()}", obj=name)
        return target

    def _row(self, name: str) -> ImageRow:
        row = self.db.image(self.resolve(name))
        if row is None:
            raise NotFound(f"No such image: {name}", obj=name)
        return row

    def tag(self, source: str, repo: str, tag: str = "") -> None:
        image_id = self.resolve(source)
        ref = reference.parse_repository_and_tag(repo, tag)
        if ref.digest is not None:
            raise InvalidArgument("refusing to create a tag with a digest reference")
        ref = ref.with_tag(ref.tag_or_latest())
        self.db.tag(str(ref), image_id, now_rfc3339())
        self.events.publish(make_event("image", "tag", image_id, {"name": ref.familiar()}))

    # --- import --------------------------------------------------------------------------

    def import_tar(self, stream: BinaryIO, repo_tag: str = "", changes: list[str] | None = None,
                   message: str = "", platform: str = "") -> str:
        """``docker import``: a rootfs tarball (plain, gzip or zstd) becomes a one-layer image."""
        with self.lease():
            return self._import_tar(stream, repo_tag, changes, message, platform)

    def _import_tar(self, stream: BinaryIO, repo_tag: str, changes: list[str] | None,
                    message: str, platform: str) -> str:
        ref = reference.parse(repo_tag) if repo_tag else None
        overrides = parse_changes(changes or [])
        with tempfile.TemporaryFile(dir=self.tmp) as spool:
            shutil.copyfileobj(stream, spool, 1 << 20)
            spool.seek(0)
            blob = self._keep_blob(spool)
            spool.seek(0)
            layer = self.layers.create("", lambda d: _apply(spool, d))
        plat = host_platform()
        created = now_rfc3339()
        cfg: dict[str, Any] = {
            "architecture": plat.architecture, "os": plat.os,
            "config": overrides, "created": created,
            "history": [{"created": created, "comment": message or "Imported from -"}],
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
        }
        if plat.variant:
            cfg["variant"] = plat.variant
        if platform:
            from pallet.image.manifest import platform_from_string

            want = platform_from_string(platform)
            cfg["os"], cfg["architecture"] = want.os, want.architecture
        image_id = self._commit(json.dumps(cfg, separators=(",", ":")).encode(),
                                [(layer.chain_id, layer.diff_id, blob)])
        self.events.publish(make_event("image", "import", image_id, {"name": image_id}))
        if ref is not None:
            self.tag(image_id, ref.name, ref.tag_or_latest())
        return image_id

    def commit(self, parent: str, layer: Iterator[bytes], config: dict[str, Any], *,
               created_by: str = "", comment: str = "", author: str = "",
               repo_tag: str = "", container: str = "") -> str:
        """``docker commit``: image ``parent`` plus the uncompressed layer tar ``layer``,
        with ``config`` as its container config."""
        ref = reference.parse(repo_tag) if repo_tag else None
        if self.db.image(parent) is None:
            raise NotFound(f"No such image: {parent}", obj=parent)
        entry: dict[str, Any] = {"created_by": created_by}
        if comment:
            entry["comment"] = comment
        if author:
            entry["author"] = author
        image_id = self._stack(parent, layer, config, entry, now_rfc3339(), author=author,
                               container=container)
        if ref is not None:
            self.tag(image_id, ref.name, ref.tag_or_latest())
        return image_id

    def add_step(self, parent: str, layer: Iterator[bytes] | LayerRow | None,
                 config: dict[str, Any], history: dict[str, Any], created: str,
                 cache_key: str = "", author: str = "") -> str:
        """A build step's image: ``parent`` ("" for scratch) plus ``layer`` (None: no
        layer, an ``empty_layer`` history entry; a LayerRow: one stored already) with
        ``config`` as its container config. Recorded with its parent and the step's
        cache key, which later builds look up."""
        image_id = self._stack(parent, layer, config, history, created, author=author)
        if parent or cache_key:
            self.db.set_parent(image_id, parent, cache_key)
        return image_id

    def _stack(self, parent: str, layer: Iterator[bytes] | LayerRow | None,
               config: dict[str, Any], history: dict[str, Any], created: str, *,
               author: str = "", container: str = "") -> str:
        """A new image: ``parent``'s layers and history, one more entry (and ``layer``,
        stored here unless it is a LayerRow stored already), ``config``."""
        with self.lease():
            base = self.config(parent) if parent else {}
            rows = self.db.layers(parent) if parent else []
            top = rows[-1].chain_id if rows else ""
            layers = [(r.chain_id, r.diff_id, (r.blob, r.media_type, r.blob_size))
                      for r in rows]
            entry = {"created": created, **history}
            if isinstance(layer, LayerRow):
                layers.append((layer.chain_id, layer.diff_id,
                               (layer.blob, layer.media_type, layer.blob_size)))
            elif layer is not None:
                new, blob = self._store_layer(top, layer)
                layers.append((new.chain_id, new.diff_id, blob))
            else:
                entry["empty_layer"] = True
            plat = host_platform()
            cfg: dict[str, Any] = {
                "architecture": base.get("architecture", plat.architecture),
                "config": config, "created": created,
                "history": [*(base.get("history") or []), entry],
                "os": base.get("os", plat.os),
                "rootfs": {"type": "layers", "diff_ids": [d for _, d, _ in layers]},
            }
            if base.get("variant"):
                cfg["variant"] = base["variant"]
            if author:
                cfg["author"] = author
            if container:
                cfg["container"] = container
            return self._commit(json.dumps(cfg, separators=(",", ":")).encode(), layers)

    def cached_step(self, parent: str, cache_key: str) -> str | None:
        """The image an earlier build made for this step, if it is still here."""
        image_id = self.db.cached(parent, cache_key)
        return image_id if image_id and self.db.image(image_id) else None

    def bootstrap(self, name: str, tag: str = "latest") -> str:
        """``pallet image bootstrap busybox|debian[:suite]``: a base image made here."""
        from pallet.engine import bootstrap

        work, changes = bootstrap.build(name, tag, self.tmp)
        try:
            stream = ChunkReader.over(bootstrap.tar_directory(os.path.join(work.name, "rootfs")))
            return self.import_tar(stream, f"{name}:{tag}", changes,  # type: ignore[arg-type]
                                   f"pallet image bootstrap {name}:{tag}")
        finally:
            work.cleanup()

    def _store_layer(self, parent_chain: str, layer: Iterator[bytes]
                     ) -> tuple[Layer, tuple[str, str, int]]:
        """An uncompressed layer tar made here: kept as a blob and unpacked on top of
        ``parent_chain``."""
        with tempfile.TemporaryFile(dir=self.tmp) as spool:
            for chunk in layer:
                spool.write(chunk)
            spool.seek(0)
            blob = self._keep_blob(spool)
            spool.seek(0)
            return self.layers.create(parent_chain, lambda d: _apply(spool, d)), blob

    def _keep_blob(self, spool: BinaryIO) -> tuple[str, str, int]:
        """Keep the layer as it came (for push and save): (digest, media type, size)."""
        head = spool.read(4)
        spool.seek(0)
        media = DOCKER_LAYER_GZIP if head.startswith(magic.GZIP) else (
            "application/vnd.oci.image.layer.v1.tar+zstd" if head.startswith(magic.ZSTD)
            else OCI_LAYER)
        from pallet.image.digest import Hasher

        h = Hasher()
        for chunk in iter(lambda: spool.read(1 << 20), b""):
            h.update(chunk)
        digest = h.digest()
        spool.seek(0)
        with self.store.ingest(digest) as ing:
            for chunk in iter(lambda: spool.read(1 << 20), b""):
                ing.write(chunk)
            ing.commit()
        return str(digest), media, h.size

    # --- the building blocks pull, load and build use ----------------------------------

    def unpack(self, parent_chain: str, blob: Digest, diff_id: str | None = None,
               progress: Callable[[int], None] | None = None) -> Layer:
        """The layer for ``blob`` (a layer tar in the content store, any compression) on
        top of ``parent_chain``: unpacked once, reused when it exists already.
        ``progress`` hears how many bytes of the blob were read so far."""
        if diff_id:
            from pallet.storage.layers import chain_id

            existing = chain_id(parent_chain, diff_id)
            if self.layers.exists(existing):
                return self.layers.get(existing)
        with self.store.open(blob) as f:
            return self.unpack_from(parent_chain, f if progress is None else cast(
                BinaryIO, _Counted(f, progress)), diff_id)

    def unpack_from(self, parent_chain: str, stream: BinaryIO,
                    diff_id: str | None = None) -> Layer:
        """The layer a (compressed) layer tar ``stream`` holds, on top of ``parent_chain``;
        a ``diff_id`` given must match what the stream holds."""
        return self.layers.create(parent_chain, lambda d: _apply(stream, d), diff_id)

    def register(self, config: bytes, layers: list[tuple[str, str, tuple[str, str, int]]],
                 names: Sequence[str] = (), repo_digests: Sequence[str] = ()) -> str:
        """Record an image whose config and layers are stored: (chain id, diff id,
        (blob digest, media type, size)) per layer, bottom first. Then tag it."""
        image_id = self._commit(config, layers)
        for name in repo_digests:
            self.db.add_repo_digest(name, image_id)
        for name in names:
            ref = reference.parse(name)
            self.tag(image_id, ref.name, ref.tag_or_latest())
        return image_id

    def _commit(self, config: bytes, layers: list[tuple[str, str, tuple[str, str, int]]]) -> str:
        """Store the config and record the image (last, so it appears complete)."""
        digest = self.store.write_bytes(config)
        image_id = str(digest)
        size = sum(self.layers.get(chain).size for chain, _, _ in layers)
        created = str(json.loads(config).get("created", now_rfc3339()))
        rows = [LayerRow(chain, diff, blob[0], blob[1], blob[2]) for chain, diff, blob in layers]
        self.db.add_image(ImageRow(image_id, created, size, layers[-1][0] if layers else "", ""),
                          rows)
        return image_id

    # --- reading -------------------------------------------------------------------------

    def config(self, image_id: str) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.store.read(Digest.parse(image_id)))
        return doc

    # --- removing ------------------------------------------------------------------------

    def _by_reference(self, name: str) -> tuple[str, str] | None:
        """(stored name, image id) when ``name`` is a tag or digest reference that exists."""
        try:
            ref = reference.parse(name)
        except InvalidArgument:
            return None
        if ref.digest is not None:
            full = f"{ref.name}@{ref.digest}"
            target = self.db.digest_target(full)
        else:
            full = str(ref)
            target = self.db.tag_target(full)
        return (full, target) if target else None

    def delete(self, name: str, force: bool = False) -> list[dict[str, str]]:
        """``docker rmi``: untag a name and delete the image once nothing names it; by id,
        delete (an image with several names only when forced)."""
        report: list[dict[str, str]] = []
        named = self._by_reference(name)
        if named is not None:
            full, image_id = named
            users = self.in_use(image_id)
            last = len(self.db.tags_of(image_id)) + len(self.db.digests_of(image_id)) <= 1
            if users and last and not force:
                raise Conflict(f'conflict: unable to remove repository reference "{name}" '
                               f"(must force) - container {users[0][0][:12]} is using its "
                               f"referenced image {image_id[7:19]}", obj=name)
            if "@" in full:
                self.db.remove_repo_digest(full)
            else:
                self.db.untag(full)
            familiar = reference.parse(full).familiar()
            report.append({"Untagged": familiar})
            self.events.publish(make_event("image", "untag", image_id, {"name": familiar}))
            if self.db.tags_of(image_id) or users or self.db.children_of(image_id):
                return report
        else:
            image_id = self.resolve(name)
            users = self.in_use(image_id)
            running = [cid for cid, up in users if up]
            if running:
                raise Conflict(f"conflict: unable to delete {image_id[7:19]} (cannot be "
                               f"forced) - image is being used by running container "
                               f"{running[0][:12]}", obj=name)
            if users and not force:
                raise Conflict(f"conflict: unable to delete {image_id[7:19]} (must be forced)"
                               f" - image is being used by stopped container "
                               f"{users[0][0][:12]}", obj=name)
            if self.db.children_of(image_id):
                raise Conflict(f"conflict: unable to delete {image_id[7:19]} (cannot be "
                               "forced) - image has dependent child images", obj=name)
            tags = self.db.tags_of(image_id)
            if len(tags) > 1 and not force:
                raise Conflict(f"conflict: unable to delete {image_id[7:19]} (must be forced) - "
                               "image is referenced in multiple repositories", obj=name)
            for t in tags:
                self.db.untag(t)
                report.append({"Untagged": reference.parse(t).familiar()})
        for d in self.db.digests_of(image_id):
            self.db.remove_repo_digest(d)
            report.append({"Untagged": reference.parse(d).familiar()})
        if not users:
            report += self._remove(image_id)
        return report

    def _remove(self, image_id: str) -> list[dict[str, str]]:
        """Delete the image, then the build steps under it that nothing else needs (no
        name, no other child, no container), as dockerd does."""
        report: list[dict[str, str]] = []
        chains: list[str] = []
        while image_id:
            parent = self.db.parent_of(image_id)
            chains += self.db.remove_image(image_id)
            report.append({"Deleted": image_id})
            self.events.publish(make_event("image", "delete", image_id, {"name": image_id}))
            if (not parent or self.db.image(parent) is None or self.db.tags_of(parent)
                    or self.db.digests_of(parent) or self.db.children_of(parent)
                    or self.in_use(parent)):
                break
            image_id = parent
        self.collect()
        return report + [{"Deleted": c} for c in chains if not self.layers.exists(c)]

    def prune(self, filters: dict[str, list[str]]) -> dict[str, Any]:
        dangling_only = filters.get("dangling", ["true"]) != ["false"]
        deleted: list[dict[str, str]] = []
        before = sum(layer.size for layer in self.layers.all())
        for row in reversed(self.db.images()):  # children (newer) before their parents
            if self.db.image(row.id) is None:
                continue  # went with an image removed before it
            tags = self.db.tags_of(row.id)
            if (dangling_only and tags) or self.in_use(row.id) or self.db.children_of(row.id):
                continue
            for t in tags:
                self.db.untag(t)
                deleted.append({"Untagged": reference.parse(t).familiar()})
            deleted += self._remove(row.id)
        reclaimed = before - sum(layer.size for layer in self.layers.all())
        self.events.publish(make_event("image", "prune", "", {"reclaimed": str(reclaimed)}))
        return {"ImagesDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    def count(self) -> int:
        return len(self.db.images())

    def layers_size(self) -> int:
        return sum(layer.size for layer in self.layers.all())


class _Counted:
    """A reader that tells ``on_read`` how far it got (the Extracting bar)."""

    def __init__(self, inner: BinaryIO, on_read: Callable[[int], None]) -> None:
        self._inner = inner
        self._on_read = on_read
        self._done = 0

    def read(self, n: int = -1) -> bytes:
        data = self._inner.read(n)
        if data:
            self._done += len(data)
            self._on_read(self._done)
        return data


def _apply(spool: BinaryIO, dest: str) -> tuple[str, int]:
    result = layertar.apply_layer(spool, dest)
    return result.diff_id, result.size
