"""Blobs into the content store, verified as they stream: digests, sizes, diff ids.

Shared by the archive readers (docker-archive, OCI layout): every member is hashed while
it is stored, compressed layers are decompressed in the same pass to learn their diff
id, and nothing unverified is ever referenced.
"""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, BinaryIO, Protocol, cast

from pallet.errors import InvalidArgument, NotSupported, PalletError
from pallet.image.digest import Digest, Hasher
from pallet.image.store import ContentStore
from pallet.storage.compression import Compression, detect, open_decompressed

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

# JSON documents (index, manifests, configs, manifest.json) are read whole; none is
# legitimately near this, and a hostile one must not take the memory.
MAX_DOCUMENT = 16 << 20
CHUNK = 1 << 20
# Blobs of unknown digest stay in memory up to this, then spill to an unnamed temp file.
_SPOOL_MAX = 1 << 20
_MAGIC_LEN = 6


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """A blob as ingested: ``diff_id`` is the digest of its decompressed content (equal to
    ``digest`` for a plain blob), None when it is no gzip, zstd or plain stream we read."""

    digest: Digest
    size: int
    compression: Compression | None
    diff_id: Digest | None


# --- verified ingestion ---------------------------------------------------------------------

class _Sink(Protocol):
    def write(self, data: bytes) -> None: ...

    def commit(self) -> Digest: ...

    def abort(self) -> None: ...


class _IngestSink:
    """Streams into the store under a digest known up front; the store verifies it."""

    def __init__(self, store: ContentStore, expected: Digest, size: int | None) -> None:
        ing = store.ingest(expected, size)
        if ing.offset:
            # A stale partial of another transfer: this stream starts at byte 0, so drop it.
            ing.abort(keep_partial=False)
            ing = store.ingest(expected, size)
        self._ing = ing

    def write(self, data: bytes) -> None:
        self._ing.write(data)

    def commit(self) -> Digest:
        return self._ing.commit()

    def abort(self) -> None:
        self._ing.abort(keep_partial=False)  # a stream cannot resume: keep no partial


class _CheckSink:
    """The store has the blob already: only check that these bytes are it too."""

    def __init__(self, expected: Digest) -> None:
        self._expected = expected
        self._hasher = Hasher()

    def write(self, data: bytes) -> None:
        self._hasher.update(data)

    def commit(self) -> Digest:
        actual = self._hasher.digest()
        if actual != self._expected:
            raise InvalidArgument(f"digest mismatch: expected {self._expected} got {actual}",
                                  op="ingest", obj=str(self._expected))
        return actual

    def abort(self) -> None:
        pass


class _SpoolSink:
    """Digest unknown until the end (docker 20.10's ``<id>/layer.tar``): spool, then store."""

    def __init__(self, store: ContentStore) -> None:
        self._store = store
        self._hasher = Hasher()
        # Closed by abort(), which ingest_stream always calls.
        self._spool = tempfile.SpooledTemporaryFile(  # noqa: SIM115
            max_size=_SPOOL_MAX, dir=store.ingest_dir)

    def write(self, data: bytes) -> None:
        self._spool.write(data)
        self._hasher.update(data)

    def commit(self) -> Digest:
        d, size = self._hasher.digest(), self._hasher.size
        if self._store.exists(d):
            return d
        self._spool.seek(0)
        if size <= _SPOOL_MAX:
            return self._store.write_bytes(self._spool.read(), d)
        with self._store.ingest(d, size) as ing:
            while chunk := self._spool.read(CHUNK):
                ing.write(chunk)
            return ing.commit()

    def abort(self) -> None:
        self._spool.close()


class _Tee(io.RawIOBase):
    """Reads ``src`` and hands every byte read to ``sink`` on the way."""

    def __init__(self, src: IO[bytes], sink: _Sink) -> None:
        self._src = src
        self._sink = sink
        # A failure of the source or the sink (truncated archive, blob too long, disk
        # full), told apart from a codec's complaint about the content.
        self.failed: BaseException | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        try:
            data = self._src.read(len(view))
            if data:
                self._sink.write(data)
        except BaseException as exc:
            self.failed = exc
            raise
        view[: len(data)] = data
        return len(data)


class _Chain(io.RawIOBase):
    """``head`` (already read to sniff the compression), then the rest of ``rest``."""

    def __init__(self, head: bytes, rest: io.RawIOBase) -> None:
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        if self._head:
            n = min(len(view), len(self._head))
            view[:n], self._head = self._head[:n], self._head[n:]
            return n
        return self._rest.readinto(view)


def _read_upto(raw: io.RawIOBase, n: int) -> bytes:
    out = b""
    while len(out) < n and (part := raw.read(n - len(out))):
        out += part
    return out


def _drain(raw: io.RawIOBase) -> None:
    buf = bytearray(CHUNK)
    while raw.readinto(buf):
        pass


def _diff(tee: _Tee) -> tuple[Compression | None, Digest | None]:
    """Compression and digest of the decompressed content; (kind, None) for a plain
    stream, whose diff_id is its own digest; (None, None) for what we cannot decompress."""
    head = _read_upto(tee, _MAGIC_LEN)
    try:
        kind = detect(head)
    except NotSupported:
        return None, None
    if kind is Compression.NONE:
        return kind, None
    hasher = Hasher()
    try:
        reader = open_decompressed(cast(BinaryIO, _Chain(head, tee)))
        while chunk := reader.read(CHUNK):
            hasher.update(chunk)
    except PalletError:
        if tee.failed is not None:
            raise tee.failed from None
        return None, None  # corrupt: fine for a config, an error later for a layer
    return kind, hasher.digest()


def ingest_stream(store: ContentStore, src: IO[bytes], expected: Digest | None,
                  size: int | None, what: str) -> BlobInfo:
    """Copy ``src`` into the store, verified against ``expected`` when the name gives it,
    decompressing on the way to learn its diff_id. Nothing lands unless it all checks."""
    sink: _Sink
    if expected is None:
        sink = _SpoolSink(store)
    elif store.exists(expected):
        sink = _CheckSink(expected)
    else:
        sink = _IngestSink(store, expected, size)
    try:
        tee = _Tee(src, sink)
        kind, diff_id = _diff(tee)
        _drain(tee)
        digest = sink.commit()
    except InvalidArgument as exc:
        raise InvalidArgument(f"{what}: {exc}", op="load", obj=what) from exc
    finally:
        sink.abort()
    blob_size = store.size(digest)
    if size is not None and blob_size != size:
        raise InvalidArgument(f"{what}: size {blob_size} does not match {size}", obj=what)
    return BlobInfo(digest, blob_size, kind, digest if kind is Compression.NONE else diff_id)


def read_document(store: ContentStore, info: BlobInfo, what: str) -> bytes:
    if info.size > MAX_DOCUMENT:
        raise InvalidArgument(f"{what} is too large: {info.size} bytes", obj=what)
    return store.read(info.digest)


def check_diff(info: BlobInfo, expected: Digest, what: str) -> Digest:
    """The layer's computed diff_id, which must be the one its config names."""
    if info.diff_id is None:
        raise InvalidArgument(f"{what} is not a plain, gzip or zstd tar", op="load", obj=what)
    if info.diff_id != expected:
        raise InvalidArgument(f"{what} does not match its config: diff_id {info.diff_id}, "
                              f"config says {expected}", op="load", obj=what)
    return info.diff_id
