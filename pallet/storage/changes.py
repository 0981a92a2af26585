"""What a container changed in its image (docker diff), from an overlay upper dir."""

from __future__ import annotations

import os
import stat as st_mod
from typing import Any

# Mount points the runtime may create in a container's root (dockerd keeps them in an
# "-init" layer under the container's, so they never show as changes; pallet's shared
# init layer holds the /etc ones, containers made before it had them in their own).
MOUNT_POINTS = frozenset(("/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/etc/mtab",
                          "/.dockerenv", "/dev/console", "/dev/pts", "/dev/shm", "/proc",
                          "/sys"))


def overlay_changes(upper: str, lowers: list[str]) -> list[dict[str, Any]]:
    """docker diff from an overlay upper dir: whiteouts are deletions, what a lower has
    already is a modification, the rest is new (a new directory's contents too). A
    directory only copied up to hold a mount point is not a change of its own."""
    def in_lower(rel: str) -> os.stat_result | None:
        for low in lowers:
            try:
                return os.lstat(os.path.join(low, rel))
            except FileNotFoundError:
                continue
        return None

    out: list[dict[str, Any]] = []

    def walk(rel: str, new_parent: bool) -> bool:
        """Report what is under ``rel``; whether anything was."""
        found = False
        for name in sorted(os.listdir(os.path.join(upper, rel))):
            sub = os.path.join(rel, name)
            st = os.lstat(os.path.join(upper, sub))
            path = "/" + sub
            if st_mod.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                out.append({"Path": path, "Kind": 2})
                found = True
                continue
            low = None if new_parent else in_lower(sub)
            if low is None and path in MOUNT_POINTS:
                continue
            at = len(out)
            out.append({"Path": path, "Kind": 1 if low is None else 0})
            below = walk(sub, low is None) if st_mod.S_ISDIR(st.st_mode) else False
            if low is not None and st_mod.S_ISDIR(st.st_mode) and not below and \
                    (st.st_mode, st.st_uid, st.st_gid) == (low.st_mode, low.st_uid,
                                                            low.st_gid):
                del out[at]
                continue
            found = True
        return found

    walk("", False)
    return out
