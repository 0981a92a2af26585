"""Resolve a path inside a root directory without ever leaving it.

Symlinks are followed as the container would see them: an absolute target restarts at
the root, ``..`` stops at the root. This is what keeps a hostile image (a symlink
``/proc -> /``, a mount destination through ``../../etc``) from steering a mount or a
file write onto the host.
"""

from __future__ import annotations

import errno
import os
import stat

MAX_SYMLINKS = 255


def secure_join(root: str, unsafe: str) -> str:
    """The host path of ``unsafe`` (a path in the container) under ``root``.

    Components that do not exist yet are appended as they are (after lexical
    clean-up), so the result can be created afterwards.
    """
    return _walk(os.path.abspath(root), unsafe, None)


def mkdir_all_in(root: str, unsafe: str, mode: int = 0o755) -> str:
    """secure_join, creating the missing directories on the way (one pass, one lstat
    per component)."""
    return _walk(os.path.abspath(root), unsafe, mode)


def _walk(root: str, unsafe: str, mkdir_mode: int | None) -> str:
    parts = [p for p in unsafe.split("/") if p and p != "."]
    parts.reverse()  # a stack: pop() takes the next component
    resolved: list[str] = []
    cur = root
    links = 0
    while parts:
        part = parts.pop()
        if part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
                cur = os.path.join(root, *resolved) if resolved else root
            continue
        candidate = f"{cur}/{part}" if cur != "/" else f"/{part}"
        try:
            st = os.lstat(candidate)
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
                raise
            if mkdir_mode is not None:
                if exc.errno == errno.ENOTDIR:
                    raise NotADirectoryError(errno.ENOTDIR, "not a directory", cur) from None
                os.mkdir(candidate, mkdir_mode)
            resolved.append(part)
            cur = candidate
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > MAX_SYMLINKS:
                raise OSError(errno.ELOOP, "too many levels of symbolic links", unsafe)
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
                cur = root
            parts.extend(reversed([p for p in target.split("/") if p]))
            continue
        if mkdir_mode is not None and not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", candidate)
        resolved.append(part)
        cur = candidate
    return cur


def create_file_in(root: str, unsafe: str) -> str:
    """Make sure a regular file (a bind-mount target) exists at ``unsafe`` under ``root``."""
    # Resolve the whole path first: a dangling link (Ubuntu's /etc/resolv.conf ->
    # ../run/systemd/resolve/stub-resolv.conf) needs its target's directories made.
    resolved = os.path.relpath(secure_join(root, unsafe), root)
    parent = mkdir_all_in(root, os.path.dirname("/" + resolved))
    path = secure_join(root, os.path.join(os.path.relpath(parent, root),
                                          os.path.basename(resolved)))
    if not os.path.lexists(path):
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644))
    return path
