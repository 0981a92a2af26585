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
    root = os.path.abspath(root)
    parts = [p for p in unsafe.split("/") if p]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            st = os.lstat(candidate)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                resolved.append(part)
                continue
            raise
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > MAX_SYMLINKS:
                raise OSError(errno.ELOOP, "too many levels of symbolic links", unsafe)
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p] + parts
            continue
        resolved.append(part)
    return os.path.join(root, *resolved) if resolved else root


def mkdir_all_in(root: str, unsafe: str, mode: int = 0o755) -> str:
    """secure_join, then create the missing directories one by one, re-resolving each."""
    path = secure_join(root, unsafe)
    rel = os.path.relpath(path, root)
    cur = root
    if rel == ".":
        return root
    for part in rel.split("/"):
        cur = secure_join(root, os.path.join(os.path.relpath(cur, root), part))
        try:
            os.mkdir(cur, mode)
        except FileExistsError:
            if not os.path.isdir(cur):
                raise NotADirectoryError(errno.ENOTDIR, "not a directory", cur) from None
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
