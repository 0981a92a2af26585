"""``docker push``: layers, then the config, then the manifest that names them.

::

    per layer (CONCURRENCY at once)
      the registry has its blob already (HEAD)            -> "Layer already exists"
      else the bytes: the blob the image was made from, or the same diff's blob another
        image keeps, or (none kept: a layer built here) the layer dir as a gzip tar,
        stored and recorded on the image
      another repository of this registry has it (pulled from or pushed to there)
                                                          -> mount it: "Mounted from x"
      else upload                                         -> "Pushing", "Pushed"
    config blob, then the manifest under the tag: Docker schema 2 when every layer has a
    Docker media type, OCI otherwise; its digest becomes a repo digest of the image
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Iterator

from pallet.engine.distribution import CONCURRENCY, Emit, Reporter, registry_client
from pallet.engine.events import make_event
from pallet.engine.imagedb import LayerRow
from pallet.engine.images import ImageService
from pallet.engine.pull import first_error
from pallet.errors import InvalidArgument, InvalidState, NotFound
from pallet.image import manifest as mf
from pallet.image import reference
from pallet.image.digest import Digest, Hasher
from pallet.image.reference import Reference
from pallet.image.registry import BlobPush, Credentials, RegistryClient
from pallet.storage.compression import Compression, compress
from pallet.storage.diff import diff_upper

CHUNK = 1 << 20
Blob = tuple[str, str, int]  # (digest, media type, size) of a layer as distributed

_DOCKER_LAYERS = (mf.DOCKER_LAYER_GZIP, mf.DOCKER_LAYER_TAR, mf.DOCKER_FOREIGN_LAYER)
_AS_OCI = {mf.DOCKER_LAYER_GZIP: mf.OCI_LAYER_GZIP, mf.DOCKER_LAYER_TAR: mf.OCI_LAYER,
           mf.DOCKER_FOREIGN_LAYER: mf.OCI_LAYER_NONDIST_GZIP}


def targets(svc: ImageService, name: str, tag: str) -> list[tuple[Reference, str]]:
    """(reference, image id) for each tag to push: ``tag``, or every tag of ``name``."""
    ref = reference.parse_repository_and_tag(name, tag)
    if ref.digest is not None:
        raise InvalidArgument("cannot push a digest reference", obj=name)
    if ref.tag is not None:
        image_id = svc.db.tag_target(str(ref))
        if image_id is None:
            raise NotFound(f"tag does not exist: {ref.familiar()}", op="push", obj=name)
        return [(ref, image_id)]
    tagged = [(reference.parse(t), row.id) for row in svc.db.images()
              for t in svc.db.tags_of(row.id)]
    found = sorted(((r, i) for r, i in tagged if r.name == ref.name), key=lambda x: str(x[0]))
    if not found:
        raise NotFound(f"An image does not exist locally with the tag: {ref.familiar_name()}",
                       op="push", obj=name)
    return found


async def push(svc: ImageService, todo: list[tuple[Reference, str]],
               creds: Credentials | None, emit: Emit) -> None:
    """Push each (reference, image id) of ``todo`` (all of one repository)."""
    report = Reporter(emit)
    repo = todo[0][0]
    report.status(f"The push refers to repository [{repo.name}]")
    async with registry_client(svc.cfg, repo.domain, creds) as client:
        for ref, image_id in todo:
            await _Push(svc, client, ref, image_id, report).run()


def manifest_for(config: bytes, blobs: list[Blob]) -> mf.Manifest:
    """Docker schema 2 when every layer has a Docker media type (or there is none), OCI
    otherwise: the types a manifest names must be the ones its kind allows."""
    docker = all(media in _DOCKER_LAYERS for _, media, _ in blobs)
    layers = [mf.Descriptor(media if docker else _AS_OCI.get(media, media),
                            Digest.parse(digest), size) for digest, media, size in blobs]
    cfg = mf.Descriptor(mf.DOCKER_CONFIG if docker else mf.OCI_CONFIG,
                        Digest.of_bytes(config), len(config))
    return mf.Manifest(mf.DOCKER_MANIFEST if docker else mf.OCI_MANIFEST, cfg, layers)


class _Push:
    def __init__(self, svc: ImageService, client: RegistryClient, ref: Reference,
                 image_id: str, report: Reporter) -> None:
        self.svc = svc
        self.client = client
        self.ref = ref
        self.image_id = image_id
        self.report = report
        self.registry, self.repo = ref.domain, ref.path

    async def run(self) -> None:
        rows = self.svc.db.layers(self.image_id)
        config = await asyncio.to_thread(self.svc.store.read, Digest.parse(self.image_id))
        for row in rows:
            self.report.status("Preparing", _short(row.diff_id))
        sources = await asyncio.to_thread(self._mount_sources)
        blobs: list[Blob] = [(row.blob, row.media_type, row.blob_size) for row in rows]
        slots = asyncio.Semaphore(CONCURRENCY)

        async def one(i: int) -> None:
            blobs[i] = await self._layer(rows[i], slots, sources)

        try:
            async with asyncio.TaskGroup() as tasks:
                for i in range(len(rows)):
                    tasks.create_task(one(i))
        except BaseExceptionGroup as group:
            raise first_error(group) from None
        await asyncio.to_thread(self._record, rows, blobs)

        config_digest = str(Digest.of_bytes(config))
        if not await self.client.blob_exists(self.registry, self.repo, config_digest):
            await self.client.push_blob(self.registry, self.repo, config_digest, len(config),
                                        _once(config))
        manifest = manifest_for(config, blobs)
        data = mf.to_json(manifest)
        tag = self.ref.tag_or_latest()
        digest = await self.client.put_manifest(self.registry, self.repo, tag,
                                                manifest.media_type, data)
        await asyncio.to_thread(self.svc.db.add_repo_digest, f"{self.ref.name}@{digest}",
                                self.image_id)
        familiar = self.ref.familiar()
        self.svc.events.publish(make_event("image", "push", familiar, {"name": familiar}))
        self.report.status(f"{tag}: digest: {digest} size: {len(data)}")
        self.report.aux({"Tag": tag, "Digest": digest, "Size": len(data)})

    async def _layer(self, row: LayerRow, slots: asyncio.Semaphore,
                     sources: dict[str, str]) -> Blob:
        ident = _short(row.diff_id)
        if slots.locked():
            self.report.status("Waiting", ident)
        async with slots:
            kept: Blob = (row.blob, row.media_type, row.blob_size)
            # A pulled layer's blob may be gone from the store, yet be at the registry.
            if row.blob and await self.client.blob_exists(self.registry, self.repo, row.blob):
                self.report.status("Layer already exists", ident)
                return kept
            blob = await asyncio.to_thread(self._local_blob, row)
            if blob[0] != row.blob and await self.client.blob_exists(self.registry, self.repo,
                                                                     blob[0]):
                self.report.status("Layer already exists", ident)
                return blob
            mount = sources.get(blob[0])
            self.report.progress("Pushing", ident, 0, blob[2], force=True)
            how = await self.client.push_blob(self.registry, self.repo, blob[0], blob[2],
                                              self._chunks(blob, ident), mount_from=mount)
            self.report.status(f"Mounted from {mount}" if how is BlobPush.MOUNTED else "Pushed",
                               ident)
            return blob

    async def _chunks(self, blob: Blob, ident: str) -> AsyncIterator[bytes]:
        f = await asyncio.to_thread(self.svc.store.open, Digest.parse(blob[0]))
        try:
            sent = 0
            while chunk := await asyncio.to_thread(f.read, CHUNK):
                sent += len(chunk)
                self.report.progress("Pushing", ident, sent, blob[2])
                yield chunk
        finally:
            f.close()

    # --- blocking helpers (run in threads) -------------------------------------------------

    def _mount_sources(self) -> dict[str, str]:
        """blob digest -> another repository of this registry known to hold it: one an
        image with that blob was pulled from or pushed to (its repo digests say so)."""
        out: dict[str, str] = {}
        db = self.svc.db
        for row in db.images():
            repos = [r.path for r in map(reference.parse, db.digests_of(row.id))
                     if r.domain == self.registry and r.path != self.repo]
            if repos:
                for layer in db.layers(row.id):
                    if layer.blob:
                        out.setdefault(layer.blob, repos[0])
        return out

    def _local_blob(self, row: LayerRow) -> Blob:
        """A stored blob whose content is this layer: its own, another image's blob of the
        same diff, or one made now from the layer dir."""
        store, db = self.svc.store, self.svc.db
        if row.blob and store.exists(Digest.parse(row.blob)):
            return row.blob, row.media_type, row.blob_size
        for image in db.images():
            for other in db.layers(image.id):
                if (other.diff_id == row.diff_id and other.blob and other.media_type
                        and store.exists(Digest.parse(other.blob))):
                    return other.blob, other.media_type, other.blob_size
        return self._blob_from_layer(row)

    def _blob_from_layer(self, row: LayerRow) -> Blob:
        """The layer dir as a gzip tar, into the store. Only a tar with the diff id the
        config names will do: diff_upper writes one canonical tar per tree, so a layer that
        came from it (a build) is reproduced; one unpacked from a foreign tar is not."""
        layer = self.svc.layers.get(row.chain_id)
        tar_hash, blob_hash = Hasher(), Hasher()

        def tar() -> Iterator[bytes]:
            for chunk in diff_upper(layer.path):
                tar_hash.update(chunk)
                yield chunk

        with tempfile.TemporaryFile(dir=self.svc.tmp) as spool:
            for chunk in compress(tar(), Compression.GZIP):
                blob_hash.update(chunk)
                spool.write(chunk)
            if str(tar_hash.digest()) != row.diff_id:
                raise InvalidState(
                    f"cannot push layer {row.diff_id}: the image keeps no blob of it and its "
                    f"content does not reproduce the same tar (got {tar_hash.digest()}); pull "
                    "or load the image again", op="push", obj=row.diff_id)
            digest = blob_hash.digest()
            with self.svc.store.ingest(digest, blob_hash.size) as ingest:
                spool.seek(ingest.offset)
                while chunk := spool.read(CHUNK):
                    ingest.write(chunk)
                ingest.commit()
        return str(digest), mf.DOCKER_LAYER_GZIP, blob_hash.size

    def _record(self, rows: list[LayerRow], blobs: list[Blob]) -> None:
        """Keep the blobs found or made for the image's layers on its rows, so the next
        push (and save) finds them, and prune keeps them."""
        store = self.svc.store
        new = [LayerRow(row.chain_id, row.diff_id, *blob)
               if blob[0] != row.blob and store.exists(Digest.parse(blob[0])) else row
               for row, blob in zip(rows, blobs, strict=True)]
        image = self.svc.db.image(self.image_id)
        if new != rows and image is not None:
            self.svc.db.add_image(image, new)  # rows are replaced by (image, index)


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _short(digest: str) -> str:
    return digest.partition(":")[2][:12]
