"""Directory trees of snapshots: copy a layer onto a tree, measure, remove, find mounts.

Layers are in overlay form: a 0:0 character device is a whiteout, a directory with
``trusted.overlay.opaque=y`` hides what the layers below hold at its path.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat

from pallet.linux.proc import unescape_mountinfo

__all__ = ["OPAQUE_XATTR", "apply_layer", "is_opaque", "is_whiteout", "mounts_using",
           "remove", "usage"]

OPAQUE_XATTR = "trusted.overlay.opaque"
_OVERLAY_XATTRS = "trusted.overlay."  # overlay's own bookkeeping, hidden in a merged view


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP):
            return False
        raise


def apply_layer(layer: str, dest: str) -> None:
    """Lay the contents of layer dir ``layer`` over tree ``dest``, as overlay would show
    ``layer`` above ``dest``: whiteouts delete, opaque dirs replace, the rest overrides."""
    _apply_dir(layer, dest, {})


def _apply_dir(src_dir: str, dst_dir: str, links: dict[tuple[int, int], str]) -> None:
    with os.scandir(src_dir) as it:
        entries = list(it)
    for entry in entries:
        src, dst = entry.path, os.path.join(dst_dir, entry.name)
        st = entry.stat(follow_symlinks=False)
        if is_whiteout(st):
            _remove_path(dst)
        elif stat.S_ISDIR(st.st_mode):
            below = _lstat(dst)
            if below is not None and (not stat.S_ISDIR(below.st_mode) or is_opaque(src)):
                _remove_path(dst)
                below = None
            if below is None:
                os.mkdir(dst, 0o700)
            _apply_dir(src, dst, links)
            _copy_meta(src, dst, st)  # after the children, so their writes keep its mtime
        else:
            _remove_path(dst)
            _copy_entry(src, dst, st, links)


def _copy_entry(src: str, dst: str, st: os.stat_result,
                links: dict[tuple[int, int], str]) -> None:
    ident = (st.st_dev, st.st_ino)
    if st.st_nlink > 1 and ident in links:  # keep the layer's hard links linked
        os.link(links[ident], dst, follow_symlinks=False)
        return
    mode = st.st_mode
    if stat.S_ISREG(mode):
        shutil.copyfile(src, dst, follow_symlinks=False)
    elif stat.S_ISLNK(mode):
        os.symlink(os.readlink(src), dst)
    else:  # devices, fifos, sockets
        os.mknod(dst, mode, st.st_rdev)
    _copy_meta(src, dst, st)
    if st.st_nlink > 1:
        links[ident] = dst


def _copy_meta(src: str, dst: str, st: os.stat_result) -> None:
    os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
    link = stat.S_ISLNK(st.st_mode)
    if not link:  # after chown, which clears set-id bits; symlinks have no mode of their own
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    _copy_xattrs(src, dst)  # after chown too: it drops security.capability
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _copy_xattrs(src: str, dst: str) -> None:
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError as exc:
        if exc.errno == errno.ENOTSUP:
            return
        raise
    for name in names:
        if name.startswith(_OVERLAY_XATTRS):
            continue
        value = os.getxattr(src, name, follow_symlinks=False)
        try:
            os.setxattr(dst, name, value, follow_symlinks=False)
        except OSError as exc:
            # A data root on a filesystem without xattrs is one reason to be using the
            # copy driver at all; the files are still worth having.
            if exc.errno != errno.ENOTSUP:
                raise


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _remove_path(path: str) -> None:
    st = _lstat(path)
    if st is None:
        return
    if stat.S_ISDIR(st.st_mode):
        remove(path)
    else:
        os.unlink(path)


def remove(path: str) -> None:
    """Delete the tree at ``path`` (no error if it is gone), even where its modes forbid."""
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        return
    except PermissionError:
        # overlay's work/work is d--------- and containers make any mode they like; without
        # CAP_DAC_OVERRIDE those stop rmtree. Open every directory up, then try again.
        _open_up(path)
        shutil.rmtree(path)


def _open_up(path: str) -> None:
    def fix(d: str) -> None:
        # lstat first: never chmod through a symlink. The tree is unmounted, so nothing
        # swaps one in between the two calls.
        st = os.lstat(d)
        if stat.S_ISDIR(st.st_mode) and st.st_mode & 0o700 != 0o700:
            os.chmod(d, stat.S_IMODE(st.st_mode) | 0o700)

    fix(path)
    for top, dirs, _files in os.walk(path):
        for d in dirs:  # fixed before os.walk descends into them
            fix(os.path.join(top, d))


def usage(path: str) -> int:
    """Bytes of the files under ``path``: sizes of everything but directories, each
    hard-linked inode once (what ``docker ps -s`` counts)."""
    total, seen, todo = 0, set(), [path]
    while todo:
        with os.scandir(todo.pop()) as it:
            for entry in it:
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    todo.append(entry.path)
                    continue
                if st.st_nlink > 1:
                    if (st.st_dev, st.st_ino) in seen:
                        continue
                    seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def mounts_using(path: str, mountinfo: str | None = None) -> tuple[list[str], list[str]]:
    """Mount points at or under ``path`` (deepest first), and mount points elsewhere
    whose filesystem is made of something under ``path`` (an overlay layer, a bind)."""
    if mountinfo is None:
        with open("/proc/self/mountinfo", "rb") as f:
            mountinfo = f.read().decode(errors="surrogateescape")
    path = os.path.normpath(path)
    entries = [_parse_line(line) for line in mountinfo.splitlines() if line]
    inside = [e for e in entries if _under(e[2], path)]
    # The filesystem that holds path, and where path sits inside that filesystem: a bind
    # mount of something under path shows it as its root (mountinfo field 4).
    host = None
    for e in entries:  # the longest match; of mounts stacked on one point, the last
        if _under(path, e[2]) and e[2] != path and (host is None or len(e[2]) >= len(host[2])):
            host = e
    elsewhere = []
    for e in entries:
        dev, root, point, options = e
        if _under(point, path):
            continue
        bound = (host is not None and dev == host[0]
                 and _under(root, os.path.join(host[1], os.path.relpath(path, host[2]))))
        if bound or any(_under(d, path) for d in _option_dirs(options)):
            elsewhere.append(point)
    return [e[2] for e in sorted(inside, key=lambda e: -e[2].count("/"))], elsewhere


def _parse_line(line: str) -> tuple[str, str, str, str]:
    # "36 35 98:0 /root /mnt opts [optional fields...] - fstype source superopts"
    left, _, right = line.partition(" - ")
    fields = left.split(" ")
    options = right.split(" ", 2)[2] if right.count(" ") >= 2 else ""
    return fields[2], unescape_mountinfo(fields[3]), unescape_mountinfo(fields[4]), options


def _option_dirs(options: str) -> list[str]:
    dirs = []
    for opt in options.split(","):
        key, _, value = opt.partition("=")
        if key in ("lowerdir", "lowerdir+", "upperdir", "workdir", "datadir+"):
            dirs += [unescape_mountinfo(v) for v in value.split(":")]
    return dirs


def _under(p: str, top: str) -> bool:
    return p == top or p.startswith(top.rstrip("/") + "/")


def fsync_dir(path: str) -> None:
    """Make a rename or unlink in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
