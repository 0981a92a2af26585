"""runtime-spec 1.x ``config.json``: typed objects, parsed and validated without I/O.

Classes are plain ``__slots__`` classes rather than dataclasses: the runtime parses a
config on every verb and dataclasses cost ~35 ms to import here.
"""

from __future__ import annotations

from pallet.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pallet.oci.resources import Resources

NAMESPACE_TYPES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")

# The five capability sets of process.capabilities.
CAP_SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")

HOOK_KINDS = (
    "prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop",
)

RLIMITS = (
    "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_CORE", "RLIMIT_RSS",
    "RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "RLIMIT_AS", "RLIMIT_LOCKS",
    "RLIMIT_SIGPENDING", "RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_RTPRIO", "RLIMIT_RTTIME",
)

ROOTFS_PROPAGATION = ("private", "rprivate", "slave", "rslave", "shared", "rshared",
                      "unbindable", "runbindable")

SCHED_POLICIES = ("SCHED_OTHER", "SCHED_FIFO", "SCHED_RR", "SCHED_BATCH", "SCHED_ISO",
                  "SCHED_IDLE", "SCHED_DEADLINE")
SCHED_FLAGS = ("SCHED_FLAG_RESET_ON_FORK", "SCHED_FLAG_RECLAIM", "SCHED_FLAG_DL_OVERRUN",
               "SCHED_FLAG_KEEP_POLICY", "SCHED_FLAG_KEEP_PARAMS", "SCHED_FLAG_UTIL_CLAMP_MIN",
               "SCHED_FLAG_UTIL_CLAMP_MAX")
IOPRIO_CLASSES = ("IOPRIO_CLASS_RT", "IOPRIO_CLASS_BE", "IOPRIO_CLASS_IDLE")
PERSONALITY_DOMAINS = ("LINUX", "LINUX32")


# --- small typed readers of untrusted JSON --------------------------------------------

def _obj(v: object, where: str) -> dict[str, object]:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise InvalidArgument(f"{where}: must be an object")
    return v


def _str(v: object, where: str, default: str = "") -> str:
    if v is None:
        return default
    if not isinstance(v, str):
        raise InvalidArgument(f"{where}: must be a string")
    return v


def _int(v: object, where: str, default: int = 0, lo: int | None = None) -> int:
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int):
        raise InvalidArgument(f"{where}: must be an integer")
    if lo is not None and v < lo:
        raise InvalidArgument(f"{where}: must be >= {lo}")
    return v


def _opt_int(v: object, where: str) -> int | None:
    return None if v is None else _int(v, where)


def _bool(v: object, where: str) -> bool:
    if v is None:
        return False
    if not isinstance(v, bool):
        raise InvalidArgument(f"{where}: must be true or false")
    return v


def _strs(v: object, where: str) -> list[str]:
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise InvalidArgument(f"{where}: must be an array of strings")
    return list(v)


def _list(v: object, where: str) -> list[object]:
    if v is None:
        return []
    if not isinstance(v, list):
        raise InvalidArgument(f"{where}: must be an array")
    return v


def _str_map(v: object, where: str) -> dict[str, str]:
    d = _obj(v, where)
    for k, x in d.items():
        if not isinstance(x, str):
            raise InvalidArgument(f"{where}.{k}: must be a string")
    return dict(d)  # type: ignore[arg-type]


# --- the types -------------------------------------------------------------------------

class User:
    __slots__ = ("additional_gids", "gid", "uid", "umask", "username")

    def __init__(self, d: dict[str, object], where: str = "process.user") -> None:
        self.uid = _int(d.get("uid"), f"{where}.uid", lo=0)
        self.gid = _int(d.get("gid"), f"{where}.gid", lo=0)
        self.umask = _opt_int(d.get("umask"), f"{where}.umask")
        self.additional_gids = [
            _int(g, f"{where}.additionalGids", lo=0) for g in _list(d.get("additionalGids"), where)
        ]
        self.username = _str(d.get("username"), f"{where}.username")


class Capabilities:
    __slots__ = CAP_SETS

    def __init__(self, d: dict[str, object], known: dict[str, int], where: str) -> None:
        for name in CAP_SETS:
            caps = _strs(d.get(name), f"{where}.{name}")
            for cap in caps:
                if cap not in known:
                    raise InvalidArgument(f"{where}.{name}: unknown capability {cap!r}")
            setattr(self, name, caps)

    def get(self, name: str) -> list[str]:
        caps: list[str] = getattr(self, name)
        return caps


class Rlimit:
    __slots__ = ("hard", "soft", "type")

    def __init__(self, d: dict[str, object], where: str) -> None:
        self.type = _str(d.get("type"), f"{where}.type")
        if self.type not in RLIMITS:
            raise InvalidArgument(f"{where}.type: unknown rlimit {self.type!r}")
        self.hard = _int(d.get("hard"), f"{where}.hard", lo=0)
        self.soft = _int(d.get("soft"), f"{where}.soft", lo=0)
        if self.soft > self.hard:
            raise InvalidArgument(f"{where}: soft limit {self.soft} exceeds hard limit {self.hard}")


class Process:
    __slots__ = (
        "apparmor_profile", "args", "capabilities", "console_size", "cwd", "env", "io_priority",
        "no_new_privileges", "oom_score_adj", "rlimits", "scheduler", "selinux_label",
        "terminal", "user",
    )

    def __init__(self, d: dict[str, object], where: str = "process") -> None:
        from pallet.linux import caps  # the capability names the kernel knows

        self.terminal = _bool(d.get("terminal"), f"{where}.terminal")
        cs = _obj(d.get("consoleSize"), f"{where}.consoleSize")
        self.console_size = (
            (_int(cs.get("height"), f"{where}.consoleSize.height", lo=0),
             _int(cs.get("width"), f"{where}.consoleSize.width", lo=0)) if cs else None
        )
        self.user = User(_obj(d.get("user"), f"{where}.user"), f"{where}.user")
        self.args = _strs(d.get("args"), f"{where}.args")
        if not self.args:
            raise InvalidArgument(f"{where}.args: must not be empty")
        if "commandLine" in d:
            raise InvalidArgument(f"{where}.commandLine: only meaningful on Windows")
        self.env = _strs(d.get("env"), f"{where}.env")
        self.cwd = _str(d.get("cwd"), f"{where}.cwd", "/")
        if not self.cwd.startswith("/"):
            raise InvalidArgument(f"{where}.cwd: must be an absolute path, got {self.cwd!r}")
        c = d.get("capabilities")
        self.capabilities = (
            Capabilities(_obj(c, f"{where}.capabilities"), caps.BY_NAME, f"{where}.capabilities")
            if c is not None else None
        )
        self.rlimits = [
            Rlimit(_obj(r, f"{where}.rlimits[{i}]"), f"{where}.rlimits[{i}]")
            for i, r in enumerate(_list(d.get("rlimits"), f"{where}.rlimits"))
        ]
        seen = set()
        for r in self.rlimits:
            if r.type in seen:
                raise InvalidArgument(f"{where}.rlimits: duplicate {r.type}")
            seen.add(r.type)
        self.no_new_privileges = _bool(d.get("noNewPrivileges"), f"{where}.noNewPrivileges")
        self.apparmor_profile = _str(d.get("apparmorProfile"), f"{where}.apparmorProfile")
        self.selinux_label = _str(d.get("selinuxLabel"), f"{where}.selinuxLabel")
        oom = d.get("oomScoreAdj")
        self.oom_score_adj = None if oom is None else _int(oom, f"{where}.oomScoreAdj")
        if self.oom_score_adj is not None and not -1000 <= self.oom_score_adj <= 1000:
            raise InvalidArgument(f"{where}.oomScoreAdj: must be between -1000 and 1000")
        iop = d.get("ioPriority")
        self.io_priority: tuple[str, int] | None = None
        if iop is not None:
            io = _obj(iop, f"{where}.ioPriority")
            cls = _str(io.get("class"), f"{where}.ioPriority.class")
            if cls not in IOPRIO_CLASSES:
                raise InvalidArgument(f"{where}.ioPriority.class: unknown class {cls!r}")
            prio = _int(io.get("priority"), f"{where}.ioPriority.priority", lo=0)
            if prio > 7:
                raise InvalidArgument(f"{where}.ioPriority.priority: must be between 0 and 7")
            self.io_priority = (cls, prio)
        sch = d.get("scheduler")
        self.scheduler: dict[str, object] | None = None
        if sch is not None:
            self.scheduler = _obj(sch, f"{where}.scheduler")
            pol = _str(self.scheduler.get("policy"), f"{where}.scheduler.policy")
            if pol not in SCHED_POLICIES:
                raise InvalidArgument(f"{where}.scheduler.policy: unknown policy {pol!r}")
            for flag in _strs(self.scheduler.get("flags"), f"{where}.scheduler.flags"):
                if flag not in SCHED_FLAGS:
                    raise InvalidArgument(f"{where}.scheduler.flags: unknown flag {flag!r}")
            for k in ("nice", "priority", "runtime", "deadline", "period"):
                _int(self.scheduler.get(k), f"{where}.scheduler.{k}")

    def env_value(self, name: str) -> str | None:
        prefix = name + "="
        for e in self.env:
            if e.startswith(prefix):
                return e[len(prefix):]
        return None


class Root:
    __slots__ = ("path", "readonly")

    def __init__(self, d: dict[str, object]) -> None:
        self.path = _str(d.get("path"), "root.path")
        if not self.path:
            raise InvalidArgument("root.path: must not be empty")
        self.readonly = _bool(d.get("readonly"), "root.readonly")


class IDMapping:
    __slots__ = ("container_id", "host_id", "size")

    def __init__(self, d: dict[str, object], where: str) -> None:
        self.container_id = _int(d.get("containerID"), f"{where}.containerID", lo=0)
        self.host_id = _int(d.get("hostID"), f"{where}.hostID", lo=0)
        self.size = _int(d.get("size"), f"{where}.size", lo=1)


def _mappings(v: object, where: str) -> list[IDMapping]:
    return [IDMapping(_obj(m, f"{where}[{i}]"), f"{where}[{i}]")
            for i, m in enumerate(_list(v, where))]


class Mount:
    __slots__ = ("destination", "gid_mappings", "options", "source", "type", "uid_mappings")

    def __init__(self, d: dict[str, object], where: str) -> None:
        self.destination = _str(d.get("destination"), f"{where}.destination")
        if not self.destination:
            raise InvalidArgument(f"{where}.destination: must not be empty")
        if not self.destination.startswith("/"):
            self.destination = "/" + self.destination  # relative means from the root, as runc
        if escapes(self.destination):
            raise InvalidArgument(
                f"{where}.destination: {self.destination!r} escapes the container's root"
            )
        self.type = _str(d.get("type"), f"{where}.type")
        self.source = _str(d.get("source"), f"{where}.source")
        self.options = _strs(d.get("options"), f"{where}.options")
        self.uid_mappings = _mappings(d.get("uidMappings"), f"{where}.uidMappings")
        self.gid_mappings = _mappings(d.get("gidMappings"), f"{where}.gidMappings")
        if bool(self.uid_mappings) != bool(self.gid_mappings):
            raise InvalidArgument(f"{where}: uidMappings and gidMappings must be given together")


def escapes(path: str) -> bool:
    """True if ``..`` components climb above the root of ``path``."""
    depth = 0
    for part in path.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part and part != ".":
            depth += 1
    return False


class Hook:
    __slots__ = ("args", "env", "path", "timeout")

    def __init__(self, d: dict[str, object], where: str) -> None:
        self.path = _str(d.get("path"), f"{where}.path")
        if not self.path.startswith("/"):
            raise InvalidArgument(f"{where}.path: must be an absolute path")
        self.args = _strs(d.get("args"), f"{where}.args")
        self.env = _strs(d.get("env"), f"{where}.env")
        t = d.get("timeout")
        self.timeout = None if t is None else _int(t, f"{where}.timeout")
        if self.timeout is not None and self.timeout <= 0:
            raise InvalidArgument(f"{where}.timeout: must be greater than zero")


class Namespace:
    __slots__ = ("path", "type")

    def __init__(self, d: dict[str, object], where: str) -> None:
        self.type = _str(d.get("type"), f"{where}.type")
        if self.type not in NAMESPACE_TYPES:
            raise InvalidArgument(f"{where}.type: unknown namespace {self.type!r}")
        self.path = _str(d.get("path"), f"{where}.path")


class Device:
    __slots__ = ("file_mode", "gid", "major", "minor", "path", "type", "uid")

    def __init__(self, d: dict[str, object], where: str) -> None:
        self.path = _str(d.get("path"), f"{where}.path")
        if not self.path.startswith("/") or escapes(self.path):
            raise InvalidArgument(f"{where}.path: must be an absolute path inside the container")
        self.type = _str(d.get("type"), f"{where}.type")
        if self.type not in ("c", "b", "u", "p"):
            raise InvalidArgument(f"{where}.type: must be one of c, b, u, p")
        self.major = _int(d.get("major"), f"{where}.major", lo=0)
        self.minor = _int(d.get("minor"), f"{where}.minor", lo=0)
        if self.type != "p" and ("major" not in d or "minor" not in d):
            raise InvalidArgument(f"{where}: major and minor are required for type {self.type}")
        self.file_mode = _opt_int(d.get("fileMode"), f"{where}.fileMode")
        self.uid = _opt_int(d.get("uid"), f"{where}.uid")
        self.gid = _opt_int(d.get("gid"), f"{where}.gid")


class Linux:
    __slots__ = (
        "cgroups_path", "devices", "gid_mappings", "intel_rdt", "masked_paths", "mount_label",
        "namespaces", "personality", "readonly_paths", "resources", "rootfs_propagation",
        "seccomp", "sysctl", "time_offsets", "uid_mappings",
    )

    def __init__(self, d: dict[str, object]) -> None:
        nss = [Namespace(_obj(n, f"linux.namespaces[{i}]"), f"linux.namespaces[{i}]")
               for i, n in enumerate(_list(d.get("namespaces"), "linux.namespaces"))]
        seen: set[str] = set()
        for ns in nss:
            if ns.type in seen:
                raise InvalidArgument(f"linux.namespaces: duplicate namespace {ns.type!r}")
            seen.add(ns.type)
        self.namespaces = nss
        self.uid_mappings = _mappings(d.get("uidMappings"), "linux.uidMappings")
        self.gid_mappings = _mappings(d.get("gidMappings"), "linux.gidMappings")
        userns = self.namespace("user")
        if (self.uid_mappings or self.gid_mappings) and userns is None:
            raise InvalidArgument("linux.uidMappings: given without a user namespace")
        if userns is not None and not userns.path and not (self.uid_mappings and self.gid_mappings):
            raise InvalidArgument(
                "linux.namespaces: a new user namespace needs linux.uidMappings and gidMappings"
            )
        self.time_offsets: dict[str, tuple[int, int]] = {}
        for clock, off in _obj(d.get("timeOffsets"), "linux.timeOffsets").items():
            if clock not in ("monotonic", "boottime"):
                raise InvalidArgument(f"linux.timeOffsets: unknown clock {clock!r}")
            o = _obj(off, f"linux.timeOffsets.{clock}")
            where = f"linux.timeOffsets.{clock}"
            self.time_offsets[clock] = (
                _int(o.get("secs"), f"{where}.secs"), _int(o.get("nanosecs"), f"{where}.nanosecs")
            )
        timens = self.namespace("time")
        if self.time_offsets and (timens is None or timens.path):
            raise InvalidArgument("linux.timeOffsets: needs a new time namespace")
        self.devices = [Device(_obj(x, f"linux.devices[{i}]"), f"linux.devices[{i}]")
                        for i, x in enumerate(_list(d.get("devices"), "linux.devices"))]
        cp = d.get("cgroupsPath")
        self.cgroups_path = None if cp is None else _str(cp, "linux.cgroupsPath")
        res = d.get("resources")
        self.resources: Resources | None = None
        if res is not None:
            from pallet.oci.resources import parse_resources

            self.resources = parse_resources(res)
        self.rootfs_propagation = _str(d.get("rootfsPropagation"), "linux.rootfsPropagation")
        if self.rootfs_propagation and self.rootfs_propagation not in ROOTFS_PROPAGATION:
            raise InvalidArgument(
                f"linux.rootfsPropagation: unknown propagation {self.rootfs_propagation!r}"
            )
        sec = d.get("seccomp")
        self.seccomp: dict[str, object] | None = None
        if sec is not None:
            # Its rules are checked by the runtime's seccomp compiler, which knows them.
            self.seccomp = _obj(sec, "linux.seccomp")
        self.sysctl = _str_map(d.get("sysctl"), "linux.sysctl")
        self.masked_paths = _strs(d.get("maskedPaths"), "linux.maskedPaths")
        self.readonly_paths = _strs(d.get("readonlyPaths"), "linux.readonlyPaths")
        for path in self.masked_paths + self.readonly_paths:
            if not path.startswith("/") or escapes(path):
                raise InvalidArgument(f"linux.maskedPaths/readonlyPaths: bad path {path!r}")
        self.mount_label = _str(d.get("mountLabel"), "linux.mountLabel")
        pers = d.get("personality")
        self.personality: str | None = None
        if pers is not None:
            p = _obj(pers, "linux.personality")
            dom = _str(p.get("domain"), "linux.personality.domain")
            if dom not in PERSONALITY_DOMAINS:
                raise InvalidArgument(f"linux.personality.domain: unknown domain {dom!r}")
            if _strs(p.get("flags"), "linux.personality.flags"):
                raise InvalidArgument("linux.personality.flags: no flags are supported")
            self.personality = dom
        self.intel_rdt = d.get("intelRdt")

    def namespace(self, kind: str) -> Namespace | None:
        for ns in self.namespaces:
            if ns.type == kind:
                return ns
        return None


class Hooks:
    __slots__ = HOOK_KINDS

    def __init__(self, d: dict[str, object]) -> None:
        def hooks(kind: str) -> list[Hook]:
            return [Hook(_obj(h, f"hooks.{kind}[{i}]"), f"hooks.{kind}[{i}]")
                    for i, h in enumerate(_list(d.get(kind), f"hooks.{kind}"))]

        self.prestart = hooks("prestart")
        self.createRuntime = hooks("createRuntime")
        self.createContainer = hooks("createContainer")
        self.startContainer = hooks("startContainer")
        self.poststart = hooks("poststart")
        self.poststop = hooks("poststop")

    def get(self, kind: str) -> list[Hook]:
        hooks: list[Hook] = getattr(self, kind)
        return hooks


class Spec:
    __slots__ = ("annotations", "domainname", "hooks", "hostname", "linux", "mounts",
                 "oci_version", "process", "raw", "root")

    def __init__(self, d: dict[str, object]) -> None:
        self.raw = d
        self.oci_version = _str(d.get("ociVersion"), "ociVersion")
        if not self.oci_version:
            raise InvalidArgument("ociVersion: missing")
        if not self.oci_version.startswith("1."):
            raise InvalidArgument(f"ociVersion: unsupported version {self.oci_version!r}")
        p = d.get("process")
        self.process = Process(_obj(p, "process")) if p is not None else None
        r = d.get("root")
        self.root = Root(_obj(r, "root")) if r is not None else None
        self.hostname = _str(d.get("hostname"), "hostname")
        self.domainname = _str(d.get("domainname"), "domainname")
        self.mounts = [Mount(_obj(m, f"mounts[{i}]"), f"mounts[{i}]")
                       for i, m in enumerate(_list(d.get("mounts"), "mounts"))]
        self.hooks = Hooks(_obj(d.get("hooks"), "hooks"))
        self.annotations = _str_map(d.get("annotations"), "annotations")
        lx = d.get("linux")
        self.linux = Linux(_obj(lx, "linux")) if lx is not None else Linux({})
        uts = self.linux.namespace("uts")
        if (self.hostname or self.domainname) and (uts is None):
            raise InvalidArgument("hostname: setting it needs a new uts namespace")


def parse(data: str | bytes) -> Spec:
    """Parse and validate a config.json document."""
    from pallet.oci import jsonfast

    try:
        doc = jsonfast.loads(data)
    except (jsonfast.JSONError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"config.json: invalid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise InvalidArgument("config.json: must be a JSON object")
    return Spec(doc)
