"""One container's cgroup across every mounted hierarchy: the interface the runtime uses.

A Cgroup is a map from controller name to the container's directory in the hierarchy that
carries that controller ("" names the cgroup2 hierarchy). Each operation routes each
controller to v1 or v2 functions by where that controller lives, which is how one class
serves all three layouts: on ``hybrid`` hosts most controllers route to v1 and the few
the cgroup2 mount carries (hugetlb on pallet's dev machines) route to v2.
"""

from __future__ import annotations

import os

from pallet.errors import InvalidArgument, NotSupported

from . import fs, tree, v1
from .layout import Hierarchy, Layout, clean_path, detect_layout, own_cgroup, parse_proc_cgroup

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pallet.oci.resources import Resources

UNIFIED = ""  # the key of the cgroup2 hierarchy in paths()
DEFAULT_PARENT = tree.DEFAULT_PARENT

# Where process lists are read: any hierarchy holds every process, the pids one is cheapest.
_PROCS_FROM = ("pids", "freezer", "memory", "cpu", "cpuacct", "devices", "blkio", "cpuset")


def _any_set(record: object, skip: tuple[str, ...] = ()) -> bool:
    """True if any field of a resources record (other than ``skip``) is set."""
    fields: tuple[tuple[str, str], ...] = getattr(record, "_fields", ())
    return any(getattr(record, a) is not None for a, _ in fields if a not in skip)


class Cgroup:
    """A container's cgroup: resolve with ``open`` (or ``from_paths``), then create,
    apply, add_pid, freeze/thaw, stats and destroy. Only create/destroy make or remove
    directories; apply writes only the fields that are set."""

    __slots__ = ("_created", "_dirs", "_layout", "_v2ctl")

    def __init__(self, dirs: dict[str, str], layout: Layout | None = None) -> None:
        self._dirs = dirs
        self._layout = layout
        self._created: list[str] = []  # dirs create() made, in creation order
        self._v2ctl: frozenset[str] | None = None

    # --- construction -------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        cgroups_path: str | None,
        container_id: str,
        *,
        layout: Layout | None = None,
        proc_self_cgroup: str | None = None,
    ) -> Cgroup:
        """Resolve the container's directories; touches nothing on disk.

        Absolute ``cgroups_path`` is taken from each hierarchy's root, a relative one from
        the caller's own cgroup in that hierarchy (as runc does), None means
        /pallet/<container_id>.
        """
        if not cgroups_path:
            if not container_id or "/" in container_id or container_id in (".", ".."):
                raise InvalidArgument(
                    f"cgroups: container id {container_id!r} cannot name a cgroup",
                    op="open",
                    obj=container_id,
                )
            cgroups_path = f"/{DEFAULT_PARENT}/{container_id}"
        path = clean_path(cgroups_path)
        if path == "/":
            raise InvalidArgument(
                f"cgroups: cgroupsPath {cgroups_path!r} must name a cgroup below the root",
                op="open",
                obj=container_id,
            )
        layout = layout or detect_layout()
        relative = not cgroups_path.startswith("/")
        own: dict[str, str] = {}
        if relative:
            if proc_self_cgroup is None:
                with open("/proc/self/cgroup", encoding="utf-8") as f:
                    proc_self_cgroup = f.read()
            own = parse_proc_cgroup(proc_self_cgroup)

        def place(h: Hierarchy) -> str:
            if relative:
                return h.dir_for(own_cgroup(h, own).rstrip("/") + path)
            return h.dir_for(path)

        dirs: dict[str, str] = {}
        for h in layout.v1:
            d = place(h)
            for ctl in h.controllers:
                dirs[ctl] = d
        if layout.unified is not None:
            dirs[UNIFIED] = place(layout.unified)
        return cls(dirs, layout)

    @classmethod
    def from_paths(cls, paths: dict[str, str], *, layout: Layout | None = None) -> Cgroup:
        """Reopen a container's cgroup from the paths() saved in its state."""
        return cls(dict(paths), layout)

    def paths(self) -> dict[str, str]:
        return dict(self._dirs)

    # --- routing ------------------------------------------------------------------------

    def _get_layout(self) -> Layout:
        if self._layout is None:
            self._layout = detect_layout()
        return self._layout

    @property
    def mode(self) -> str:
        """The layout this cgroup spans: v1, v2 or hybrid (v1 plus a cgroup2 tree)."""
        v1_keys = any(k != UNIFIED for k in self._dirs)
        if UNIFIED not in self._dirs:
            return "v1"
        return "hybrid" if v1_keys else "v2"

    def _v2_controllers(self) -> frozenset[str]:
        """Controllers driven through cgroup2: enabled in our leaf and not on v1."""
        if self._v2ctl is None:
            leaf = self._dirs.get(UNIFIED)
            text = None if leaf is None else fs.read_opt(leaf, "cgroup.controllers")
            if text is not None:
                ctl = frozenset(text.split())
            elif leaf is not None:  # not created yet: what the host offers
                ctl = self._get_layout().v2_controllers()
            else:
                ctl = frozenset()
            self._v2ctl = ctl - frozenset(self._dirs)
        return self._v2ctl

    def _v1(self, ctl: str) -> str | None:
        return self._dirs.get(ctl) if ctl != UNIFIED else None

    def _v2(self, ctl: str) -> str | None:
        return self._dirs[UNIFIED] if ctl in self._v2_controllers() else None

    def _missing(self, ctl: str, what: str) -> NotSupported:
        where = "mounted as a cgroup v1 hierarchy"
        if UNIFIED in self._dirs:
            where += " nor enabled in this cgroup's cgroup v2 tree"
        return NotSupported(
            f"cgroups: linux.resources.{what} needs the {ctl} controller, which is not {where} "
            "on this host",
            op="apply",
            obj=ctl,
        )

    @property
    def devices_enforced(self) -> bool:
        """False where device rules are accepted but not enforced (cgroup v2, no eBPF)."""
        return "devices" in self._dirs

    # --- lifecycle ----------------------------------------------------------------------

    def _hierarchies(self) -> list[tuple[Hierarchy, str]]:
        layout = self._get_layout()
        out = [
            (h, self._dirs[h.controllers[0]]) for h in layout.v1 if h.controllers[0] in self._dirs
        ]
        if layout.unified is not None and UNIFIED in self._dirs:
            out.append((layout.unified, self._dirs[UNIFIED]))
        return out

    def create(self) -> None:
        """mkdir -p in every hierarchy; remembers what it made for destroy()."""
        for h, leaf in self._hierarchies():
            self._created += tree.mkdirs(h.mountpoint, leaf)
            if "cpuset" in h.controllers:
                v1.init_cpuset(h.mountpoint, leaf)
            if h.version == 2:
                layout = self._get_layout()
                wanted = None if layout.mode == "v2" else layout.v2_controllers()
                tree.enable_controllers(h.mountpoint, leaf, wanted)
        self._v2ctl = None  # now read from the leaf's cgroup.controllers

    def add_pid(self, pid: int) -> None:
        """Move ``pid`` into the container's cgroup in every hierarchy.

        v1 takes it through ``tasks``, not ``cgroup.procs``: the child is single-threaded
        at this point, so moving its one thread moves the process, and on kernels where a
        thread-group move waits for an RCU grace period (~14 ms after idle) that wait is
        skipped. (Measured on the 6.18 dev VM: the first move after idle costs 5-13 ms
        either way, later ones ~0.1 ms; the saving depends on the kernel.)
        """
        done = set()
        for key, d in self._dirs.items():
            if d in done:
                continue
            done.add(d)
            fs.write(d, "cgroup.procs" if key == UNIFIED else "tasks", str(pid))

    def pids(self) -> list[int]:
        """Every process in the container's cgroup, including nested cgroups."""
        root = next((self._dirs[c] for c in _PROCS_FROM if c in self._dirs), None)
        if root is None:
            root = self._dirs.get(UNIFIED) or next(iter(self._dirs.values()))
        found: set[int] = set()
        for dirpath, _dirs, _files in os.walk(root):
            text = fs.read_opt(dirpath, "cgroup.procs")
            found.update(int(p) for p in (text or "").split())
        return sorted(found)

    def destroy(self) -> None:
        """rmdir what create() made (or the leaves, when reopened); gone dirs are fine."""
        tree.destroy(self._dirs.values(), self._created)
        self._created = []

    # --- resources ----------------------------------------------------------------------

    def apply(self, resources: Resources) -> None:
        """Write ``resources``; fields left None are not touched (so update can reuse it)."""
        from . import devices, v2  # where used: create and destroy stay lean

        r = resources
        cpu = r.cpu
        if cpu is not None and (cpu.cpus or cpu.mems):
            if (d := self._v1("cpuset")) is not None:
                v1.apply_cpuset(d, cpu)
            elif (d := self._v2("cpuset")) is not None:
                v2.apply_cpuset(d, cpu)
            else:
                raise self._missing("cpuset", "cpu.cpus/mems")
        if r.devices is not None:
            if (d := self._v1("devices")) is not None:
                devices.apply_v1(d, r.devices)
            elif UNIFIED in self._dirs:
                devices.check_v2(r.devices)
            else:
                raise self._missing("devices", "devices")
        if r.memory is not None and _any_set(r.memory):
            if (d := self._v1("memory")) is not None:
                v1.apply_memory(d, r.memory)
            elif (d := self._v2("memory")) is not None:
                v2.apply_memory(d, r.memory)
            else:
                raise self._missing("memory", "memory")
        if cpu is not None and _any_set(cpu, skip=("cpus", "mems")):
            if (d := self._v1("cpu")) is not None:
                v1.apply_cpu(d, cpu)
            elif (d := self._v2("cpu")) is not None:
                v2.apply_cpu(d, cpu)
            else:
                raise self._missing("cpu", "cpu")
        if r.pids is not None and r.pids.limit is not None:
            if (d := self._v1("pids")) is not None:
                v1.apply_pids(d, r.pids)
            elif (d := self._v2("pids")) is not None:
                v2.apply_pids(d, r.pids)
            else:
                raise self._missing("pids", "pids")
        if r.block_io is not None and _any_set(r.block_io):
            if (d := self._v1("blkio")) is not None:
                v1.apply_blkio(d, r.block_io)
            elif (d := self._v2("io")) is not None:
                v2.apply_io(d, r.block_io)
            else:
                raise self._missing("blkio (io on cgroup v2)", "blockIO")
        if r.hugepage_limits:
            if (d := self._v1("hugetlb")) is not None:
                v1.apply_hugetlb(d, r.hugepage_limits)
            elif (d := self._v2("hugetlb")) is not None:
                v2.apply_hugetlb(d, r.hugepage_limits)
            else:
                raise self._missing("hugetlb", "hugepageLimits")
        if r.network is not None:
            self._apply_network(r)
        if r.rdma:
            if (d := self._v1("rdma")) is not None:
                v1.apply_rdma(d, r.rdma)
            elif (d := self._v2("rdma")) is not None:
                v2.apply_rdma(d, r.rdma)
            else:
                raise self._missing("rdma", "rdma")
        if r.unified:
            self._apply_unified(r.unified)

    def _apply_network(self, r: Resources) -> None:
        net = r.network
        assert net is not None
        # net_cls/net_prio exist only in v1; cgroup v2 leaves this to eBPF or nftables.
        if net.class_id is not None:
            if (d := self._v1("net_cls")) is None:
                raise self._missing("net_cls", "network.classID")
            v1.apply_net_cls(d, net)
        if net.priorities:
            if (d := self._v1("net_prio")) is None:
                raise self._missing("net_prio", "network.priorities")
            v1.apply_net_prio(d, net)

    def _apply_unified(self, files: dict[str, str]) -> None:
        from . import v2  # where used: create and destroy stay lean

        d = self._dirs.get(UNIFIED)
        if d is None:
            raise NotSupported(
                "cgroups: linux.resources.unified needs cgroup v2; this host mounts only v1",
                op="apply",
                obj="unified",
            )
        for name in files:
            ctl = name.split(".", 1)[0]
            if ctl in self._dirs:
                raise NotSupported(
                    f"cgroups: linux.resources.unified[{name!r}]: the {ctl} controller is on "
                    "cgroup v1 on this host (hybrid layout); use its linux.resources fields",
                    op="apply",
                    obj=name,
                )
        v2.apply_unified(d, files)

    # --- freezer ------------------------------------------------------------------------

    def _freezer(self) -> tuple[str, str]:
        if (d := self._v1("freezer")) is not None:
            return "v1", d
        if UNIFIED in self._dirs:  # cgroup.freeze is core in v2, no controller needed
            return "v2", self._dirs[UNIFIED]
        raise self._missing("freezer", "freezer (pause)")

    def freeze(self) -> None:
        from . import v2  # where used: create and destroy stay lean

        kind, d = self._freezer()
        (v1.freeze if kind == "v1" else v2.freeze)(d)

    def thaw(self) -> None:
        from . import v2  # where used: create and destroy stay lean

        kind, d = self._freezer()
        (v1.thaw if kind == "v1" else v2.thaw)(d)

    def frozen(self) -> bool:
        from . import v2  # where used: create and destroy stay lean

        kind, d = self._freezer()
        return (v1.frozen if kind == "v1" else v2.frozen)(d)

    # --- statistics ---------------------------------------------------------------------

    def stats(self) -> dict[str, object]:
        """runc ``events --stats`` data for whatever controllers this host has."""
        # Imported here: only the stats/events verbs need it, not create/start's hot path.
        from . import stats
        out: dict[str, object] = {}
        cpuacct, cpu = self._v1("cpuacct"), self._v1("cpu")
        if cpuacct is not None or cpu is not None:
            out["cpu"] = stats.v1_cpu(cpuacct, cpu)
        elif UNIFIED in self._dirs:  # cpu.stat's usage lines are core in v2
            out["cpu"] = stats.v2_cpu(self._dirs[UNIFIED])
        if (d := self._v1("memory")) is not None:
            out["memory"] = stats.v1_memory(d)
        elif (d := self._v2("memory")) is not None:
            out["memory"] = stats.v2_memory(d)
        if (d := self._v1("pids") or self._v2("pids")) is not None:
            out["pids"] = stats.pids(d)
        if (d := self._v1("blkio")) is not None:
            out["blkio"] = stats.v1_blkio(d)
        elif (d := self._v2("io")) is not None:
            out["blkio"] = stats.v2_io(d)
        if (d := self._v1("hugetlb")) is not None:
            out["hugetlb"] = stats.v1_hugetlb(d)
        elif (d := self._v2("hugetlb")) is not None:
            out["hugetlb"] = stats.v2_hugetlb(d)
        return out

    def oom_kills(self) -> int:
        """OOM kills inside the container so far (0 where the kernel does not count them)."""
        from . import stats
        if (d := self._v1("memory")) is not None:
            return stats.v1_oom_kills(d)
        if (d := self._v2("memory")) is not None:
            return stats.v2_oom_kills(d)
        return 0

    # --- in-container view --------------------------------------------------------------

    def mounts(self) -> list[tuple[str, str, str, str]]:
        """(subdir of the container's /sys/fs/cgroup, fstype, mount data, host dir) per
        hierarchy. The subdir is the host mount's name ("cpu,cpuacct", "systemd",
        "unified"); "" for a v2 host, where the cgroup2 mount is /sys/fs/cgroup itself."""
        out = []
        layout = self._get_layout()
        for h, d in self._hierarchies():
            if h.version == 1:
                out.append((os.path.basename(h.mountpoint), "cgroup", h.data, d))
            else:
                sub = "" if layout.mode == "v2" else os.path.basename(h.mountpoint)
                out.append((sub, "cgroup2", "", d))
        return out

    def __repr__(self) -> str:
        return f"Cgroup({self._dirs!r})"


