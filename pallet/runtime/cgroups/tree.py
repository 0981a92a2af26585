"""Making and removing a container's cgroup directories in one hierarchy."""

from __future__ import annotations

import errno
import os
import time

from pallet.errors import Conflict, InvalidArgument, NotFound, SystemFailure

from . import fs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

DEFAULT_PARENT = "pallet"  # the parent of containers' cgroups unless the spec says

# How long remove() waits for processes that are still exiting (EBUSY), ~1 s in all.
RMDIR_DELAYS: tuple[float, ...] = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.3)


def mkdirs(mountpoint: str, leaf: str) -> list[str]:
    """mkdir -p from below ``mountpoint`` down to ``leaf``; returns the dirs it made."""
    parts = leaf[len(mountpoint) :].strip("/").split("/")
    made: list[str] = []
    for _attempt in range(5):
        current = mountpoint
        try:
            for part in parts:
                current = f"{current}/{part}"
                if fs.mkdir(current) and current not in made:
                    made.append(current)
            return made
        except FileNotFoundError:
            # A concurrent destroy() removed an empty shared parent between our mkdirs.
            continue
        except OSError as exc:
            raise fs.path_error(exc, current, "mkdir") from exc
    if not os.path.isdir(mountpoint):
        raise NotFound(f"cgroups: {mountpoint} is not mounted", op="create", obj=leaf)
    raise Conflict(f"cgroups: {leaf}: its parent kept disappearing", op="create", obj=leaf)


def enable_controllers(mountpoint: str, leaf: str, wanted: frozenset[str] | None) -> None:
    """Enable controllers in every ancestor's cgroup.subtree_control so the leaf gets them.

    ``wanted`` None means all each parent offers (a v2 host, as runc does). Best effort by
    design: a parent that refuses (EBUSY: it holds processes; EINVAL: e.g. real-time tasks
    vs cpu) leaves the controller off, and apply() reports NotSupported naming the
    controller only if a limit needs it. The leaf itself enables nothing: cgroup v2 lets
    only cgroups without processes distribute controllers.
    """
    parent = mountpoint
    for part in leaf[len(mountpoint) :].strip("/").split("/"):
        _enable_in(parent, wanted)
        parent = f"{parent}/{part}"


def _enable_in(directory: str, wanted: frozenset[str] | None) -> None:
    offered = set((fs.read_opt(directory, "cgroup.controllers") or "").split())
    enabled = set((fs.read_opt(directory, "cgroup.subtree_control") or "").split())
    todo = offered - enabled if wanted is None else (offered & wanted) - enabled
    for ctl in sorted(todo):
        try:
            fs.write(directory, "cgroup.subtree_control", f"+{ctl}")
        except (InvalidArgument, SystemFailure):
            continue  # see enable_controllers: surfaced by apply() when it matters


def remove(directory: str) -> None:
    """rmdir a cgroup and any cgroups the container made inside it, deepest first.

    Waits briefly on EBUSY (the last processes are still exiting); a directory that is
    already gone is success.
    """
    try:
        children = [e.path for e in os.scandir(directory) if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return
    except OSError as exc:
        raise fs.path_error(exc, directory, "list") from exc
    for child in children:
        remove(child)
    for delay in (*RMDIR_DELAYS, None):
        try:
            fs.rmdir(directory)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise fs.path_error(exc, directory, "rmdir") from exc
            if delay is None:
                raise Conflict(
                    f"cgroups: cannot remove {directory}: processes are still inside",
                    op="destroy",
                    obj=directory,
                ) from exc
            time.sleep(delay)


def destroy(leaves: Iterable[str], created: Iterable[str] = ()) -> None:
    """Remove a container's cgroup: its ``leaves`` (one per hierarchy) with whatever was
    made inside them, then the parents that ``created`` lists and the default parent
    (/pallet), unless another cgroup still uses them. Gone dirs are fine.

    What `delete` needs of cgroups, without the rest of the package."""
    leaf_set = set(leaves)
    for leaf in sorted(leaf_set, key=lambda p: p.count("/"), reverse=True):
        remove(leaf)
    parents = {p for p in created if p not in leaf_set}
    parents.update(os.path.dirname(p) for p in leaf_set
                   if os.path.basename(os.path.dirname(p)) == DEFAULT_PARENT)
    for parent in sorted(parents, key=lambda p: p.count("/"), reverse=True):
        remove_if_unused(parent)


def remove_if_unused(directory: str) -> None:
    """rmdir a shared parent unless another cgroup (or process) still uses it."""
    try:
        fs.rmdir(directory)
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.EBUSY, errno.ENOTEMPTY):
            raise fs.path_error(exc, directory, "rmdir") from exc
