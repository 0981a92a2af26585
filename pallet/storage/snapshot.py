"""Snapshots: the writable root filesystem of a container, made from an image's layer dirs.

Two drivers behind one interface, chosen once per data root by choose_driver():

- ``overlay``: the layers are overlayfs lowerdirs under a fresh upper/work pair. Mounted
  with the new mount API, one ``lowerdir+`` per layer, so an image may have more layers
  than fit in the single page of options mount(2) takes.
- ``copy``: the layers are copied, bottom first, into one directory that is bind-mounted.
  Slow and disk-hungry, but correct on any filesystem.

Layers come in overlay form (what the layer store writes): a 0:0 character device is a
whiteout that deletes the path below it; a directory with ``trusted.overlay.opaque=y``
hides everything below it. Layer lists are given top layer first, as overlay wants them.

Layout under the driver's root::

    snapshots/<key>/upper, work, merged     overlay: the container's writes, overlay's
                                            scratch dir, and the usual mount point
    snapshots/<key>/rootfs, merged          copy: the merged copy and the mount point
    readonly/<hash of target>/              copy: a read-only view's copy while mounted
    probe-*/                                choose_driver()'s trial mount, while it runs
"""

from __future__ import annotations

import abc
import errno
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

from pallet.errors import (
    Conflict,
    InvalidArgument,
    InvalidState,
    NotFound,
    NotSupported,
    SystemFailure,
)
from pallet.linux import fsmount
from pallet.linux.mount import (
    MNT_DETACH,
    MOUNT_ATTR_RDONLY,
    MS_BIND,
    MS_RDONLY,
    MS_REMOUNT,
    mount,
    umount,
)
from pallet.storage import tree

__all__ = [
    "CopyDriver", "Mount", "OverlayDriver", "Snapshotter", "choose_driver", "overlay_data",
    "probe_overlay", "validate_key",
]

_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def validate_key(key: str) -> str:
    """``key`` if it can name a snapshot directory (no '/', no '..', at most 128 chars)."""
    if not _KEY.fullmatch(key):
        raise InvalidArgument(f"invalid snapshot key {key!r}: want [A-Za-z0-9][A-Za-z0-9_.-]*",
                              op="snapshot", obj=key)
    return key


@dataclass(frozen=True)
class Mount:
    """What a prepared snapshot is made of, and where it mounts by default."""

    driver: str  # "overlay" or "copy"
    key: str
    lowers: tuple[str, ...]  # layer dirs, top first ("copy": already copied into upper)
    upper: str  # where the container's writes land ("copy": the whole rootfs copy)
    work: str  # overlay's work dir; "" for copy
    merged: str  # the snapshot's own mount point, the default target of mount()


def overlay_data(lowers: Sequence[str], upper: str = "", work: str = "") -> str:
    """The mount(2) option string for an overlay of ``lowers`` (top first)."""
    opts = ["lowerdir=" + ":".join(_escape(d) for d in lowers)]
    if upper:
        opts += [f"upperdir={_escape(upper)}", f"workdir={_escape(work)}"]
    return ",".join(opts)


def _escape(path: str) -> str:
    # overlay splits options at ',' and layers at ':'; a backslash escapes either.
    return re.sub(r"([\\:,])", r"\\\1", path)


class Snapshotter(abc.ABC):
    """One data root's snapshots. Drivers keep no state besides their directories."""

    name = ""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)

    def path(self, key: str) -> str:
        """The directory that holds snapshot ``key``."""
        return os.path.join(self.root, "snapshots", validate_key(key))

    def keys(self) -> list[str]:
        """The snapshots that exist, sorted."""
        try:
            return sorted(os.listdir(os.path.join(self.root, "snapshots")))
        except FileNotFoundError:
            return []

    @abc.abstractmethod
    def prepare(self, key: str, lowers: Sequence[str]) -> Mount:
        """Make snapshot ``key`` over layer dirs ``lowers`` (top first); Conflict if it exists."""

    @abc.abstractmethod
    def mount(self, key: str, lowers: Sequence[str], target: str | None = None) -> None:
        """Mount snapshot ``key`` read-write at ``target`` (default: its ``merged`` dir).

        ``lowers`` must be the list prepare() was given.
        """

    @abc.abstractmethod
    def mount_readonly(self, lowers: Sequence[str], target: str) -> None:
        """Mount the merged view of ``lowers`` (top first) read-only at ``target``."""

    @abc.abstractmethod
    def usage(self, key: str) -> int:
        """Bytes the snapshot's own files take (hard links counted once)."""

    def unmount(self, target: str) -> None:
        """Detach whatever mount() or mount_readonly() put on ``target``."""
        try:
            umount(target, MNT_DETACH)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                raise NotFound(f"no mount point {target}", op="unmount", obj=target) from exc
            if exc.errno == errno.EINVAL:
                raise InvalidState(f"{target} is not mounted", op="unmount", obj=target,
                                   state="unmounted") from exc
            raise _failure("unmount", target, exc) from exc

    def remove(self, key: str) -> None:
        """Delete snapshot ``key``: its own mount point is unmounted first; Conflict if
        it is still mounted anywhere else."""
        where = self.path(key)
        if not os.path.isdir(where):
            raise NotFound(f"no snapshot {key}", op="remove", obj=key)
        inside, elsewhere = tree.mounts_using(where)
        if elsewhere:
            raise Conflict(f"snapshot {key} is mounted at {elsewhere[0]}", op="remove", obj=key)
        try:
            for point in inside:  # deepest first
                umount(point, MNT_DETACH)
            tree.remove(where)
        except OSError as exc:
            raise _failure("remove", key, exc) from exc

    def _new(self, key: str) -> str:
        where = self.path(key)
        os.makedirs(os.path.dirname(where), mode=0o700, exist_ok=True)
        try:
            os.mkdir(where, 0o700)  # the claim: two prepares of one key cannot both win
        except FileExistsError as exc:
            raise Conflict(f"snapshot {key} exists", op="prepare", obj=key) from exc
        return where

    def _existing(self, key: str) -> str:
        where = self.path(key)
        if not os.path.isdir(where):
            raise NotFound(f"no snapshot {key}", op="mount", obj=key)
        return where


def _check_lowers(lowers: Sequence[str]) -> tuple[str, ...]:
    for d in lowers:
        if not os.path.isabs(d):
            raise InvalidArgument(f"layer dir {d!r} is not absolute", op="snapshot", obj=d)
        if not os.path.isdir(d):
            raise NotFound(f"no layer dir {d}", op="snapshot", obj=d)
    return tuple(lowers)


def _failure(op: str, obj: str, exc: OSError) -> SystemFailure | NotFound | Conflict:
    if exc.errno == errno.ENOENT:
        return NotFound(f"{op} {obj}: {exc.strerror}: {exc.filename}", op=op, obj=obj)
    if exc.errno == errno.EBUSY:
        return Conflict(f"{op} {obj}: {exc.strerror}", op=op, obj=obj)
    return SystemFailure(f"{op} {obj}: {exc.strerror or exc}", op=op, obj=obj,
                         errno=exc.errno or 0, path=str(exc.filename or ""))


def _bind(source: str, target: str, readonly: bool) -> None:
    mount(source, target, None, MS_BIND)
    if readonly:  # MS_RDONLY is ignored on the first bind; it takes a remount
        try:
            mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
        except OSError:
            umount(target, MNT_DETACH)  # never leave it writable
            raise


class OverlayDriver(Snapshotter):
    name = "overlay"

    def prepare(self, key: str, lowers: Sequence[str]) -> Mount:
        layers = _check_lowers(lowers)
        where = self._new(key)
        m = self._describe(key, where, layers)
        for d in (m.upper, m.merged):
            os.mkdir(d, 0o755)  # the upper's root is the container's "/"
        os.mkdir(m.work, 0o700)
        return m

    def mount(self, key: str, lowers: Sequence[str], target: str | None = None) -> None:
        m = self._describe(key, self._existing(key), _check_lowers(lowers))
        target = target or m.merged
        try:
            if not m.lowers:  # overlay wants a lower; an image with no layers has none
                _bind(m.upper, target, readonly=False)
            else:
                _mount_overlay(m.lowers, m.upper, m.work, target)
        except OSError as exc:
            raise _failure("mount", key, exc) from exc

    def mount_readonly(self, lowers: Sequence[str], target: str) -> None:
        layers = _check_lowers(lowers)
        try:
            if not layers:
                raise InvalidArgument("a read-only view needs a layer", op="mount", obj=target)
            if len(layers) == 1:  # overlay refuses one lower without an upper
                _bind(layers[0], target, readonly=True)
            else:
                _mount_overlay(layers, "", "", target)
        except OSError as exc:
            raise _failure("mount", target, exc) from exc

    def usage(self, key: str) -> int:
        return tree.usage(os.path.join(self._existing(key), "upper"))

    def _describe(self, key: str, where: str, lowers: tuple[str, ...]) -> Mount:
        return Mount(self.name, key, lowers, os.path.join(where, "upper"),
                     os.path.join(where, "work"), os.path.join(where, "merged"))


def _mount_overlay(lowers: Sequence[str], upper: str, work: str, target: str) -> None:
    """Mount an overlay (read-only when there is no upper) with the new mount API, or with
    mount(2) on kernels without ``lowerdir+`` (before 6.8) when the options fit a page."""
    try:
        fd = fsmount.fsopen("overlay")
    except OSError as exc:
        if exc.errno != errno.ENOSYS:
            raise
        return _mount_overlay_classic(lowers, upper, work, target)
    try:
        fsmount.fsconfig_set_string(fd, "source", "overlay")
        try:
            _set_dir(fd, "lowerdir+", lowers[0])
        except OSError as exc:
            if exc.errno != errno.EINVAL or "Unknown parameter" not in str(exc):
                raise
            return _mount_overlay_classic(lowers, upper, work, target)
        for d in lowers[1:]:
            _set_dir(fd, "lowerdir+", d)
        if upper:
            _set_dir(fd, "upperdir", upper)
            _set_dir(fd, "workdir", work)
        fsmount.fsconfig_create(fd)
        mnt = fsmount.fsmount(fd, fsmount.FSMOUNT_CLOEXEC,
                              0 if upper else MOUNT_ATTR_RDONLY)
        try:
            fsmount.move_mount(mnt, target)
        finally:
            os.close(mnt)
    finally:
        os.close(fd)
    return None


def _set_dir(fd: int, key: str, path: str) -> None:
    if len(path.encode()) <= fsmount.STRING_MAX:
        fsmount.fsconfig_set_string(fd, key, path)
        return
    # Too long for a string parameter: give the kernel the open directory instead
    # (FSCONFIG_SET_FD, Linux 6.13), or on older kernels its /proc/self/fd link.
    dfd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fsmount.fsconfig_set_fd(fd, key, dfd)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            fsmount.fsconfig_set_string(fd, key, f"/proc/self/fd/{dfd}")
    finally:
        os.close(dfd)


def _mount_overlay_classic(lowers: Sequence[str], upper: str, work: str, target: str) -> None:
    data = overlay_data(lowers, upper, work)
    if len(data.encode()) >= PAGE_SIZE:
        raise NotSupported(
            f"overlay of {len(lowers)} layers at {target}: {len(data.encode())} bytes of mount "
            f"options exceed one page ({PAGE_SIZE}) and this kernel has no lowerdir+ (Linux 6.8)",
            op="mount", obj=target)
    mount("overlay", target, "overlay", 0 if upper else MS_RDONLY, data)


class CopyDriver(Snapshotter):
    name = "copy"

    def prepare(self, key: str, lowers: Sequence[str]) -> Mount:
        layers = _check_lowers(lowers)
        where = self._new(key)
        m = self._describe(key, where, layers)
        try:
            os.mkdir(m.merged, 0o755)
            _merge_copy(layers, m.upper)
        except BaseException as exc:
            tree.remove(where)  # a half-made copy is worth nothing
            if isinstance(exc, OSError):
                raise _failure("prepare", key, exc) from exc
            raise
        return m

    def mount(self, key: str, lowers: Sequence[str], target: str | None = None) -> None:
        # The layers were copied by prepare(); lowers is only checked, as overlay does.
        m = self._describe(key, self._existing(key), _check_lowers(lowers))
        try:
            _bind(m.upper, target or m.merged, readonly=False)
        except OSError as exc:
            raise _failure("mount", key, exc) from exc

    def mount_readonly(self, lowers: Sequence[str], target: str) -> None:
        layers = _check_lowers(lowers)
        if not layers:
            raise InvalidArgument("a read-only view needs a layer", op="mount", obj=target)
        if not os.path.isdir(target):
            raise NotFound(f"no mount point {target}", op="mount", obj=target)
        copy = self._readonly_copy(target)
        os.makedirs(os.path.dirname(copy), mode=0o700, exist_ok=True)
        try:
            os.mkdir(copy, 0o755)
        except FileExistsError as exc:
            raise Conflict(f"{target} has a read-only view already", op="mount",
                           obj=target) from exc
        try:
            _merge_copy(layers, copy)
            _bind(copy, target, readonly=True)
        except BaseException as exc:
            tree.remove(copy)
            if isinstance(exc, OSError):
                raise _failure("mount", target, exc) from exc
            raise

    def unmount(self, target: str) -> None:
        super().unmount(target)
        copy = self._readonly_copy(target)
        if os.path.isdir(copy):
            tree.remove(copy)

    def usage(self, key: str) -> int:
        # Every byte of the copy is this container's: nothing is shared with the image.
        return tree.usage(os.path.join(self._existing(key), "rootfs"))

    def _describe(self, key: str, where: str, lowers: tuple[str, ...]) -> Mount:
        return Mount(self.name, key, lowers, os.path.join(where, "rootfs"), "",
                     os.path.join(where, "merged"))

    def _readonly_copy(self, target: str) -> str:
        # Named after the target, so unmount(target) finds it without any record.
        name = hashlib.sha256(os.path.realpath(target).encode()).hexdigest()[:32]
        return os.path.join(self.root, "readonly", name)


def _merge_copy(lowers: Sequence[str], dest: str) -> None:
    if not os.path.isdir(dest):
        os.mkdir(dest, 0o755)
    for layer in reversed(lowers):  # bottom first: each layer lands on those below it
        tree.apply_layer(layer, dest)


def probe_overlay(root: str) -> None:
    """Raise NotSupported unless an overlay with its upper under ``root`` mounts and makes
    whiteouts (a kernel without overlay, overlay or NFS under root, no permission...)."""
    os.makedirs(root, mode=0o700, exist_ok=True)
    probe = tempfile.mkdtemp(prefix="probe-", dir=root)
    try:
        lower, upper, work, merged = (os.path.join(probe, n)
                                      for n in ("lower", "upper", "work", "merged"))
        for d in (lower, upper, work, merged):
            os.mkdir(d)
        with open(os.path.join(lower, "f"), "w"):
            pass
        _mount_overlay([lower], upper, work, merged)
        try:
            os.unlink(os.path.join(merged, "f"))
        finally:
            umount(merged, MNT_DETACH)
        st = os.lstat(os.path.join(upper, "f"))
        if not tree.is_whiteout(st):
            raise NotSupported(f"overlay on {root} does not make 0:0 whiteouts", op="probe",
                               obj=root)
    except OSError as exc:
        raise NotSupported(f"overlay on {root}: {exc.strerror or exc}", op="probe",
                           obj=root) from exc
    finally:
        tree.remove(probe)


# The mount points the runtime binds files over, which dockerd keeps in a per-container
# "-init" layer. One directory serves every container (it never changes) as the top
# lower of its root: the runtime finds them there instead of creating them in the
# container's upper dir, so they are no change of the container (diff, commit, a
# build step's layer) and no copy-up at start.
INIT_LAYER_FILES = ("etc/hostname", "etc/hosts", "etc/resolv.conf")


def init_layer(path: str) -> str:
    """The init layer at ``path``, made if missing (idempotent, safe to race)."""
    if all(os.path.isfile(os.path.join(path, f)) for f in INIT_LAYER_FILES):
        return path
    tmp = f"{path}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.join(tmp, "etc"), mode=0o755)
    os.chmod(tmp, 0o755)
    for name in INIT_LAYER_FILES:
        os.close(os.open(os.path.join(tmp, name), os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC,
                         0o644))
    try:
        os.rename(tmp, path)
    except OSError:  # made meanwhile (or an old, partial one: replace it)
        shutil.rmtree(path, ignore_errors=True)
        os.rename(tmp, path)
    return path


def choose_driver(root: str, name: str | None = None,
                  filesystems: str = "/proc/filesystems") -> Snapshotter:
    """The snapshot driver for data root ``root``: ``name`` if given ("overlay" raises
    NotSupported where overlay cannot work), else overlay where it works, else copy."""
    if name == CopyDriver.name:
        return CopyDriver(root)
    if name not in (None, OverlayDriver.name):
        raise InvalidArgument(f"unknown snapshot driver {name!r}", op="choose", obj=str(name))
    with open(filesystems) as f:
        has_overlay = any(line.split()[-1:] == ["overlay"] for line in f)
    try:
        if not has_overlay:
            raise NotSupported("the kernel has no overlay filesystem", op="probe", obj=root)
        probe_overlay(root)
    except NotSupported:
        if name == OverlayDriver.name:
            raise
        return CopyDriver(root)
    return OverlayDriver(root)
