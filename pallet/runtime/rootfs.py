"""The container's filesystem: mounts, /dev, pivot_root, masked and read-only paths.

Runs inside init, in the container's new mount namespace, before the user's process.
Every destination is resolved with paths.secure_join so nothing lands on the host.
"""

from __future__ import annotations

import errno
import os
import stat

from pallet.errors import InvalidArgument, NotSupported
from pallet.linux import mount as m
from pallet.linux.proc import unescape_mountinfo
from pallet.runtime import mountopts, paths

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType

    from pallet.oci.spec import Device, Mount, Spec

# The devices every container gets (runtime-spec "Default Devices").
DEFAULT_DEVICES = (
    ("/dev/null", "c", 1, 3),
    ("/dev/zero", "c", 1, 5),
    ("/dev/full", "c", 1, 7),
    ("/dev/random", "c", 1, 8),
    ("/dev/urandom", "c", 1, 9),
    ("/dev/tty", "c", 5, 0),
)
DEV_SYMLINKS = (
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
)

# statvfs flags that a bind remount inside a user namespace must keep (the kernel locks
# them): ST_* -> MS_*.
_LOCKED = ((os.ST_NOSUID, m.MS_NOSUID), (os.ST_NODEV, m.MS_NODEV),
           (os.ST_NOEXEC, m.MS_NOEXEC), (os.ST_RDONLY, m.MS_RDONLY),
           (os.ST_NOATIME, m.MS_NOATIME), (os.ST_NODIRATIME, m.MS_NODIRATIME),
           (os.ST_RELATIME, m.MS_RELATIME))


class RootfsError(Exception):
    """A mount step failed; the message names the mount."""


def prepare(spec: Spec, rootfs: str, in_userns: bool,
            cgroup_mounts: list[tuple[str, str, str, str]], cgroupns: bool,
            before_cgroup: Callable[[], None] | None = None,
            idmapped: dict[int, int] | None = None) -> None:
    """Everything before pivot_root: propagation, the rootfs bind and the spec's mounts.

    ``before_cgroup`` is called once, before the first cgroup mount: the container's
    cgroup must exist (and hold this process) by then. ``idmapped`` maps a mount's index
    to the detached, id-mapped tree ``prepare_idmapped`` made for it.
    """
    lx = spec.linux
    prop = lx.rootfs_propagation
    m.mount(None, "/", None, mountopts.PROPAGATION[prop] if prop else m.MS_REC | m.MS_SLAVE)
    if prop in ("shared", "rshared"):
        # pivot_root refuses a new root whose parent mount is shared.
        m.mount(None, _mountpoint_of(rootfs), None, m.MS_PRIVATE)
    m.mount(rootfs, rootfs, None, m.MS_BIND | m.MS_REC)
    # A cgroup mount waits for the parent's cgroup: until then it is put off, and the
    # mounts and devices that neither lie under it nor hold it go ahead meanwhile.
    waiting: list[tuple[int, Mount]] = []

    def mount_waiting() -> None:
        nonlocal before_cgroup
        if before_cgroup is not None:
            before_cgroup()
            before_cgroup = None
        for i, mnt in waiting:
            try:
                _mount_cgroup(rootfs, mnt, cgroup_mounts, cgroupns)
            except OSError as exc:
                raise RootfsError(f"mounts[{i}] ({mnt.destination}): {_describe(exc)}") \
                    from exc
        waiting.clear()

    dev_mounted = False
    for i, mnt in enumerate(spec.mounts):
        if any(_nested(w.destination, mnt.destination) for _, w in waiting):
            mount_waiting()
        if mnt.type == "cgroup" or mnt.type == "cgroup2":
            waiting.append((i, mnt))
            continue
        where = f"mounts[{i}] ({mnt.destination})"
        try:
            _mount_one(rootfs, mnt, in_userns, where, (idmapped or {}).get(i))
        except OSError as exc:
            raise RootfsError(f"{where}: {_describe(exc)}") from exc
        if mnt.destination.rstrip("/") == "/dev":
            dev_mounted = True
    dev = _dev_mount(spec)
    if dev_mounted or dev is None:
        if any(_nested(w.destination, "/dev") for _, w in waiting):
            mount_waiting()
        _make_devices(rootfs, spec.linux.devices, in_userns, bind_dev=_is_bind_dev(dev),
                      fresh=dev is not None and dev.type == "tmpfs")
    mount_waiting()
    if prop:
        m.mount(None, rootfs, None, mountopts.PROPAGATION[prop])


def _nested(a: str, b: str) -> bool:
    """Whether one of two mount destinations is the other or lies under it."""
    a, b = a.rstrip("/") + "/", b.rstrip("/") + "/"
    return a.startswith(b) or b.startswith(a)


def _mountpoint_of(path: str) -> str:
    """The mount point that holds ``path`` (the longest match in mountinfo)."""
    best = "/"
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            mp = unescape_mountinfo(line.split(b" ", 5)[4].decode())
            if (path == mp or path.startswith(mp.rstrip("/") + "/")) and len(mp) > len(best):
                best = mp
    return best


def _describe(exc: OSError) -> str:
    where = f" {exc.filename}" if exc.filename else ""
    if exc.filename2:
        where += f" -> {exc.filename2}"
    return f"{exc.strerror}{where}"


def _dev_mount(spec: Spec) -> Mount | None:
    """The spec's mount on /dev, if any."""
    return next((x for x in spec.mounts if x.destination.rstrip("/") == "/dev"), None)


def _is_bind_dev(dev: Mount | None) -> bool:
    return dev is not None and ("bind" in dev.options or "rbind" in dev.options
                                or dev.type == "bind")


def _mount_one(rootfs: str, mnt: Mount, in_userns: bool, where: str,
               idmapped_tree: int | None = None) -> None:
    opts = mountopts.parse(mnt.options, where)
    is_bind = opts.is_bind or mnt.type == "bind"
    if is_bind:
        src = mnt.source
        if not os.path.exists(src):
            raise InvalidArgument(f"{where}: bind source {src} does not exist")
        if os.path.isdir(src):
            dest = paths.mkdir_all_in(rootfs, mnt.destination)
        else:
            dest = paths.create_file_in(rootfs, mnt.destination)
        if idmapped_tree is not None:
            m.move_mount(idmapped_tree, dest)
        else:
            m.mount(src, dest, None, m.MS_BIND | (opts.flags & m.MS_REC))
        extra = opts.flags & ~(m.MS_BIND | m.MS_REC | m.MS_REMOUNT)
        if extra:
            if in_userns:
                extra |= _locked_flags(dest)
            m.mount(None, dest, None, m.MS_BIND | m.MS_REMOUNT | extra)
    else:
        dest = paths.mkdir_all_in(rootfs, mnt.destination)
        data = ",".join(opts.data)
        if mnt.type == "tmpfs" and "tmpcopyup" in opts.extensions:
            _tmpfs_copyup(dest, opts.flags, data)
        else:
            fstype = mnt.type or None
            if fstype is None:
                raise InvalidArgument(f"{where}: type is required for a mount that is not a bind")
            flags = opts.flags
            if mnt.type in ("sysfs", "proc") and in_userns:
                flags &= ~m.MS_RDONLY  # remounted read-only below; some kernels refuse at mount
            try:
                m.mount(mnt.source or mnt.type, dest, fstype, flags, data)
            except OSError as exc:
                if mnt.type == "sysfs" and exc.errno == errno.EPERM:
                    # Without its own network namespace sysfs cannot be mounted: bind
                    # the host's, read-only, as runc does.
                    m.mount("/sys", dest, None, m.MS_BIND | m.MS_REC)
                    m.mount(None, dest, None, m.MS_BIND | m.MS_REMOUNT | m.MS_RDONLY
                            | _locked_flags(dest))
                elif mnt.type == "mqueue" and exc.errno == errno.EPERM:
                    m.mount("/dev/mqueue", dest, None, m.MS_BIND | m.MS_REC)
                else:
                    raise
            if flags != opts.flags:
                # A bind remount: per-mount read-only; the superblock may not be ours to change.
                m.mount(None, dest, None, m.MS_BIND | m.MS_REMOUNT | opts.flags)
    for prop in opts.propagation:
        m.mount(None, dest, None, prop)
    if opts.attr_set or opts.attr_clr:
        m.mount_setattr(dest, opts.attr_set, opts.attr_clr, recursive=True)


def _locked_flags(path: str) -> int:
    st = os.statvfs(path)
    flags = 0
    for st_flag, ms_flag in _LOCKED:
        if st.f_flag & st_flag:
            flags |= ms_flag
    return flags


def _tmpfs_copyup(dest: str, flags: int, data: str) -> None:
    """Mount a tmpfs over ``dest`` that starts with a copy of what the image had there."""
    import shutil

    staging = dest + ".pallet-copyup"
    os.mkdir(staging, 0o700)
    try:
        m.mount("tmpfs", staging, "tmpfs", flags, data)
        for name in os.listdir(dest):
            src = os.path.join(dest, name)
            if os.path.isdir(src) and not os.path.islink(src):
                shutil.copytree(src, os.path.join(staging, name), symlinks=True)
            else:
                shutil.copy2(src, os.path.join(staging, name), follow_symlinks=False)
        m.mount(staging, dest, None, m.MS_MOVE)
    finally:
        os.rmdir(staging)


def prepare_idmapped(spec: Spec) -> dict[int, int]:
    """Detached id-mapped trees for the mounts with uid/gidMappings, by mount index.

    Made by the runtime before the clone: describing a mapping takes a helper process in
    a user namespace, and only outside the container's pid namespace does /proc name
    that helper by its pid. init attaches each tree where it belongs (move_mount).
    """
    from pallet.runtime import userns

    trees: dict[int, int] = {}
    try:
        for i, mnt in enumerate(spec.mounts):
            if not mnt.uid_mappings:
                continue
            opts = mountopts.parse(mnt.options, f"mounts[{i}]")
            if not (opts.is_bind or mnt.type == "bind"):
                raise InvalidArgument(f"mounts[{i}]: uidMappings need a bind mount")
            trees[i] = _idmapped_tree(mnt, recursive=bool(opts.flags & m.MS_REC),
                                      rid="ridmap" in opts.extensions, mapper=userns)
    except BaseException:
        for fd in trees.values():
            os.close(fd)
        raise
    return trees


def _idmapped_tree(mnt: Mount, recursive: bool, rid: bool, mapper: ModuleType) -> int:
    """A bind mount with its own id mapping (mount_setattr MOUNT_ATTR_IDMAP, Linux 5.12)."""
    src = mnt.source
    try:
        fd = m.open_tree(src, m.OPEN_TREE_CLONE | m.OPEN_TREE_CLOEXEC
                         | (m.AT_RECURSIVE if recursive else 0))
    except FileNotFoundError:
        raise InvalidArgument(f"mount {mnt.destination}: bind source {src} does not exist") \
            from None
    try:
        nsfd = mapper.mapped_namespace_fd(mnt.uid_mappings, mnt.gid_mappings)
        try:
            m.mount_setattr_idmap(fd, nsfd, recursive=rid)
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.ENOSYS, errno.EPERM):
                raise NotSupported(
                    f"idmapped mount of {src}: the kernel or filesystem refused it ({exc.strerror})"
                ) from exc
            raise
        finally:
            os.close(nsfd)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _mount_cgroup(rootfs: str, mnt: Mount, cgroup_mounts: list[tuple[str, str, str, str]],
                  cgroupns: bool) -> None:
    """/sys/fs/cgroup in the container: the container's own cgroups, nothing above them."""
    opts = mountopts.parse(mnt.options)
    flags = opts.flags & ~(m.MS_BIND | m.MS_REC) | m.MS_NOSUID | m.MS_NODEV | m.MS_NOEXEC
    dest = paths.mkdir_all_in(rootfs, mnt.destination)
    v2_only = len(cgroup_mounts) == 1 and cgroup_mounts[0][0] == ""
    if not v2_only:
        m.mount("tmpfs", dest, "tmpfs", m.MS_NOSUID | m.MS_NODEV | m.MS_NOEXEC, "mode=755")
    for sub, fstype, data, host_dir in cgroup_mounts:
        target = paths.mkdir_all_in(rootfs, os.path.join(mnt.destination, sub)) if sub else dest
        if cgroupns:
            m.mount("cgroup", target, fstype, flags, data)
        else:
            m.mount(host_dir, target, None, m.MS_BIND | m.MS_REC)
            m.mount(None, target, None, m.MS_BIND | m.MS_REMOUNT | flags)
        if sub and "," in data:  # cpu,cpuacct: the usual per-controller links
            for name in data.split(","):
                if name != sub and not name.startswith("name="):
                    link = os.path.join(dest, name)
                    if not os.path.lexists(link):
                        os.symlink(sub, link)
    if not v2_only and flags & m.MS_RDONLY:
        m.mount(None, dest, None, m.MS_REMOUNT | m.MS_BIND | flags)


def _make_devices(rootfs: str, devices: list[Device], in_userns: bool, bind_dev: bool,
                  fresh: bool = False) -> None:
    """The spec's devices and the default ones, and /dev's links. ``fresh``: /dev is
    the empty tmpfs just mounted, where nothing can be a symlink yet: a node directly
    in it needs no resolving."""
    if bind_dev:
        return
    dev = paths.mkdir_all_in(rootfs, "/dev")
    seen = set()
    for d in devices:
        _make_device(rootfs, d.path, d.type, d.major, d.minor, d.file_mode, d.uid, d.gid, in_userns)
        seen.add(d.path)
    old = os.umask(0)
    try:
        for path, kind, major, minor in DEFAULT_DEVICES:
            if path in seen:
                continue
            if fresh and not in_userns:
                os.mknod(os.path.join(dev, os.path.basename(path)), stat.S_IFCHR | 0o666,
                         os.makedev(major, minor))  # root-owned already
            else:
                _make_device(rootfs, path, kind, major, minor, 0o666, 0, 0, in_userns)
    finally:
        os.umask(old)
    for target, link in DEV_SYMLINKS:
        _symlink(target, os.path.join(dev, os.path.basename(link)) if fresh
                 else paths.secure_join(rootfs, link))
    if os.path.exists("/proc/kcore"):
        _symlink("/proc/kcore", os.path.join(dev, "core"))
    ptmx = os.path.join(dev, "ptmx")
    if os.path.isdir(os.path.join(dev, "pts")) and not os.path.lexists(ptmx):
        _symlink("pts/ptmx", ptmx)


def _symlink(target: str, path: str) -> None:
    try:
        os.symlink(target, path)
    except FileExistsError:
        pass


def _make_device(rootfs: str, path: str, kind: str, major: int, minor: int,
                 mode: int | None, uid: int | None, gid: int | None, in_userns: bool) -> None:
    dest = paths.secure_join(rootfs, path)
    paths.mkdir_all_in(rootfs, os.path.dirname(path))
    if in_userns:
        # mknod is not allowed in a user namespace: bind the host's node instead.
        if not os.path.lexists(dest):
            os.close(os.open(dest, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644))
        m.mount(path, dest, None, m.MS_BIND)
        return
    fmt = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[kind]
    perm = 0o666 if mode is None else mode & 0o7777
    try:
        os.unlink(dest)
    except FileNotFoundError:
        pass
    old = os.umask(0)
    try:
        os.mknod(dest, fmt | perm, os.makedev(major, minor))
    finally:
        os.umask(old)
    os.chown(dest, uid or 0, gid or 0)


def pivot(rootfs: str, no_pivot: bool) -> None:
    """Make ``rootfs`` the root: pivot_root(".", ".") then detach the old root."""
    os.chdir(rootfs)
    if no_pivot:
        m.mount(rootfs, "/", None, m.MS_MOVE)
        os.chroot(".")
        os.chdir("/")
        return
    old = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        m.pivot_root(".", ".")
        # The old root is now stacked under "."; make it a slave so the detach below
        # does not propagate unmounts back to the host.
        os.fchdir(old)
        m.mount(None, ".", None, m.MS_SLAVE | m.MS_REC)
        m.umount(".", m.MNT_DETACH)
    finally:
        os.close(old)
    os.chdir("/")


def finish(spec: Spec) -> None:
    """After pivot_root: masked and read-only paths, a read-only root."""
    lx = spec.linux
    for p in lx.masked_paths:
        _mask(p)
    for p in lx.readonly_paths:
        _readonly(p)
    if spec.root is not None and spec.root.readonly:
        m.mount(None, "/", None, m.MS_BIND | m.MS_REMOUNT | m.MS_RDONLY | _locked_flags("/"))


def _mask(path: str) -> None:
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return
    if stat.S_ISDIR(st.st_mode):
        m.mount("tmpfs", path, "tmpfs", m.MS_RDONLY, "")
    else:
        m.mount("/dev/null", path, None, m.MS_BIND)


def _readonly(path: str) -> None:
    try:
        m.mount(path, path, None, m.MS_BIND | m.MS_REC)
    except FileNotFoundError:
        return
    m.mount(None, path, None, m.MS_BIND | m.MS_REMOUNT | m.MS_RDONLY | m.MS_REC
            | _locked_flags(path))
