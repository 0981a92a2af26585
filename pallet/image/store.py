"""Content-addressed blob store: bytes named by their sha256, verified before they land.

Layout under the store's root::

    blobs/sha256/<hex>   committed blobs; a file here always holds the bytes its name says
    ingest/<hex>         resumable partial download of a known digest (flock'ed while in use)
    ingest/tmp-*         private temp files (write_bytes, or an ingest that lost the race
                         for ingest/<hex> to another writer)

Nothing appears under blobs/ except by rename(2) of a complete, fsync'ed file whose digest
was checked, so a crash leaves the blob or nothing, plus litter in ingest/ that prune()
collects. Concurrent writers of one digest never disturb each other: one holds the flock on
ingest/<hex>, the others write private temps, and every rename puts identical bytes in place,
so whichever lands last wins harmlessly. flock locks belong to an open file description, so
this holds between threads of one process as well as between processes.

The store takes no lock of its own against prune(): the engine must not prune while a pull
that will reference a blob is still in flight (it serialises GC against image writes).
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterator
from types import TracebackType
from typing import BinaryIO

from pallet.errors import InvalidArgument, InvalidState, NotFound, NotSupported, SystemFailure
from pallet.image.digest import Digest
from pallet.storage.tree import fsync_dir

ALGORITHM = "sha256"
# An ingest untouched this long belongs to a pull that died; prune() reclaims it.
STALE_AFTER = 3600.0
_HEX = re.compile(r"[0-9a-f]{64}")
_TMP_PREFIX = "tmp-"
# How often to retry claiming ingest/<hex> when its holder renames or removes it between
# our open() and our flock(); each retry means someone else made progress.
_CLAIM_TRIES = 8

Chunk = bytes | bytearray | memoryview


def _check(d: Digest) -> None:
    """Refuse digests this store cannot hold, before their hex becomes a path component."""
    if d.algorithm != ALGORITHM:
        raise NotSupported(f"unsupported digest algorithm: {d.algorithm}", obj=str(d))
    # Digest.parse validates already; this guards against a Digest built without it.
    if not _HEX.fullmatch(d.hex):
        raise InvalidArgument(f"invalid digest: {d.algorithm}:{d.hex!r}", obj=str(d))


def _from_hex(hexdigest: str) -> Digest:
    return Digest(ALGORITHM, hexdigest)


def _mismatch(expected: Digest, actual: Digest) -> InvalidArgument:
    return InvalidArgument(
        f"digest mismatch: expected {expected} got {actual}", op="ingest", obj=str(expected)
    )


def _failure(op: str, path: str, exc: OSError) -> SystemFailure:
    return SystemFailure(
        f"{op} {path}: {exc.strerror or exc}", op=op, obj=path, errno=exc.errno or 0, path=path
    )


def _write_all(f: io.FileIO, data: Chunk) -> None:
    view = memoryview(data).cast("B")
    while view:
        n = f.write(view)
        view = view[n or 0 :]


def _same_file(path: str, st: os.stat_result) -> bool:
    try:
        cur = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return (cur.st_dev, cur.st_ino) == (st.st_dev, st.st_ino)


class ContentStore:
    """Blobs on disk under ``root``; creates the layout if it is missing."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.blobs_dir = os.path.join(root, "blobs", ALGORITHM)
        self.ingest_dir = os.path.join(root, "ingest")
        os.makedirs(self.blobs_dir, mode=0o755, exist_ok=True)
        os.makedirs(self.ingest_dir, mode=0o700, exist_ok=True)

    # -- writing ---------------------------------------------------------------------------

    def write_bytes(self, data: bytes, expected: Digest | None = None) -> Digest:
        """Store ``data``; a mismatch with ``expected`` stores nothing and raises."""
        if expected is not None:
            _check(expected)
        actual = Digest.of_bytes(data)
        if expected is not None and actual != expected:
            raise _mismatch(expected, actual)
        target = self._blob_path(actual)
        try:
            # Present with the right length: a no-op (verify() is the full check).
            if os.stat(target).st_size == len(data):
                return actual
        except FileNotFoundError:
            pass
        f, tmp = self._private_temp()
        with f:
            try:
                _write_all(f, data)
            except OSError as exc:
                os.unlink(tmp)
                raise _failure("write", tmp, exc) from exc
            self._land(f, tmp, target)
        return actual

    def ingest(self, expected: Digest, size: int | None = None) -> Ingest:
        """Start (or resume) streaming the blob ``expected``; see Ingest."""
        _check(expected)
        if size is not None and size < 0:
            raise InvalidArgument(f"invalid size {size} for blob {expected}", obj=str(expected))
        f, path, resumable = self._claim(expected)
        try:
            return Ingest(self, expected, size, f, path, resumable)
        except BaseException:
            f.close()
            raise

    def _claim(self, expected: Digest) -> tuple[io.FileIO, str, bool]:
        """Lock ingest/<hex> for resuming, or fall back to a private temp if it is busy."""
        path = os.path.join(self.ingest_dir, expected.hex)
        for _ in range(_CLAIM_TRIES):
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            except OSError as exc:
                raise _failure("open", path, exc) from exc
            f = io.FileIO(fd, "r+", closefd=True)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.close()
                break  # another writer is streaming this digest right now
            # The previous holder may have committed (renamed) or discarded (unlinked) the
            # file between our open and our lock: then we hold a lock on a ghost; retry.
            if _same_file(path, os.fstat(fd)):
                return f, path, True
            f.close()
        f, tmp = self._private_temp()
        return f, tmp, False

    def _private_temp(self) -> tuple[io.FileIO, str]:
        fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=self.ingest_dir)
        # Held until the temp is renamed or removed, so prune() leaves a live temp alone.
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return io.FileIO(fd, "r+", closefd=True), tmp

    def _land(self, f: io.FileIO, src: str, target: str) -> None:
        """Make the verified file at ``src`` durable and visible as ``target``."""
        try:
            os.fchmod(f.fileno(), 0o644)
            os.fsync(f.fileno())
        except OSError as exc:
            os.unlink(src)
            raise _failure("sync", src, exc) from exc
        try:
            # Atomic, and idempotent for a blob that is already there: same bytes either way.
            os.rename(src, target)
            fsync_dir(self.blobs_dir)
        except OSError as exc:
            raise _failure("commit", target, exc) from exc

    # -- reading ---------------------------------------------------------------------------

    def _blob_path(self, d: Digest) -> str:
        _check(d)
        return os.path.join(self.blobs_dir, d.hex)

    def exists(self, d: Digest) -> bool:
        return os.path.isfile(self._blob_path(d))

    def path(self, d: Digest) -> str:
        p = self._blob_path(d)
        if not os.path.isfile(p):
            raise NotFound(f"blob not found: {d}", op="path", obj=str(d))
        return p

    def size(self, d: Digest) -> int:
        try:
            return os.stat(self._blob_path(d)).st_size
        except FileNotFoundError:
            raise NotFound(f"blob not found: {d}", op="size", obj=str(d)) from None

    def open(self, d: Digest) -> BinaryIO:
        """The blob for reading; the caller closes it."""
        return self._open(d, "open")

    def _open(self, d: Digest, op: str) -> io.BufferedReader:
        p = self._blob_path(d)
        try:
            return open(p, "rb")
        except FileNotFoundError:
            raise NotFound(f"blob not found: {d}", op=op, obj=str(d)) from None
        except OSError as exc:
            raise _failure(op, p, exc) from exc

    def read(self, d: Digest) -> bytes:
        with self._open(d, "read") as f:
            return f.read()

    def verify(self, d: Digest) -> bool:
        """Re-hash the blob on disk: False if its bytes no longer match its name."""
        with self._open(d, "verify") as f:
            return hashlib.file_digest(f, ALGORITHM).hexdigest() == d.hex

    def list(self) -> Iterator[Digest]:
        """Committed blobs only: ingests and temps live elsewhere and never show."""
        for name in sorted(os.listdir(self.blobs_dir)):
            if _HEX.fullmatch(name) and os.path.isfile(os.path.join(self.blobs_dir, name)):
                yield _from_hex(name)

    # -- removing --------------------------------------------------------------------------

    def delete(self, d: Digest) -> None:
        try:
            os.unlink(self._blob_path(d))
        except FileNotFoundError:
            raise NotFound(f"blob not found: {d}", op="delete", obj=str(d)) from None

    def prune(self, keep: set[Digest], stale_after: float = STALE_AFTER) -> tuple[int, int]:
        """Remove blobs not in ``keep`` and ingests idle for ``stale_after`` seconds.

        Returns (files removed, bytes freed), blobs and stale ingests together.
        """
        kept = {d.hex for d in keep if d.algorithm == ALGORITHM}
        count = freed = 0
        for name in os.listdir(self.blobs_dir):
            path = os.path.join(self.blobs_dir, name)
            try:
                st = os.lstat(path)
                if name in kept or not stat.S_ISREG(st.st_mode):
                    continue
                os.unlink(path)
            except FileNotFoundError:
                continue  # a concurrent delete or prune got there first
            count += 1
            freed += st.st_size
        cutoff = time.time() - stale_after
        for name in os.listdir(self.ingest_dir):
            size = self._prune_ingest(os.path.join(self.ingest_dir, name), cutoff)
            if size is not None:
                count += 1
                freed += size
        return count, freed

    def _prune_ingest(self, path: str, cutoff: float) -> int | None:
        """Remove one idle ingest file; None when it is live, fresh or not ours to touch."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return None  # gone, a symlink, or unreadable: not an ingest we wrote
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return None  # a writer holds it
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_mtime > cutoff or not _same_file(path, st):
                return None
            os.unlink(path)
            return st.st_size
        finally:
            os.close(fd)


class Ingest:
    """One streaming write of a blob whose digest is known up front.

    ``offset`` is how many bytes an earlier, interrupted attempt left behind: fetch the rest
    from there (HTTP ``Range: bytes=<offset>-``) and ``write`` it. ``commit`` checks size and
    digest over the whole content, resumed bytes included. As a context manager, leaving
    without commit (an exception, a cut connection) keeps the partial for the next attempt.
    """

    def __init__(
        self,
        store: ContentStore,
        expected: Digest,
        size: int | None,
        f: io.FileIO,
        path: str,
        resumable: bool,
    ) -> None:
        self.expected = expected
        self.size = size
        self._store = store
        self._file: io.FileIO | None = f
        self._path = path
        self._resumable = resumable
        if resumable and size is not None and os.fstat(f.fileno()).st_size > size:
            f.truncate(0)  # longer than the blob can be: nothing in it is worth keeping
        # Resumed bytes count toward the digest, so hash them first. A partial that a crash
        # left with garbage in it fails at commit and is discarded then.
        f.seek(0)
        self._hasher = hashlib.file_digest(f, ALGORITHM)
        self.offset = f.tell()

    @property
    def path(self) -> str:
        """The file being written (readable while it grows: writes are unbuffered)."""
        return self._path

    @property
    def resumable(self) -> bool:
        """False when another writer holds this digest's partial and we write a private temp."""
        return self._resumable

    def _open_file(self, op: str) -> io.FileIO:
        if self._file is None:
            raise InvalidState(
                f"ingest of {self.expected} is closed", op=op, obj=str(self.expected)
            )
        return self._file

    def write(self, chunk: Chunk) -> None:
        f = self._open_file("write")
        n = memoryview(chunk).nbytes
        if self.size is not None and self.offset + n > self.size:
            self.abort(keep_partial=False)
            raise InvalidArgument(
                f"blob {self.expected} is longer than its size {self.size}",
                op="ingest",
                obj=str(self.expected),
            )
        try:
            _write_all(f, chunk)
        except OSError as exc:
            # What reached the file is still a correct prefix: keep it and resume later.
            self.abort(keep_partial=True)
            raise _failure("write", self._path, exc) from exc
        self._hasher.update(chunk)
        self.offset += n

    def commit(self) -> Digest:
        """Verify the whole content and land it; a wrong digest discards the partial."""
        f = self._open_file("commit")
        if self.size is not None and self.offset < self.size:
            # Short, not wrong: what is here may be a good prefix, so keep it for a resume.
            self.abort(keep_partial=True)
            raise InvalidArgument(
                f"blob {self.expected} is short: {self.offset} of {self.size} bytes",
                op="ingest",
                obj=str(self.expected),
            )
        actual = _from_hex(self._hasher.hexdigest())
        if actual != self.expected:
            self.abort(keep_partial=False)
            raise _mismatch(self.expected, actual)
        try:
            self._store._land(f, self._path, self._store._blob_path(self.expected))
        finally:
            self._close()
        return actual

    def abort(self, keep_partial: bool = True) -> None:
        """Stop; keep the partial for a later resume or remove it. Idempotent."""
        if self._file is None:
            return
        try:
            # A private temp can never be resumed (nobody will find it): always drop it.
            if not (keep_partial and self._resumable):
                os.unlink(self._path)
        except FileNotFoundError:
            pass
        finally:
            self._close()

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()  # releases the flock
            self._file = None

    def __enter__(self) -> Ingest:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.abort(keep_partial=True)
