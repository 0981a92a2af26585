"""Container cgroups on cgroup v1, v2 and the hybrid layout, behind one interface.

    cg = Cgroup.open(spec_cgroups_path, container_id)   # resolve only
    cg.create(); cg.apply(resources); cg.add_pid(pid)
    state["cgroup_paths"] = cg.paths()
    ... later: Cgroup.from_paths(state["cgroup_paths"]).freeze() / .stats() / .destroy()

Modules: ``layout`` (which hierarchies exist, path resolution), ``v1`` / ``v2`` /
``devices`` (one function per controller, of (directory, limits)), ``stats`` (runc's
``events --stats`` shape), ``cgroup`` (the Cgroup class routing each controller to
the hierarchy that carries it), ``tree`` (mkdir -p, subtree_control, rmdir with retry),
``fs`` (file I/O with errors that name the file).

Device rules are written exactly as given; ``devices.with_defaults(rules)`` appends runc's
default allow-list (/dev/null, zero, full, random, urandom, tty, ptmx, pts, mknod) for the
runtime's spec conversion to use, as runc's specconv does.

Limitations (documented, checked by tests):
- cgroup v2 device rules are not enforced (that needs an eBPF program; see devices.py):
  deny-all plus allow-lists (what engines send) are accepted; "allow all except these
  devices" raises NotSupported, since that names devices the user wants blocked.
  ``Cgroup.devices_enforced`` tells the caller which case it is in.
- On v2, memory.swappiness, kernel and kernelTCP are ignored (no such files); disableOOMKiller,
  realtime cpu, blkio leaf weights and network (net_cls/net_prio) raise NotSupported.
- On hybrid hosts a ``linux.resources.unified`` file of a controller mounted as v1 (e.g.
  memory.high) raises NotSupported; files of controllers in the cgroup2 tree (hugetlb here)
  and core ``cgroup.*`` files are written. On v1-only hosts ``unified`` raises NotSupported.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .cgroup import UNIFIED, Cgroup
    from .layout import Hierarchy, Layout, detect_layout, parse_mountinfo

__all__ = ["UNIFIED", "Cgroup", "Hierarchy", "Layout", "detect_layout", "parse_mountinfo"]

# Loaded when first asked for: `delete` needs only ``tree`` of this package, and every
# import of a submodule runs this file first.
_FROM_CGROUP = ("UNIFIED", "Cgroup")
_FROM_LAYOUT = ("Hierarchy", "Layout", "detect_layout", "parse_mountinfo")


def __getattr__(name: str) -> object:
    if name in _FROM_CGROUP:
        from . import cgroup

        return getattr(cgroup, name)
    if name in _FROM_LAYOUT:
        from . import layout

        return getattr(layout, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
