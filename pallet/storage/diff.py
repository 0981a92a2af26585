"""Layer tars from directories: an overlay upper dir back into a layer, or a whole rootfs.

``diff_upper`` is the reverse of layertar.apply_layer: overlayfs's whiteouts become
aufs-style ones, as moby's overlay2 driver writes them:

    <dir>/<name>, a character device 0:0       ->  <dir>/.wh.<name>
    <dir> with trusted.overlay.opaque=y        ->  <dir>/ and <dir>/.wh..wh..opq

Everything else is an ordinary entry with numeric owners (no names: the host's
/etc/passwd means nothing inside an image), whole-second mtimes, xattrs as PAX
``SCHILY.xattr.*`` records and hardlinks kept. Entries come in sorted order, so the same
tree always gives the same bytes; ``mtime`` clamps every timestamp to at most that (as
SOURCE_DATE_EPOCH does in BuildKit) for layers that are reproducible across builds.

An upper dir is written by a container, so it is read as carefully as a layer is
written: by directory fd, one component at a time, never following a symlink.
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
from collections.abc import Iterator

from pallet.errors import InvalidState, NotFound, NotSupported, SystemFailure
from pallet.storage.layertar import (
    OPAQUE_XATTR,
    OVERLAY_XATTR_PREFIXES,
    PAX_XATTR,
    WHITEOUT_OPAQUE,
    WHITEOUT_PREFIX,
)

_USER_OPAQUE_XATTR = "user.overlay.opaque"  # what overlay writes when mounted with userxattr
_METACOPY_XATTRS = ("trusted.overlay.metacopy", "user.overlay.metacopy")
_REDIRECT_XATTRS = ("trusted.overlay.redirect", "user.overlay.redirect")
# The host's SELinux label of a file says where it sits on this host, not what it is.
_HOST_XATTRS = ("security.selinux",)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: should a file turn into a fifo between lstat and open, don't hang on it.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CHUNK = 1 << 20
_FLUSH = 256 << 10  # headers are gathered into chunks about this big
_END = b"\0" * (2 * tarfile.BLOCKSIZE)


def diff_upper(upper: str, lowers: list[str] | None = None, *,
               mtime: int | None = None) -> Iterator[bytes]:
    """The layer (an uncompressed tar, in chunks) of overlay upper dir ``upper``.

    ``lowers`` (top first) are the overlay's lower layer dirs; they are only read for
    the data of metacopy files (overlay mounted with ``metacopy=on``). A directory
    renamed under ``redirect_dir=on`` cannot be expressed as a layer without merging
    the lowers and raises NotSupported: mount with ``redirect_dir=off``.
    """
    return _Tar(upper, overlay=True, lowers=lowers or [], mtime=mtime).stream()


def tar_directory(path: str, *, mtime: int | None = None) -> Iterator[bytes]:
    """``path``'s whole tree as an uncompressed tar, in chunks (import, export, save).

    No whiteout conversion: a 0:0 character device is written as the device it is.
    """
    return _Tar(path, overlay=False, lowers=[], mtime=mtime).stream()


class _Tar:
    def __init__(self, root: str, *, overlay: bool, lowers: list[str],
                 mtime: int | None) -> None:
        self._root = root
        self._overlay = overlay
        self._lowers = lowers
        self._clamp = mtime
        self._links: dict[tuple[int, int], str] = {}  # (dev, ino) -> first name
        self._buf = bytearray()
        self._pending_file: tuple[int, int, str] | None = None  # (fd, size, name) of a body

    def stream(self) -> Iterator[bytes]:
        try:
            root = os.open(self._root, _DIR_FLAGS & ~os.O_NOFOLLOW)
        except FileNotFoundError as exc:
            raise NotFound(f"directory {self._root} does not exist", obj=self._root) from exc
        try:
            yield from self._walk(root)
        except OSError as exc:
            raise SystemFailure(
                f"reading {self._root} into a tar failed: {exc.strerror or exc}"
                + (f" ({exc.filename})" if exc.filename else ""),
                errno=exc.errno or 0, path=self._root) from exc

    def _walk(self, root: int) -> Iterator[bytes]:
        # One (dir fd, its tar prefix, names still to visit) per level: a loop, not
        # recursion, so a deep tree can't exhaust Python's stack.
        stack: list[tuple[int, str, list[str]]] = []

        def push(fd: int, prefix: str) -> None:
            stack.append((fd, prefix, []))  # on the stack (to be closed) before listing
            stack[-1][2].extend(_sorted_names(fd))

        try:
            push(root, "")
            while stack:
                dfd, prefix, names = stack[-1]
                if not names:
                    stack.pop()
                    os.close(dfd)
                    continue
                name = names.pop()
                child = self._entry(dfd, prefix, name)
                if child is not None:
                    push(child, f"{prefix}{name}/")
                if self._pending_file is not None:
                    yield from self._file_body()
                if len(self._buf) >= _FLUSH:
                    yield self._take()
        finally:
            for dfd, _prefix, _names in stack:
                os.close(dfd)
            if self._pending_file is not None:
                os.close(self._pending_file[0])
        self._buf += _END
        yield self._take()

    def _take(self) -> bytes:
        out = bytes(self._buf)
        self._buf.clear()
        return out

    # -- one entry -----------------------------------------------------------------

    def _entry(self, dfd: int, prefix: str, name: str) -> int | None:
        """Write the header(s) of ``name`` in ``dfd``; a directory's fd to descend into."""
        path = prefix + name
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            fd = os.open(name, _DIR_FLAGS, dir_fd=dfd)
            try:
                xattrs = _xattrs(fd)
                self._directory(path, st, xattrs)
            except BaseException:
                os.close(fd)
                raise
            return fd
        if stat.S_ISREG(mode):
            self._regular(dfd, name, path)
        elif stat.S_ISLNK(mode):
            info = self._info(path, st, tarfile.SYMTYPE)
            info.linkname = os.readlink(name, dir_fd=dfd)
            self._add(info, _xattrs(_proc(dfd, name)))
        elif stat.S_ISCHR(mode) and st.st_rdev == 0 and self._overlay:
            info = self._info(prefix + WHITEOUT_PREFIX + name, st, tarfile.REGTYPE)
            info.mode = 0o600
            self._add(info, {})
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
            kind = (tarfile.CHRTYPE if stat.S_ISCHR(mode) else
                    tarfile.BLKTYPE if stat.S_ISBLK(mode) else tarfile.FIFOTYPE)
            info = self._info(path, st, kind)
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            self._add(info, _xattrs(_proc(dfd, name)))
        # Sockets: tar has no type for them, and a socket file is nothing without its
        # listener. Docker leaves them out too.
        return None

    def _directory(self, path: str, st: os.stat_result, xattrs: dict[str, bytes]) -> None:
        if self._overlay and any(k in xattrs for k in _REDIRECT_XATTRS):
            raise NotSupported(f"upper dir {self._root}: {path} is a directory renamed with "
                               "overlay's redirect_dir; mount with redirect_dir=off")
        self._add(self._info(path, st, tarfile.DIRTYPE), xattrs)
        if self._overlay and b"y" in (xattrs.get(OPAQUE_XATTR), xattrs.get(_USER_OPAQUE_XATTR)):
            marker = self._info(f"{path}/{WHITEOUT_OPAQUE}", st, tarfile.REGTYPE)
            marker.mode = st.st_mode & 0o777
            self._add(marker, {})

    def _regular(self, dfd: int, name: str, path: str) -> None:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dfd)
        try:
            st = os.fstat(fd)  # of what we opened, not of what lstat saw before
            if not stat.S_ISREG(st.st_mode):
                raise InvalidState(f"{path} in {self._root} changed while being read")
            if st.st_nlink > 1:
                first = self._links.setdefault((st.st_dev, st.st_ino), path)
                if first != path:
                    info = self._info(path, st, tarfile.LNKTYPE)
                    info.linkname = first
                    self._add(info, {})
                    os.close(fd)
                    return
            xattrs = _xattrs(fd)
            if self._overlay and any(k in xattrs for k in _METACOPY_XATTRS):
                data = self._lower_data(path, xattrs)
                os.close(fd)
                fd = data
            info = self._info(path, st, tarfile.REGTYPE)
            info.size = st.st_size
            self._add(info, xattrs)
        except BaseException:
            os.close(fd)
            raise
        self._pending_file = (fd, st.st_size, path)

    def _file_body(self) -> Iterator[bytes]:
        assert self._pending_file is not None
        fd, size, path = self._pending_file
        if self._buf:
            yield self._take()
        self._pending_file = None
        try:
            left = size
            while left:
                chunk = os.read(fd, min(left, _CHUNK))
                if not chunk:
                    raise InvalidState(f"{path} in {self._root} shrank while being read")
                left -= len(chunk)
                yield chunk
        finally:
            os.close(fd)
        self._buf += b"\0" * (-size % tarfile.BLOCKSIZE)

    def _lower_data(self, path: str, xattrs: dict[str, bytes]) -> int:
        """An fd of the data of metacopy file ``path``: where its redirect (or its own
        path) leads in the first lower layer that holds a full copy."""
        where = path
        for key in _REDIRECT_XATTRS:
            if key in xattrs:
                target = os.fsdecode(xattrs[key])
                where = (target if target.startswith("/")
                         else os.path.join(os.path.dirname(path), target))
        parts = [p for p in where.split("/") if p not in ("", ".")]
        for lower in self._lowers:
            fd = _open_beneath(lower, parts)
            if fd is None:
                continue
            if any(k in _xattrs(fd) for k in _METACOPY_XATTRS):
                os.close(fd)  # metadata only here too: its data is further down
                continue
            return fd
        raise NotSupported(f"upper dir {self._root}: {path} is a metacopy file and no lower "
                           "layer given holds its data")

    # -- headers -------------------------------------------------------------------

    def _info(self, name: str, st: os.stat_result, kind: bytes) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = st.st_mode & 0o7777
        info.uid, info.gid = st.st_uid, st.st_gid
        info.uname = info.gname = ""
        mtime = st.st_mtime_ns // 1_000_000_000  # st_mtime, a float, can round up
        info.mtime = mtime if self._clamp is None else min(mtime, self._clamp)
        info.size = 0
        return info

    def _add(self, info: tarfile.TarInfo, xattrs: dict[str, bytes]) -> None:
        # tarfile writes binary PAX values (capabilities) back byte for byte from
        # surrogateescape strings, with a hdrcharset=BINARY record.
        info.pax_headers = {PAX_XATTR + k: v.decode("utf-8", "surrogateescape")
                            for k, v in sorted(xattrs.items())
                            if not k.startswith(OVERLAY_XATTR_PREFIXES)}
        self._buf += info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _sorted_names(dfd: int) -> list[str]:
    """``dfd``'s entries, last first (the walk pops from the end), by byte order."""
    return sorted(os.listdir(dfd), key=os.fsencode, reverse=True)


def _proc(dfd: int, name: str) -> str:
    # No fd-relative llistxattr in os: the parent's /proc/self/fd link names the
    # directory itself, and the last component is not followed.
    return f"/proc/self/fd/{dfd}/{name}"


def _xattrs(target: int | str) -> dict[str, bytes]:
    """The xattrs of an fd or (not followed) /proc path, but the host's labels.

    overlay's own are kept for the caller to read; they never reach the tar."""
    follow = isinstance(target, int)
    try:
        names = os.listxattr(target, follow_symlinks=follow)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return {}
        raise
    out = {}
    for key in names:
        if key.startswith(_HOST_XATTRS):
            continue
        try:
            out[key] = os.getxattr(target, key, follow_symlinks=follow)
        except OSError as exc:
            if exc.errno != errno.ENODATA:  # removed since listxattr
                raise
    return out


def _open_beneath(root: str, parts: list[str]) -> int | None:
    """An fd of regular file ``parts`` under ``root``, never through a symlink; None if
    it is not there (or not a regular file)."""
    try:
        fd = os.open(root, _DIR_FLAGS & ~os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    try:
        for part in parts[:-1]:
            nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nxt
        out = os.open(parts[-1], _FILE_FLAGS, dir_fd=fd)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            return None
        raise
    finally:
        os.close(fd)
    if not stat.S_ISREG(os.fstat(out).st_mode):
        os.close(out)
        return None
    return out
