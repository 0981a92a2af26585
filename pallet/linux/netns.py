"""Network namespaces kept alive as bind-mounted files, as `ip netns` keeps them.

The calling process never changes namespace: each operation that must be inside one
runs in a fresh thread that enters it (setns and unshare of CLONE_NEWNET act on the
calling thread only) and then ends, so no thread of a pool is ever left in a foreign
namespace. A socket opened in such a thread stays in that namespace for its life.

    create(path)            thread: unshare(NEWNET) -> bind /proc/thread-self/ns/net
                                    onto path -> lo up -> thread ends; the netns lives on
    run_in(path, fn)        thread: setns(path) -> fn() -> result or exception handed back
    remove(path)            umount(MNT_DETACH) + unlink: the netns dies with its last user

The directory holding the files is made a private bind mount of itself (once), so a
netns mount is never propagated into, or held alive by, another mount namespace's copy
of a shared parent. When the last file in it is removed that bind goes again, so a
daemon that ran no container leaves no mount behind.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable
from typing import TypeVar

from pallet.linux.mount import MNT_DETACH, MS_BIND, MS_PRIVATE, mount, umount
from pallet.linux.netlink import RtNetlink
from pallet.linux.sched import CLONE_NEWNET, setns, unshare

T = TypeVar("T")

# Serializes the directory's bind with the files' mounts: a lazy unmount of the
# directory would take a netns mounted under it at the same moment with it.
_lock = threading.Lock()
_private_dirs: set[str] = set()


def create(path: str) -> None:
    """A new network namespace bind-mounted at ``path`` (a new file; its directory is
    created 0700 if missing), with its loopback up. FileExistsError if ``path`` exists."""
    path = _resolved(path)
    directory = os.path.dirname(path)
    with _lock:
        _make_private(directory)
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444))
        try:
            _in_thread(lambda: _new_netns_at(path))
        except BaseException:
            _remove_locked(path)
            raise


def remove(path: str) -> None:
    """Unmount and delete a namespace file; nothing happens if it is gone already."""
    path = _resolved(path)
    with _lock:
        _remove_locked(path)


def run_in(path: str, fn: Callable[[], T]) -> T:
    """``fn()`` in a fresh thread inside the namespace at ``path``: its result, or its
    exception raised here."""
    fd = fd_of(path)
    try:
        return run_in_fd(fd, fn)
    finally:
        os.close(fd)


def run_in_fd(fd: int, fn: Callable[[], T]) -> T:
    """run_in for a namespace already open as ``fd``."""

    def enter_and_run() -> T:
        setns(fd, CLONE_NEWNET)
        return fn()

    return _in_thread(enter_and_run)


def fd_of(path: str) -> int:
    """An O_RDONLY|O_CLOEXEC descriptor of the namespace file; the caller closes it."""
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


# --- inside the threads -------------------------------------------------------------------


def _new_netns_at(path: str) -> None:
    unshare(CLONE_NEWNET)
    mount("/proc/thread-self/ns/net", path, None, MS_BIND)
    with RtNetlink() as nl:
        lo = nl.link_index("lo")
        if lo is not None:
            nl.link_set(lo, up=True)


def _in_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` in a new thread that ends with it; hand back its result or exception."""
    result: list[T] = []
    failure: list[BaseException] = []

    def body() -> None:
        try:
            result.append(fn())
        except BaseException as exc:  # handed to the caller, who raises it
            failure.append(exc)

    thread = threading.Thread(target=body, name="netns", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


# --- the directory ------------------------------------------------------------------------


def _resolved(path: str) -> str:
    """``path`` with its directory's symlinks resolved (/var/run -> /run), as mountinfo
    shows mount points."""
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(os.path.realpath(directory), name)


def _remove_locked(path: str) -> None:
    try:
        umount(path, MNT_DETACH)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOENT):  # not mounted; no such file
            raise
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    _release_if_empty(os.path.dirname(path))


def _make_private(directory: str) -> None:
    if directory in _private_dirs:
        return
    os.makedirs(directory, mode=0o700, exist_ok=True)
    if _mount_root_at(directory) is None:
        mount(directory, directory, None, MS_BIND)
        mount(None, directory, None, MS_PRIVATE)
    _private_dirs.add(directory)


def _release_if_empty(directory: str) -> None:
    """Drop the directory's self-bind once no namespace file is left in it. Only a bind
    (a mount whose root is not its filesystem's root) is ours to drop; a filesystem that
    someone mounted there stays."""
    try:
        if os.listdir(directory):
            return
    except FileNotFoundError:
        _private_dirs.discard(directory)
        return
    root = _mount_root_at(directory)
    if root is not None and root != "/":
        umount(directory, MNT_DETACH)
    _private_dirs.discard(directory)


def _mount_root_at(directory: str) -> str | None:
    """The root (field 4 of mountinfo) of the topmost mount at ``directory``, or None when
    nothing is mounted there."""
    found = None
    with open("/proc/thread-self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.split(" ", 5)
            if _unescape(fields[4]) == directory:
                found = _unescape(fields[3])
    return found


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    if "\\" not in field:
        return field
    return (field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")
            .replace("\\134", "\\"))
