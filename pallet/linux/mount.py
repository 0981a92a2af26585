"""mount(2), umount2(2), pivot_root(2) and the new mount API (open_tree, mount_setattr)."""

from __future__ import annotations

import os

from pallet.linux import ffi
from pallet.linux.libc import (
    SYS_mount_setattr,
    SYS_move_mount,
    SYS_open_tree,
    SYS_pivot_root,
    check,
    libc,
    syscall,
    syscall_fn,
)

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_POSIXACL = 0x10000
MS_UNBINDABLE = 0x20000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MS_RELATIME = 0x200000
MS_I_VERSION = 0x800000
MS_STRICTATIME = 0x1000000
MS_LAZYTIME = 0x2000000

MS_PROPAGATION = MS_SHARED | MS_SLAVE | MS_PRIVATE | MS_UNBINDABLE

MNT_FORCE = 1
MNT_DETACH = 2
MNT_EXPIRE = 4
UMOUNT_NOFOLLOW = 8

# open_tree / move_mount / mount_setattr
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
AT_FDCWD = -100
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_IDMAP = 0x100000

_mount = libc.function("mount", [ffi.c_char_p, ffi.c_char_p, ffi.c_char_p, ffi.c_ulong,
                                 ffi.c_char_p])
_umount2 = libc.function("umount2", [ffi.c_char_p, ffi.c_int])


def mount(
    source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None
) -> None:
    check(
        _mount(
            source.encode() if source is not None else None,
            target.encode(),
            fstype.encode() if fstype is not None else None,
            flags,
            data.encode() if data else None,
        ),
        "mount",
        source,
        target,
    )


def umount(target: str, flags: int = 0) -> None:
    check(_umount2(target.encode(), flags), "umount", target)


def pivot_root(new_root: str, put_old: str) -> None:
    check(syscall(SYS_pivot_root, new_root.encode(), put_old.encode()), "pivot_root", new_root)


class _MountAttr(ffi.Structure):
    _fields_ = [
        ("attr_set", ffi.c_uint64),
        ("attr_clr", ffi.c_uint64),
        ("propagation", ffi.c_uint64),
        ("userns_fd", ffi.c_uint64),
    ]


def open_tree(path: str, flags: int) -> int:
    return check(syscall(SYS_open_tree, AT_FDCWD, path.encode(), flags), "open_tree", path)


def mount_setattr_idmap(tree_fd: int, userns_fd: int, recursive: bool) -> None:
    """Attach an id mapping (the user namespace ``userns_fd``) to a detached mount."""
    attr = _MountAttr(MOUNT_ATTR_IDMAP, 0, 0, userns_fd)
    flags = AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0)
    ret = syscall_fn(
        ffi.c_long(SYS_mount_setattr), ffi.c_int(tree_fd), b"", ffi.c_uint(flags),
        ffi.byref(attr), ffi.c_size_t(ffi.sizeof(attr)),
    )
    check(ret, "mount_setattr")


def move_mount(tree_fd: int, target: str) -> None:
    ret = syscall(SYS_move_mount, tree_fd, b"", AT_FDCWD, target.encode(), MOVE_MOUNT_F_EMPTY_PATH)
    check(ret, "move_mount", target)


MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR__ATIME = 0x70
MOUNT_ATTR_RELATIME = 0x0
MOUNT_ATTR_NOATIME = 0x10
MOUNT_ATTR_STRICTATIME = 0x20
MOUNT_ATTR_NODIRATIME = 0x80
MOUNT_ATTR_NOSYMFOLLOW = 0x200000


def mount_setattr(path: str, attr_set: int, attr_clr: int, recursive: bool = True) -> None:
    """Change the attributes of the mount at ``path`` (and every mount below it)."""
    attr = _MountAttr(attr_set, attr_clr, 0, 0)
    ret = syscall_fn(
        ffi.c_long(SYS_mount_setattr), ffi.c_int(AT_FDCWD), path.encode(),
        ffi.c_uint(AT_RECURSIVE if recursive else 0), ffi.byref(attr),
        ffi.c_size_t(ffi.sizeof(attr)),
    )
    check(ret, "mount_setattr", path)
