"""Which cgroup layout this host has, decided once from /proc/self/mountinfo.

Three layouts exist in the wild:

- ``v2``: a cgroup2 filesystem mounted at /sys/fs/cgroup itself.
- ``v1``: one cgroup (v1) filesystem per hierarchy under /sys/fs/cgroup.
- ``hybrid``: v1 hierarchies plus a cgroup2 mount below /sys/fs/cgroup (systemd puts it at
  /sys/fs/cgroup/unified). The cgroup2 tree carries only the controllers no v1 hierarchy
  holds (often none; hugetlb on the machines pallet is developed on) and is still where
  systemd tracks processes, so containers join it too.

mountinfo rather than statfs: os has no statfs with f_type, and mountinfo also tells us
each hierarchy's controllers and the cgroup at its root (not "/" inside a cgroup namespace).
"""

from __future__ import annotations

from pallet.errors import InvalidArgument, NotSupported
from pallet.linux.proc import unescape_mountinfo

from . import fs

DEFAULT_ROOT = "/sys/fs/cgroup"

# v1 controllers the kernel may mount; anything else in the super options is a mount flag.
V1_CONTROLLERS = frozenset(
    (
        "cpu",
        "cpuacct",
        "cpuset",
        "memory",
        "devices",
        "freezer",
        "net_cls",
        "net_prio",
        "blkio",
        "perf_event",
        "hugetlb",
        "pids",
        "rdma",
        "misc",
        "debug",
    )
)


class Hierarchy:
    """One mounted cgroup hierarchy."""

    __slots__ = ("controllers", "mountpoint", "root", "version")

    def __init__(
        self,
        mountpoint: str,
        controllers: tuple[str, ...] = (),
        *,
        root: str = "/",
        version: int = 1,
    ) -> None:
        self.mountpoint = mountpoint
        # Order as the kernel lists them in the mount options ("cpu,cpuacct"); named
        # hierarchies appear as "name=systemd". Empty for cgroup2.
        self.controllers = controllers
        # The cgroup at the root of this mount (mountinfo field 4): "/" on the host.
        self.root = root
        self.version = version

    @property
    def data(self) -> str:
        """Mount data to mount this hierarchy again (inside a container)."""
        return ",".join(self.controllers)

    def dir_for(self, cgroup_path: str) -> str:
        """Host directory of ``cgroup_path`` (a path in this hierarchy's own namespace)."""
        rel = cgroup_path
        if self.root != "/" and (rel == self.root or rel.startswith(self.root + "/")):
            rel = rel[len(self.root) :]
        rel = rel.strip("/")
        return f"{self.mountpoint}/{rel}" if rel else self.mountpoint

    def __repr__(self) -> str:
        return f"Hierarchy({self.mountpoint!r}, {self.controllers!r}, v{self.version})"


class Layout:
    """The mounted hierarchies. Build with ``detect_layout`` or by hand in tests."""

    __slots__ = ("mode", "unified", "unified_controllers", "v1")

    def __init__(
        self,
        v1: list[Hierarchy] | None = None,
        unified: Hierarchy | None = None,
        unified_controllers: frozenset[str] = frozenset(),
    ) -> None:
        self.v1 = v1 or []
        self.unified = unified
        # Controllers the cgroup2 root offers (its cgroup.controllers).
        self.unified_controllers = unified_controllers
        if unified is not None and not self.v1:
            self.mode = "v2"
        elif unified is not None:
            self.mode = "hybrid"
        elif self.v1:
            self.mode = "v1"
        else:
            raise NotSupported("cgroups: no cgroup filesystem is mounted")

    def v1_controllers(self) -> frozenset[str]:
        return frozenset(c for h in self.v1 for c in h.controllers)

    def v2_controllers(self) -> frozenset[str]:
        """Controllers pallet drives through cgroup2: all of them on v2, leftovers on hybrid."""
        return self.unified_controllers - self.v1_controllers()

    def __repr__(self) -> str:
        return f"Layout({self.mode}, v1={self.v1!r}, unified={self.unified!r})"


def parse_mountinfo(text: str, root: str = DEFAULT_ROOT) -> Layout:
    """The cgroup layout under ``root`` as described by mountinfo ``text``."""
    v1: list[Hierarchy] = []
    unified: Hierarchy | None = None
    seen: set[tuple[str, ...]] = set()
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        sep = fields.index("-")
        if len(fields) < sep + 4 or len(fields) < 5:
            continue
        fstype = fields[sep + 1]
        if fstype not in ("cgroup", "cgroup2"):
            continue
        mountpoint = unescape_mountinfo(fields[4])
        if mountpoint != root and not mountpoint.startswith(root + "/"):
            continue
        mount_root = unescape_mountinfo(fields[3])
        if fstype == "cgroup2":
            # The first cgroup2 mount wins; a later bind mount of a subtree must not.
            if unified is None:
                unified = Hierarchy(mountpoint, (), root=mount_root, version=2)
            continue
        opts = fields[sep + 3].split(",")
        ctls = tuple(o for o in opts if o in V1_CONTROLLERS or o.startswith("name="))
        if ctls and ctls not in seen:
            seen.add(ctls)
            v1.append(Hierarchy(mountpoint, ctls, root=mount_root))
    if unified is not None and unified.mountpoint == root:
        v1 = []  # a v2 host; v1 mounts below a cgroup2 root are not ours to use
    controllers: frozenset[str] = frozenset()
    if unified is not None:
        text = fs.read_opt(unified.mountpoint, "cgroup.controllers") or ""
        controllers = frozenset(text.split())
    if unified is None and not v1:
        raise NotSupported(f"cgroups: no cgroup filesystem is mounted under {root}")
    return Layout(v1, unified, controllers)


_detected: Layout | None = None


def detect_layout() -> Layout:
    """This host's layout, read once per process."""
    global _detected
    if _detected is None:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            _detected = parse_mountinfo(f.read())
    return _detected


# ---------------------------------------------------------------------------------------
# Path resolution


def clean_path(path: str) -> str:
    """``path`` with empty and "." components dropped; ".." is refused, not resolved."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidArgument(
            f"cgroups: cgroupsPath {path!r} must not contain '..'", op="open", obj=path
        )
    return "/" + "/".join(parts)


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """/proc/<pid>/cgroup as {hierarchy key: path}; key is "cpu,cpuacct", "name=systemd" or ""."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        _id, _, rest = line.partition(":")
        ctls, _, path = rest.partition(":")
        if _:
            out[ctls] = path
    return out


def own_cgroup(h: Hierarchy, proc_cgroup: dict[str, str]) -> str:
    """The calling process's cgroup path in hierarchy ``h``."""
    if h.version == 2:
        return proc_cgroup.get("", "/")
    want = set(h.controllers)
    for key, path in proc_cgroup.items():
        if key and set(key.split(",")) == want:
            return path
    return "/"
