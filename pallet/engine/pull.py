"""``docker pull``: a manifest (through an index to this platform's), its config, its layers.

::

    GET manifest (Accept: every type)  -> an index? pick the platform, GET that manifest
    config      fetched (small), verified, stored; the image exists already? only retag
    layers      present ones "Already exists"; the others download CONCURRENCY at a time
                into the content store (a partial left by an earlier attempt resumes from
                its offset with a Range request), each verified on commit, and each
                unpacked as soon as it and the layer below it are there: the bottom layers
                extract while the top ones still download
    register    image row, tag, repo digest: last, so a failed pull leaves no image

Errors before the first message (no such manifest, no matching platform) reach the client
as an HTTP error; after it, as the stream's last message. A failed pull leaves verified
blobs, unpacked layers no image names, and partial downloads for the next attempt: never a
half image.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO, cast

from pallet.engine.distribution import (
    CONCURRENCY,
    PROGRESS_INTERVAL,
    Emit,
    Reporter,
    registry_client,
)
from pallet.engine.events import make_event
from pallet.engine.images import ImageService
from pallet.errors import InvalidArgument, NotFound, PalletError
from pallet.image.config import parse_config
from pallet.image.digest import Digest
from pallet.image.manifest import (
    Descriptor,
    Index,
    Manifest,
    Platform,
    layer_compression,
    parse_manifest,
    select_platform,
)
from pallet.image.reference import Reference
from pallet.image.registry import Credentials, RegistryClient, Unauthorized
from pallet.storage.layers import chain_id

# An image config is a few kB; refuse what could only be an attack on our memory.
MAX_CONFIG = 8 << 20


@dataclass(frozen=True)
class _Layer:
    index: int
    desc: Descriptor
    diff_id: str
    parent: str  # chain id of the layer below, "" for the bottom one
    chain_id: str
    present: bool  # unpacked already (by another image): nothing to fetch

    @property
    def ident(self) -> str:
        return self.desc.digest.short()


async def pull(svc: ImageService, ref: Reference, platform: Platform | None,
               creds: Credentials | None, emit: Emit) -> str:
    """Pull ``ref`` (by tag or digest) for ``platform`` (None: this host's); the image id."""
    async with registry_client(svc.cfg, ref.domain, creds) as client:
        return await _Pull(svc, client, ref, platform, Reporter(emit)).run()


async def pull_all_tags(svc: ImageService, ref: Reference, platform: Platform | None,
                        creds: Credentials | None, emit: Emit) -> list[str]:
    """``pull -a``: every tag the registry lists for ``ref``'s repository, one after the
    other (dockerd's order: as listed); their image ids."""
    async with registry_client(svc.cfg, ref.domain, creds) as client:
        try:
            tags = await client.list_tags(ref.domain, ref.path)
        except Unauthorized as exc:
            name = ref.without_tag_or_digest().familiar()
            raise NotFound(f"pull access denied for {name}, repository does not exist or "
                           f"may require 'docker login': {exc}", op="pull",
                           obj=str(ref)) from exc
        if not tags:
            raise NotFound(f"repository {ref.without_tag_or_digest().familiar()} has no tags",
                           op="pull", obj=str(ref))
        report = Reporter(emit)
        return [await _Pull(svc, client, ref.with_tag(tag), platform, report).run()
                for tag in tags]


def first_error(exc: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first real failure in a TaskGroup's exception group (the rest were cancelled)."""
    for inner in exc.exceptions:
        if isinstance(inner, BaseExceptionGroup):
            return first_error(inner)
        if not isinstance(inner, asyncio.CancelledError):
            return inner
    return exc.exceptions[0]


class _Pull:
    def __init__(self, svc: ImageService, client: RegistryClient, ref: Reference,
                 platform: Platform | None, report: Reporter) -> None:
        self.svc = svc
        self.client = client
        self.ref = ref
        self.platform = platform
        self.report = report
        self.reference = str(ref.digest) if ref.digest else ref.tag_or_latest()

    async def run(self) -> str:
        # Blobs and layers are written before the image names them: hold collection off.
        with self.svc.lease():
            return await self._run()

    async def _run(self) -> str:
        digest, manifest, picked = await self._manifest()
        self.report.status(f"Pulling from {self.ref.path}", self.reference, layer=False)
        config = await self._config(manifest.config.digest)
        parsed = parse_config(config)
        if self.platform is not None and not picked:
            _check_platform(self.ref, self.platform, parsed.os, parsed.architecture,
                            parsed.variant)
        diff_ids = [str(d) for d in parsed.rootfs.diff_ids]
        if len(diff_ids) != len(manifest.layers):
            raise InvalidArgument(
                f"invalid image {self.ref.familiar()}: the manifest has "
                f"{len(manifest.layers)} layers, the config {len(diff_ids)} diff ids")
        image_id = str(manifest.config.digest)
        existing = self.svc.db.layers(image_id) if self.svc.db.image(image_id) else None
        if existing is not None:
            # dockerd's shortcut: the image is here, whatever its layers' blobs were.
            rows = [(r.chain_id, r.diff_id, (r.blob, r.media_type, r.blob_size))
                    for r in existing]
        else:
            layers = self._plan(manifest, diff_ids)
            await self._fetch_and_unpack(layers)
            rows = [(lay.chain_id, lay.diff_id,
                     (str(lay.desc.digest), lay.desc.media_type, lay.desc.size))
                    for lay in layers]
        before = (self.svc.db.digest_target(f"{self.ref.name}@{self.ref.digest}")
                  if self.ref.digest else self.svc.db.tag_target(str(self.ref)))
        names = [] if self.ref.digest else [str(self.ref)]
        image_id = await asyncio.to_thread(self.svc.register, config, rows, names,
                                           [f"{self.ref.name}@{digest}"])
        familiar = self.ref.familiar()
        self.svc.events.publish(make_event("image", "pull", familiar, {"name": familiar}))
        self.report.status(f"Digest: {digest}")
        news = "Image is up to date for" if before == image_id else "Downloaded newer image for"
        self.report.status(f"Status: {news} {familiar}")
        return image_id

    async def _manifest(self) -> tuple[str, Manifest, bool]:
        """(digest of what the reference names, the manifest to pull, picked from an index)."""
        media, body, digest = await self._get_manifest(self.reference)
        doc = parse_manifest(body, media)
        if isinstance(doc, Manifest):
            return digest, doc, False
        entry = select_platform(doc, self.platform or Platform("", ""))
        media, body, _ = await self._get_manifest(str(entry.digest))
        inner = parse_manifest(body, media)
        if isinstance(inner, Index):
            raise InvalidArgument(f"invalid manifest list {self.ref.familiar()}: entry "
                                  f"{entry.digest} is an index, not an image manifest")
        return digest, inner, True

    async def _get_manifest(self, reference: str) -> tuple[str, bytes, str]:
        try:
            return await self.client.get_manifest(self.ref.domain, self.ref.path, reference)
        except NotFound as exc:
            # The client names the registry as spoken to; Docker names the image as typed.
            _, found, said = exc.message.partition(" not found")
            sep = "@" if ":" in reference else ":"
            name = self.ref.without_tag_or_digest().familiar()
            raise NotFound(f"manifest for {name}{sep}{reference} not found{said}"
                           if found else exc.message, op="pull", obj=str(self.ref)) from exc
        except Unauthorized as exc:
            # As dockerd: a registry that refuses us may be hiding a repository that does
            # not exist, and the docker CLI's run falls back on a 404 as on any other.
            name = self.ref.without_tag_or_digest().familiar()
            raise NotFound(f"pull access denied for {name}, repository does not exist or "
                           f"may require 'docker login': {exc}", op="pull",
                           obj=str(self.ref)) from exc

    async def _config(self, digest: Digest) -> bytes:
        store = self.svc.store
        if not store.exists(digest):
            buf = bytearray()

            def keep(chunk: bytes) -> None:
                if len(buf) + len(chunk) > MAX_CONFIG:
                    raise InvalidArgument(f"image config {digest} is larger than "
                                          f"{MAX_CONFIG} bytes", obj=str(digest))
                buf.extend(chunk)

            await self.client.get_blob(self.ref.domain, self.ref.path, str(digest), keep)
            await asyncio.to_thread(store.write_bytes, bytes(buf), digest)  # verifies
        return await asyncio.to_thread(store.read, digest)

    def _plan(self, manifest: Manifest, diff_ids: list[str]) -> list[_Layer]:
        layers: list[_Layer] = []
        parent = ""
        for i, (desc, diff_id) in enumerate(zip(manifest.layers, diff_ids, strict=True)):
            layer_compression(desc.media_type)  # refuse an unknown type before fetching
            chain = chain_id(parent, diff_id)
            layers.append(_Layer(i, desc, diff_id, parent, chain, self.svc.layers.exists(chain)))
            parent = chain
        return layers

    async def _fetch_and_unpack(self, layers: list[_Layer]) -> None:
        for lay in layers:
            self.report.status("Already exists" if lay.present else "Pulling fs layer",
                               lay.ident)
        slots = asyncio.Semaphore(CONCURRENCY)
        unpacked = [asyncio.Event() for _ in layers]

        async def one(lay: _Layer) -> None:
            streamed = False
            if not lay.present:
                parent_ready = not lay.index or unpacked[lay.index - 1].is_set()
                streamed = await self._download(lay, slots, unpack=parent_ready)
            if lay.index:
                await unpacked[lay.index - 1].wait()
            if not lay.present and not streamed:
                self.report.progress("Extracting", lay.ident, 0, lay.desc.size, force=True)
                await asyncio.to_thread(self.svc.unpack, lay.parent, lay.desc.digest,
                                        lay.diff_id, self._extracting(lay))
                self.report.status("Pull complete", lay.ident)
            unpacked[lay.index].set()

        try:
            async with asyncio.TaskGroup() as tasks:
                for lay in layers:
                    tasks.create_task(one(lay))
        except BaseExceptionGroup as group:
            raise first_error(group) from None

    def _extracting(self, lay: _Layer) -> Callable[[int], None]:
        """A callback for the unpack's thread: the Extracting bar, as often as the
        reporter draws it, drawn on the event loop."""
        loop = asyncio.get_running_loop()
        last = [0.0]

        def tick(done: int) -> None:
            now = time.monotonic()
            if now - last[0] >= PROGRESS_INTERVAL and done < lay.desc.size:
                last[0] = now
                loop.call_soon_threadsafe(self.report.progress, "Extracting", lay.ident,
                                          done, lay.desc.size)
        return tick

    async def _download(self, lay: _Layer, slots: asyncio.Semaphore,
                        unpack: bool = False) -> bool:
        """Fetch the layer's blob into the store. ``unpack``: its parent is there, so
        unpack it while it downloads (from the file as it grows); True if that was done
        (not for a blob already stored or a download resumed from a partial)."""
        store, desc = self.svc.store, lay.desc
        if store.exists(desc.digest):
            self.report.status("Download complete", lay.ident)
            return False
        if slots.locked():
            self.report.status("Waiting", lay.ident)
        async with slots:
            ingest = await asyncio.to_thread(store.ingest, desc.digest, desc.size)
            growing: Growing | None = None
            unpacking: asyncio.Task[object] | None = None
            shown = False
            try:
                done = ingest.offset  # what an interrupted attempt left: resume from there
                self.report.progress("Downloading", lay.ident, done, desc.size, force=True)
                if unpack and done == 0 and desc.size > 0:
                    # The diff id (from the config, which the manifest's digest covers)
                    # is checked on the unpacked content; the blob's own digest at commit.
                    tick = self._extracting(lay)
                    growing = Growing(ingest.path, lambda n: tick(n) if shown else None)
                    unpacking = asyncio.create_task(asyncio.to_thread(
                        self.svc.unpack_from, lay.parent, cast(BinaryIO, growing),
                        lay.diff_id))

                def write(chunk: bytes) -> None:
                    nonlocal done
                    ingest.write(chunk)
                    done += len(chunk)
                    if growing is not None:
                        growing.wrote(len(chunk))
                    self.report.progress("Downloading", lay.ident, done, desc.size)

                if done < desc.size:
                    await self.client.get_blob(self.ref.domain, self.ref.path,
                                               str(desc.digest), write, ingest.offset)
                if growing is not None:
                    growing.finish()
                self.report.status("Verifying Checksum", lay.ident)
                try:
                    await asyncio.to_thread(ingest.commit)
                except PalletError as exc:
                    raise InvalidArgument(
                        f"filesystem layer verification failed for digest {desc.digest}: "
                        f"{exc}", op="pull", obj=str(desc.digest)) from exc
                self.report.status("Download complete", lay.ident)
                if unpacking is not None:
                    assert growing is not None
                    self.report.progress("Extracting", lay.ident, growing.position, desc.size,
                                         force=True)
                    shown = True  # from here on the bar is the unpack's
                    await unpacking
                    self.report.status("Pull complete", lay.ident)
                    return True
            except BaseException:
                if growing is not None:
                    growing.finish(failed=True)
                if unpacking is not None:
                    await asyncio.gather(unpacking, return_exceptions=True)
                raise
            finally:
                ingest.abort(keep_partial=True)  # after a commit: nothing left to do
                if growing is not None:
                    growing.close()
        self.report.status("Download complete", lay.ident)
        return False


class Growing:
    """A blob's file read while its download writes it: a read waits for bytes that
    are not there yet, and ends (b"") when the download has ended. The unpack reads it
    in a worker thread; the download's writes (the event loop) say how far it got."""

    def __init__(self, path: str, on_read: Callable[[int], None] | None = None) -> None:
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self._on_read = on_read
        self._pos = 0
        self._written = 0
        self._ended = False
        self._failed = False
        self._cond = threading.Condition()

    def wrote(self, n: int) -> None:
        with self._cond:
            self._written += n
            self._cond.notify_all()

    def finish(self, failed: bool = False) -> None:
        with self._cond:
            self._ended = True
            self._failed = failed
            self._cond.notify_all()

    def read(self, size: int = -1) -> bytes:
        with self._cond:  # held over the pread too: close() can never pull the fd away
            while self._pos >= self._written and not self._ended:
                self._cond.wait()
            if self._failed or self._fd < 0:
                raise InvalidArgument("the layer's download failed", op="pull")
            available = self._written - self._pos
            if available <= 0:
                return b""
            data = os.pread(self._fd, available if size < 0 else min(size, available),
                            self._pos)
            self._pos += len(data)
        if self._on_read is not None:
            self._on_read(self._pos)
        return data

    @property
    def position(self) -> int:
        return self._pos

    def close(self) -> None:
        with self._cond:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            self._ended = self._failed = True
            self._cond.notify_all()


def _check_platform(ref: Reference, want: Platform, os_name: str, arch: str,
                    variant: str) -> None:
    """A single-platform image pulled with --platform must be of that platform."""
    have = Platform(os_name, arch, variant)
    try:
        select_platform(Index("", [Descriptor("", Digest("sha256", "0" * 64), 0,
                                              platform=have)]), want)
    except NotFound:
        raise NotFound(f"image with reference {ref.familiar()} was found but does not match "
                       f"the specified platform: wanted {want}, actual: {have}",
                       op="pull", obj=str(ref)) from None
