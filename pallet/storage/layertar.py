"""Applying a layer tarball into a directory that overlayfs can use as a lowerdir.

One pass over the stream, no temporary file: the uncompressed tar is hashed as tarfile
reads it (that hash is the layer's diff_id) while entries are written. aufs-style
whiteouts become overlayfs ones, as moby's overlay2 driver writes them:

    <dir>/.wh.<name>       ->  <dir>/<name>, a character device 0:0
    <dir>/.wh..wh..opq     ->  xattr trusted.overlay.opaque=y on <dir>
    .wh..wh.<anything>     ->  aufs bookkeeping, skipped with everything under it

A layer is hostile until proven otherwise, so no path is ever handed to the kernel
whole: every entry is reached by opening its parents one component at a time from the
layer directory with O_NOFOLLOW (a symlink on the way is refused, never followed), names
with ``..`` are refused, leading ``/`` is dropped, an existing entry in the way is
unlinked rather than written through, and hardlink targets are resolved the same way.
Symlink targets are stored as they are: the container interprets them later, inside its
own root. tarfile only parses; every write is ours.

The layer store should apply into a fresh directory and rename it into place: a layer
that fails half way leaves what it wrote so far.
"""

from __future__ import annotations

import errno
import hashlib
import os
import queue
import shutil
import stat
import tarfile
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import BinaryIO

from pallet.errors import InvalidArgument, NotFound, NotSupported, PalletError, SystemFailure
from pallet.storage.chunks import ChunkReader
from pallet.storage.compression import open_decompressed

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
PAX_XATTR = "SCHILY.xattr."
# overlayfs's own bookkeeping; only our whiteout conversion may write it, never a layer.
OVERLAY_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20
_AHEAD = 8  # chunks decompressed ahead of the reader
# tarfile's stream mode reads ahead at most a record (10 KiB) past the header it parses;
# this much of the stream's tail is kept to check the block that ended the archive.
_TAIL = 64 << 10


@dataclass(frozen=True)
class ApplyResult:
    diff_id: str  # "sha256:<hex>" of the uncompressed tar
    size: int  # bytes of the uncompressed tar
    # "path: name" of xattrs the filesystem or our privileges refused (moby skips these too)
    skipped_xattrs: tuple[str, ...] = field(default=())


def apply_layer(stream: BinaryIO, dest: str, *, allow_devices: bool = True) -> ApplyResult:
    """Extract the (gzip, zstd or plain) layer tar ``stream`` into the directory ``dest``.

    Raises InvalidArgument for a corrupt, truncated or hostile archive, NotSupported for
    a device node or opaque directory we lack the privilege to create, SystemFailure
    when the filesystem fails.
    """
    try:
        root = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise NotFound(f"layer directory {dest} does not exist", obj=dest) from exc
    except OSError as exc:
        raise SystemFailure(f"cannot open layer directory {dest}: {exc.strerror}",
                            errno=exc.errno or 0, path=dest) from exc
    hashed: _Hashing | None = None
    try:
        hashed = _Hashing(open_decompressed(stream))
        with _Extractor(root, allow_devices) as ex:
            if hashed.peek_empty():
                # Docker accepts an empty blob as an empty layer.
                return ApplyResult(hashed.diff_id(), 0)
            end = ex.run(hashed)
            _check_end(hashed, end)
            ex.finish()
            hashed.drain()  # tar's zero padding after the end marker is part of the diff_id
            return ApplyResult(hashed.diff_id(), hashed.size, tuple(ex.skipped))
    except (tarfile.TarError, EOFError) as exc:
        raise InvalidArgument(f"layer is not a valid tar archive: {exc}") from exc
    finally:
        if hashed is not None:
            hashed.close()
        os.close(root)


class _Prefetch:
    """Decompressing and hashing in a thread of their own, a few chunks ahead of the
    reader: gunzip (ISA-L) and sha256 let go of the GIL, so they overlap the entry
    writes, which are most of an extraction (~30% of it is the two)."""

    def __init__(self, inner: BinaryIO) -> None:
        self._inner = inner
        self._sha = hashlib.sha256()
        self._queue: queue.Queue[bytes | BaseException | None] = queue.Queue(_AHEAD)
        self._stop = threading.Event()
        self._failed: BaseException | None = None
        self._reader = ChunkReader(self._take)
        self._thread = threading.Thread(target=self._produce, name="layer-read", daemon=True)
        self._thread.start()

    def _produce(self) -> None:
        item: bytes | BaseException | None
        try:
            while not self._stop.is_set():
                item = self._inner.read(_CHUNK)
                if not item:
                    break
                self._sha.update(item)
                self._put(item)
            item = None
        except BaseException as exc:  # handed to the reader, which raises it
            item = exc
        self._put(item)

    def _put(self, item: bytes | BaseException | None) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def read(self, size: int) -> bytes:
        return self._reader.read(size)

    def _take(self) -> bytes | None:
        """The next chunk (None at the end); the thread's failure, raised, every time."""
        if self._failed is not None:
            raise self._failed
        item = self._queue.get()
        if isinstance(item, BaseException):
            self._failed = item
            raise item
        return item

    def hexdigest(self) -> str:
        self._thread.join()
        return self._sha.hexdigest()

    def close(self) -> None:
        """Let the thread go (a reader that gave up early): it ends after the read it
        may be in, without waiting for a download that feeds the stream to finish."""
        self._stop.set()


class _Hashing:
    """A reader that hashes and counts what passes through it (tarfile reads via it)."""

    def __init__(self, inner: BinaryIO) -> None:
        self._inner = _Prefetch(inner)
        self.size = 0
        self._head = b""
        self._tail: deque[bytes] = deque()
        self._tail_len = 0

    def close(self) -> None:
        self._inner.close()

    def peek_empty(self) -> bool:
        self._head = self._read(tarfile.BLOCKSIZE)
        return not self._head

    def _read(self, size: int) -> bytes:
        data = self._inner.read(size)
        self.size += len(data)
        if data:
            self._tail.append(data)
            self._tail_len += len(data)
            while self._tail_len - len(self._tail[0]) >= _TAIL:
                self._tail_len -= len(self._tail.popleft())
        return data

    def block_at(self, offset: int) -> bytes:
        """The (up to) 512 bytes read at ``offset``, which must be near the end so far."""
        start = self.size - self._tail_len
        if offset < start:
            raise InvalidArgument(f"layer tar: cannot check the block at offset {offset}")
        return b"".join(self._tail)[offset - start:offset - start + tarfile.BLOCKSIZE]

    def read(self, size: int = -1) -> bytes:
        if self._head:
            cut = len(self._head) if size < 0 else min(size, len(self._head))
            data, self._head = self._head[:cut], self._head[cut:]
            if size < 0 or len(data) < size:
                data += self._read(size - len(data) if size >= 0 else -1)
            return data
        return self._read(size)

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass

    def diff_id(self) -> str:
        return "sha256:" + self._inner.hexdigest()


def _check_end(reader: _Hashing, offset: int) -> None:
    """The archive ended on a zero block, or cleanly at a header boundary (as Go's tar
    reader, and so Docker, accepts) - not on a cut or garbled header, which tarfile's
    stream mode takes silently for the end."""
    block = reader.block_at(offset)
    if not block and reader.size == offset:
        return
    if len(block) != tarfile.BLOCKSIZE or block.count(0) != tarfile.BLOCKSIZE:
        raise InvalidArgument(f"layer tar is truncated or corrupt at offset {offset}")


def _parts(name: str, what: str) -> tuple[str, ...]:
    """The path components of archive name ``name``: relative, no ``.``, never ``..``."""
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise InvalidArgument(f"layer {what} {name!r} contains '..'")
    return parts


@contextmanager
def _fs_errors(name: str) -> Iterator[None]:
    """Filesystem errors while writing entry ``name`` become SystemFailure."""
    try:
        yield
    except PalletError:
        raise
    except OSError as exc:
        raise SystemFailure(
            f"writing layer entry {name!r} failed: {exc.strerror or exc}",
            errno=exc.errno or 0, path=name,
        ) from exc


class _Extractor:
    def __init__(self, root: int, allow_devices: bool) -> None:
        self._root = root
        self._allow_devices = allow_devices
        # Without root, chown would fail; like tar, keep the extracting user's ids.
        self._same_owner = os.geteuid() == 0
        self._parent: tuple[tuple[str, ...], int] | None = None  # last parent opened
        # Directory modes and times are set last: their content changes their mtime,
        # and a read-only directory would refuse its content (to a non-root user).
        self._dirs: dict[tuple[str, ...], tarfile.TarInfo] = {}
        self.skipped: list[str] = []

    def __enter__(self) -> _Extractor:
        return self

    def __exit__(self, *exc: object) -> None:
        self._forget_parent()

    def run(self, reader: _Hashing) -> int:
        """Extract every entry; the offset of the block that ended the archive."""
        # 'r|' is tarfile's streaming mode: no seeks, so any forward-only stream works.
        with tarfile.open(fileobj=reader, mode="r|", encoding="utf-8",  # type: ignore[call-overload]
                          errors="surrogateescape") as tf:
            while (member := tf.next()) is not None:
                with _fs_errors(member.name):
                    self._entry(tf, member)
                tf.members.clear()  # streaming: nothing looks back, don't hoard headers
            return int(tf.offset)

    # -- one entry -----------------------------------------------------------------

    def _entry(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        parts = _parts(m.name, "entry")
        if not parts:
            return  # the layer root itself: its metadata belongs to the layer store
        if any(p.startswith(WHITEOUT_META_PREFIX) for p in parts[:-1]):
            return
        base = parts[-1]
        if base == WHITEOUT_OPAQUE:
            self._opaque(parts)
            return
        if base.startswith(WHITEOUT_META_PREFIX):
            return
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(parts, m)
            return
        if m.isdir():
            self._directory(parts, m)
        elif m.isreg():
            self._regular(tf, parts, m)
        elif m.issym():
            self._symlink(parts, m)
        elif m.islnk():
            self._hardlink(parts, m)
        elif m.ischr() or m.isblk() or m.isfifo():
            self._node(parts, m)
        else:
            raise InvalidArgument(f"layer entry {m.name!r} has unsupported type {m.type!r}")

    def _directory(self, parts: tuple[str, ...], m: tarfile.TarInfo) -> None:
        pfd = self._open_parent(parts)
        name = parts[-1]
        fresh = not self._clear(pfd, parts, keep_dir=True)
        if fresh:
            os.mkdir(name, 0o700, dir_fd=pfd)
        fd = os.open(name, _DIR_FLAGS, dir_fd=pfd)
        try:
            self._chown(fd, m, fresh)
            self._xattrs(fd, parts, m)
        finally:
            os.close(fd)
        self._dirs[parts] = m

    def _regular(self, tf: tarfile.TarFile, parts: tuple[str, ...], m: tarfile.TarInfo) -> None:
        pfd = self._open_parent(parts)
        name = parts[-1]
        # O_EXCL|O_NOFOLLOW: we only ever write a file we have just created. Whatever is
        # in the way (a file, a symlink, a directory) makes it fail with EEXIST: only then
        # is the old entry cleared, which spares a stat for every new file.
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(name, flags, 0o600, dir_fd=pfd)
        except FileExistsError:
            self._clear(pfd, parts)
            fd = os.open(name, flags, 0o600, dir_fd=pfd)
        try:
            src = tf.extractfile(m)
            assert src is not None  # a regular file always has a body
            while chunk := src.read(_CHUNK):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
            # chown clears set-id bits and file capabilities: chown, then mode, then xattrs.
            self._chown(fd, m, fresh=True)
            os.chmod(fd, m.mode & 0o7777)
            self._xattrs(fd, parts, m)
            os.utime(fd, ns=_ns(m))
        finally:
            os.close(fd)

    def _symlink(self, parts: tuple[str, ...], m: tarfile.TarInfo) -> None:
        pfd = self._open_parent(parts)
        name = parts[-1]
        self._clear(pfd, parts)
        os.symlink(m.linkname, name, dir_fd=pfd)
        self._finish_node(pfd, parts, m)

    def _hardlink(self, parts: tuple[str, ...], m: tarfile.TarInfo) -> None:
        target = _parts(m.linkname, "hardlink target")
        if not target:
            raise InvalidArgument(f"layer hardlink {m.name!r} points at the layer root")
        if target == parts:
            return  # a link to itself: already there
        tfd = self._walk(target[:-1], create=False, name=m.linkname)
        try:
            try:
                st = os.stat(target[-1], dir_fd=tfd, follow_symlinks=False)
            except FileNotFoundError as exc:
                raise InvalidArgument(
                    f"layer hardlink {m.name!r}: target {m.linkname!r} is not in the layer"
                ) from exc
            if stat.S_ISDIR(st.st_mode):
                raise InvalidArgument(
                    f"layer hardlink {m.name!r}: target {m.linkname!r} is a directory")
            pfd = self._open_parent(parts)
            self._clear(pfd, parts)
            # linkat without AT_SYMLINK_FOLLOW: a symlink target is linked, not followed.
            os.link(target[-1], parts[-1], src_dir_fd=tfd, dst_dir_fd=pfd,
                    follow_symlinks=False)
        finally:
            os.close(tfd)

    def _node(self, parts: tuple[str, ...], m: tarfile.TarInfo) -> None:
        if not m.isfifo() and not self._allow_devices:
            raise InvalidArgument(f"layer entry {m.name!r} is a device node; not allowed here")
        pfd = self._open_parent(parts)
        name = parts[-1]
        self._clear(pfd, parts)
        kind = stat.S_IFIFO if m.isfifo() else stat.S_IFCHR if m.ischr() else stat.S_IFBLK
        self._mknod(pfd, name, kind | 0o600, os.makedev(m.devmajor, m.devminor), m.name)
        # A node is never opened (a device could be anything); chmod by name is safe
        # because it is the node just made, and the chmod cannot follow a symlink.
        os.chmod(name, m.mode & 0o7777, dir_fd=pfd, follow_symlinks=False)
        self._finish_node(pfd, parts, m)

    def _whiteout(self, parts: tuple[str, ...], m: tarfile.TarInfo) -> None:
        hidden = parts[-1][len(WHITEOUT_PREFIX):]
        if hidden in ("", ".", ".."):
            raise InvalidArgument(f"layer whiteout {m.name!r} names no file")
        pfd = self._open_parent(parts)
        self._clear(pfd, (*parts[:-1], hidden))
        # overlayfs's whiteout: a 0:0 character device (mode 0, as the kernel makes them);
        # mknod of exactly this device needs no CAP_MKNOD since Linux 5.8.
        self._mknod(pfd, hidden, stat.S_IFCHR, os.makedev(0, 0), m.name)
        if self._same_owner:
            os.chown(hidden, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
        os.utime(hidden, ns=_ns(m), dir_fd=pfd, follow_symlinks=False)  # diffs round-trip

    def _opaque(self, parts: tuple[str, ...]) -> None:
        fd = self._walk(parts[:-1], create=True, name="/".join(parts))
        try:
            os.setxattr(fd, OPAQUE_XATTR, b"y")
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
            raise NotSupported(
                f"opaque directory {'/'.join(parts[:-1]) or '/'}: cannot set {OPAQUE_XATTR} "
                "(needs CAP_SYS_ADMIN and a filesystem with trusted xattrs)") from exc
        finally:
            os.close(fd)

    # -- metadata ------------------------------------------------------------------

    def _mknod(self, pfd: int, name: str, mode: int, dev: int, entry: str) -> None:
        try:
            os.mknod(name, mode, dev, dir_fd=pfd)
        except PermissionError as exc:
            raise NotSupported(f"layer entry {entry!r}: creating a device node needs "
                               "CAP_MKNOD") from exc

    def _finish_node(self, pfd: int, parts: tuple[str, ...], m: tarfile.TarInfo) -> None:
        """Owner, xattrs and times of a symlink or node, by name, never following it."""
        name = parts[-1]
        if self._same_owner:
            os.chown(name, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
        # No fd-relative lsetxattr in os: go through the parent's fd in /proc, which
        # names the directory itself, and don't follow the last component.
        self._xattrs(f"/proc/self/fd/{pfd}/{name}", parts, m)
        os.utime(name, ns=_ns(m), dir_fd=pfd, follow_symlinks=False)

    def _chown(self, fd: int, m: tarfile.TarInfo, fresh: bool = False) -> None:
        # Something we have just created as root is 0:0 already (no setgid parent can
        # hand down a group: directories keep 0700 until finish()); most entries are
        # 0:0, and a chown each is thousands of syscalls in a large layer.
        if self._same_owner and not (fresh and m.uid == 0 and m.gid == 0):
            os.chown(fd, m.uid, m.gid)

    def _xattrs(self, target: int | str, parts: tuple[str, ...], m: tarfile.TarInfo) -> None:
        for key, value in m.pax_headers.items():
            if not key.startswith(PAX_XATTR):
                continue
            attr = key[len(PAX_XATTR):]
            if attr.startswith(OVERLAY_XATTR_PREFIXES):
                continue
            # tarfile decoded the value as UTF-8 or, failing that, with surrogateescape:
            # this gives back the bytes either way (file capabilities are binary).
            raw = value.encode("utf-8", "surrogateescape")
            try:
                # An fd names its file; a path is never followed at its last component.
                os.setxattr(target, attr, raw, follow_symlinks=isinstance(target, int))
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                    raise
                self.skipped.append(f"{'/'.join(parts)}: {attr}")

    def finish(self) -> None:
        """Directory modes and times, now that nothing more will be written into them."""
        self._forget_parent()
        # Deepest first: a parent made read-only must not block the walk to its children.
        for parts, m in sorted(self._dirs.items(), key=lambda item: -len(item[0])):
            try:
                fd = self._walk(parts, create=False, name=m.name)
            except InvalidArgument:
                continue  # replaced by a later entry; that entry's metadata stands
            try:
                with _fs_errors(m.name):
                    os.chmod(fd, m.mode & 0o7777)
                    os.utime(fd, ns=_ns(m))
            finally:
                os.close(fd)

    # -- safe path resolution ------------------------------------------------------

    def _open_parent(self, parts: tuple[str, ...]) -> int:
        """A borrowed fd of the directory holding ``parts``, created if missing."""
        key = parts[:-1]
        if self._parent is not None and self._parent[0] == key:
            return self._parent[1]
        fd = self._walk(key, create=True, name="/".join(parts))
        self._forget_parent()
        self._parent = (key, fd)
        return fd

    def _forget_parent(self) -> None:
        if self._parent is not None:
            os.close(self._parent[1])
            self._parent = None

    def _walk(self, parts: tuple[str, ...], *, create: bool, name: str) -> int:
        """An owned fd of directory ``parts`` under the root, never leaving it."""
        fd = os.dup(self._root)
        try:
            for i, part in enumerate(parts):
                try:
                    nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise InvalidArgument(
                            f"layer entry {name!r}: {'/'.join(parts[:i + 1])} does not exist"
                        ) from None
                    # Docker creates parents a layer leaves out, root-owned and 0755.
                    os.mkdir(part, 0o755, dir_fd=fd)
                    nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
                    os.chmod(nxt, 0o755)  # whatever the umask
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    raise InvalidArgument(
                        f"layer entry {name!r} goes through {'/'.join(parts[:i + 1])}, "
                        "which is a symlink or not a directory"
                    ) from None
                os.close(fd)
                fd = nxt
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _clear(self, pfd: int, parts: tuple[str, ...], *, keep_dir: bool = False) -> bool:
        """Remove what is at ``parts`` (in ``pfd``) so nothing is written through it.

        True when it is a directory that ``keep_dir`` says to keep (a directory entry
        over an existing directory merges into it, as tar does).
        """
        name = parts[-1]
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            # rmtree with dir_fd walks by fd and never follows a symlink inside.
            shutil.rmtree(name, dir_fd=pfd)
            n = len(parts)
            for gone in [d for d in self._dirs if d[:n] == parts]:
                del self._dirs[gone]
        else:
            os.unlink(name, dir_fd=pfd)
        return False


def _ns(m: tarfile.TarInfo) -> tuple[int, int]:
    mtime = m.mtime
    ns = mtime * 1_000_000_000 if isinstance(mtime, int) else int(mtime * 1e9)
    return (ns, ns)
