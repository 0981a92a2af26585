"""A build's context: the tar the client sent, unpacked into a private directory.

The tar comes from anyone who can reach the socket, so it is unpacked as carefully as
a layer: names that climb out (``../x``, absolute paths) are refused, links stay links
and are only ever resolved inside the context (``inside``), devices and fifos are
skipped (a context holds files to copy, nothing else). Owners are dropped: what COPY
writes belongs to root unless ``--chown`` says otherwise, as with Docker.

Checksums are of what COPY would write: names, modes, link targets and contents — not
mtimes, which a fresh checkout changes (Docker's tarsum leaves them out too).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tarfile
from collections.abc import Iterator
from typing import BinaryIO

from pallet.build.patterns import Matcher, read_dockerignore
from pallet.errors import InvalidArgument, NotFound

_MAX_LINKS = 40


def unpack(stream: BinaryIO, dest: str, owners: bool = False) -> None:
    """Unpack the context tar (plain, gzip, bzip2 or xz) from ``stream`` into ``dest``;
    ``owners``: keep the archive's numeric owners (ADD of an archive does)."""
    try:
        tar = tarfile.open(fileobj=stream, mode="r|*")  # noqa: SIM115 (closed below)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise InvalidArgument(f"the build context is not a tar archive: {exc}") from None
    dirs: list[tuple[str, tarfile.TarInfo]] = []
    with tar:
        try:
            for m in tar:
                _member(tar, m, dest, dirs)
                if owners and not m.isdir():
                    _chown(os.path.join(dest, _clean(m.name) or "."), m)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise InvalidArgument(f"the build context is not a tar archive: {exc}") from None
    for path, m in reversed(dirs):  # directories last: writing into them moved their mtime
        if owners:
            _chown(path, m)
        os.chmod(path, m.mode & 0o7777)
        os.utime(path, (m.mtime, m.mtime), follow_symlinks=False)


def _member(tar: tarfile.TarFile, m: tarfile.TarInfo, dest: str,
            dirs: list[tuple[str, tarfile.TarInfo]]) -> None:
    rel = _clean(m.name)
    if rel is None:
        raise InvalidArgument(f"the build context holds a path outside it: {m.name}")
    if not rel:
        return
    path = os.path.join(dest, rel)
    parent = os.path.dirname(path)
    if not os.path.isdir(parent) or os.path.islink(parent):
        # a link named as a parent would write outside: only real directories count
        if os.path.lexists(parent) and (os.path.islink(parent) or not os.path.isdir(parent)):
            raise InvalidArgument(f"the build context writes through a link: {m.name}")
        os.makedirs(parent, mode=0o755, exist_ok=True)
    if os.path.lexists(path) and not (m.isdir() and os.path.isdir(path)
                                      and not os.path.islink(path)):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    if m.isdir():
        os.makedirs(path, mode=0o755, exist_ok=True)
        dirs.append((path, m))
        return
    if m.issym():
        os.symlink(m.linkname, path)
        return
    if m.islnk():
        target = _clean(m.linkname)
        if not target or not os.path.isfile(os.path.join(dest, target)):
            raise InvalidArgument(f"the build context links outside it: {m.name}")
        os.link(os.path.join(dest, target), path)
        return
    if not m.isfile():
        return
    src = tar.extractfile(m)
    assert src is not None
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
        os.fchmod(out.fileno(), m.mode & 0o7777)
    os.utime(path, (m.mtime, m.mtime), follow_symlinks=False)


def _chown(path: str, m: tarfile.TarInfo) -> None:
    if os.path.lexists(path):
        os.lchown(path, m.uid, m.gid)
        if not m.issym():
            os.chmod(path, m.mode & 0o7777)  # chown cleared set-id bits


def _clean(name: str) -> str | None:
    """``name`` relative to the context root; None when it climbs out."""
    parts: list[str] = []
    for p in name.split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            return None
        parts.append(p)
    return "/".join(parts)


def drop_ignored(root: str, dockerfile: str) -> None:
    """As dockerd: the Dockerfile and .dockerignore leave the context when .dockerignore
    excludes them (the client sent them anyway, to be read)."""
    try:
        with open(inside(root, ".dockerignore"), encoding="utf-8", errors="replace") as f:
            matcher = Matcher(read_dockerignore(f.read()))
    except FileNotFoundError:
        return
    for name in (dockerfile, ".dockerignore"):
        if matcher.excluded(name):
            try:
                os.unlink(inside(root, name))
            except (FileNotFoundError, IsADirectoryError):
                pass


def inside(root: str, rel: str, follow_last: bool = True) -> str:
    """The host path of ``rel`` in the tree at ``root``, its symlinks resolved as if
    ``root`` were ``/``: nothing it names can be outside ``root``."""
    parts = [p for p in rel.split("/") if p and p != "."]
    done: list[str] = []
    links = 0
    while parts:
        p = parts.pop(0)
        if p == "..":
            if done:
                done.pop()
            continue
        here = os.path.join(root, *done, p)
        if (parts or follow_last) and os.path.islink(here):
            links += 1
            if links > _MAX_LINKS:
                raise InvalidArgument(f"too many levels of symbolic links: {rel}")
            target = os.readlink(here)
            if target.startswith("/"):
                done = []
            parts = [q for q in target.split("/") if q and q != "."] + parts
            continue
        done.append(p)
    return os.path.join(root, *done)


def checksum(root: str, paths: list[str]) -> str:
    """sha256 over what copying ``paths`` (host paths under ``root``) would write."""
    h = hashlib.sha256()
    for path in paths:
        for rel, full, st in _tree(path):
            h.update(f"{os.path.relpath(path, root)}/{rel}\0{st.st_mode:o}\0".encode())
            if stat.S_ISLNK(st.st_mode):
                h.update(os.readlink(full).encode())
            elif stat.S_ISREG(st.st_mode):
                with open(full, "rb") as f:
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
            h.update(b"\0")
    return h.hexdigest()


def _tree(path: str) -> Iterator[tuple[str, str, os.stat_result]]:
    """(relative name, host path, lstat) of ``path`` and, for a directory, all under it,
    sorted."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise NotFound(f"no such file or directory: {path}") from None
    yield "", path, st
    if not stat.S_ISDIR(st.st_mode):
        return
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            yield os.path.relpath(full, path), full, os.lstat(full)
