"""A container's Config and HostConfig -> the OCI config.json, as dockerd makes it.

Pure: whatever needs the filesystem (the user's uid from the image's /etc/passwd, a
device's numbers, another container's namespace paths) is resolved by the caller and
passed in ``Context``. Docker's defaults are data here and in data/seccomp-default.json
(reference/dockerd-20.10/oci-config-generated-by-dockerd.json shows what dockerd writes).
"""

from __future__ import annotations

import json
import os
import posixpath
from dataclasses import dataclass, field
from typing import Any

from pallet.errors import InvalidArgument, NotSupported
from pallet.linux import caps

OCI_VERSION = "1.0.2-dev"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_SHM_SIZE = 64 * 1024 * 1024
# Docker's default capability set (moby oci/caps/defaults.go), in dockerd's order.
DEFAULT_CAPS = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)
MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
# Devices every container may use (dockerd's default device rules, after deny-all).
DEFAULT_DEVICE_RULES = (
    (True, "c", 1, 5), (True, "c", 1, 3), (True, "c", 1, 9), (True, "c", 1, 8),
    (True, "c", 5, 0), (True, "c", 5, 1), (False, "c", 10, 229),
)
# Docker's seccomp profile grants more syscalls with some capabilities.
SECCOMP_BY_CAP = {
    "CAP_DAC_READ_SEARCH": ("open_by_handle_at",),
    "CAP_SYS_ADMIN": ("bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount",
                      "fsopen", "fspick", "lookup_dcookie", "mount", "mount_setattr",
                      "move_mount", "name_to_handle_at", "open_tree", "perf_event_open",
                      "quotactl", "quotactl_fd", "setdomainname", "sethostname", "setns",
                      "syslog", "umount", "umount2", "unshare"),
    "CAP_SYS_BOOT": ("reboot",),
    "CAP_SYS_MODULE": ("delete_module", "init_module", "finit_module"),
    "CAP_SYS_PACCT": ("acct",),
    "CAP_SYS_PTRACE": ("kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv",
                       "process_vm_writev", "ptrace"),
    "CAP_SYS_RAWIO": ("iopl", "ioperm"),
    "CAP_SYS_TIME": ("settimeofday", "stime", "clock_settime", "clock_settime64"),
    "CAP_SYS_TTY_CONFIG": ("vhangup",),
    "CAP_SYS_NICE": ("get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"),
    "CAP_SYSLOG": ("syslog",),
    "CAP_BPF": ("bpf",),
    "CAP_PERFMON": ("perf_event_open",),
}
ALL_CAPS = caps.NAMES
INIT_IN_CONTAINER = "/sbin/docker-init"
RLIMITS = ("core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile",
           "nproc", "rss", "rtprio", "rttime", "sigpending", "stack", "as")


@dataclass
class Device:
    """A host device node for the container: where it appears and its numbers."""

    path: str  # inside the container
    type: str  # "c" | "b"
    major: int
    minor: int
    permissions: str = "rwm"
    file_mode: int = 0o666
    uid: int = 0
    gid: int = 0


@dataclass
class Context:
    """What the caller resolved against the host and the image."""

    cid: str
    rootfs: str
    uid: int = 0
    gid: int = 0
    groups: list[int] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # "hosts" | "hostname" | ... -> path
    devices: list[Device] = field(default_factory=list)
    ns_paths: dict[str, str] = field(default_factory=dict)  # "pid" | "ipc" | ... -> path
    cgroupns_default: str = "host"  # "private" on a pure cgroup v2 host
    cgroup_parent: str = "/pallet"
    init_path: str = ""  # the static init binary --init runs as pid 1
    block_devices: dict[str, tuple[int, int]] = field(default_factory=dict)  # path -> maj:min
    # binds, volumes and --mount tmpfs, host sides ready (engine/mounts.py oci_mount)
    mounts: list[dict[str, Any]] = field(default_factory=list)


def bounding_set() -> tuple[str, ...]:
    """The capabilities this process may hand on (/proc/self/status CapBnd): --privileged
    gets all of them, not ones the host withholds from us."""
    try:
        with open("/proc/self/status") as f:
            mask = next(int(line.split()[1], 16) for line in f if line.startswith("CapBnd:"))
    except (OSError, StopIteration):
        return tuple(ALL_CAPS)
    return tuple(c for i, c in enumerate(ALL_CAPS) if mask >> i & 1)


def capabilities(add: list[str] | None, drop: list[str] | None,
                 privileged: bool) -> list[str]:
    """Docker's default set with --cap-add/--cap-drop applied (names with or without CAP_)."""
    if privileged:
        return list(bounding_set())

    def norm(name: str) -> str:
        n = name.strip().upper()
        if n == "ALL":
            return n
        n = n if n.startswith("CAP_") else "CAP_" + n
        if n not in ALL_CAPS:
            raise InvalidArgument(f"unknown capability: \"{name}\"")
        return n

    adds = [norm(c) for c in add or []]
    drops = [norm(c) for c in drop or []]
    if "ALL" in drops:
        caps: list[str] = []
    else:
        caps = [c for c in DEFAULT_CAPS if c not in drops]
    if "ALL" in adds:
        return [c for c in bounding_set() if c not in drops or c in adds]
    for c in adds:
        if c not in caps:
            caps.append(c)
    return caps


_SECCOMP_TEXT: str | None = None  # data/seccomp-default.json, read once


def _default_seccomp() -> dict[str, Any]:
    """A fresh copy of Docker's profile (the caller adds to it)."""
    global _SECCOMP_TEXT
    if _SECCOMP_TEXT is None:
        with open(os.path.join(os.path.dirname(__file__), "data", "seccomp-default.json")) as f:
            _SECCOMP_TEXT = f.read()
    profile: dict[str, Any] = json.loads(_SECCOMP_TEXT)
    return profile


def seccomp_profile(caps: list[str]) -> dict[str, Any]:
    """Docker's default profile for a container with ``caps``."""
    profile = _default_seccomp()
    extra: list[str] = []
    for cap in caps:
        extra.extend(SECCOMP_BY_CAP.get(cap, ()))
    if extra:
        if "CAP_SYS_ADMIN" in caps:
            # clone without the namespace-flag mask, clone3 allowed rather than ENOSYS
            profile["syscalls"] = [r for r in profile["syscalls"]
                                   if r["names"] not in (["clone"], ["clone3"])]
        profile["syscalls"].append({"names": sorted(set(extra)), "action": "SCMP_ACT_ALLOW"})
    return profile


def _security_opts(opts: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for opt in opts or []:
        key, sep, value = opt.partition("=")
        if not sep:
            key, sep, value = opt.partition(":")  # the old "seccomp:unconfined" spelling
        if key == "no-new-privileges":
            if value not in ("", "true", "false"):
                raise InvalidArgument(f"invalid --security-opt: {opt!r}")
            out[key] = value or "true"
            continue
        if key not in ("seccomp", "apparmor", "label", "systempaths", "mask", "unmask"):
            raise InvalidArgument(f"invalid --security-opt 1: {opt!r}")
        if not sep:
            raise InvalidArgument(f"invalid --security-opt 2: {opt!r}")
        out[key] = value
    return out


def build(cfg: dict[str, Any], hc: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """The OCI config for the container (Config ``cfg`` merged with its image's)."""
    privileged = bool(hc.get("Privileged"))
    sec = _security_opts(hc.get("SecurityOpt"))
    caps = capabilities(hc.get("CapAdd"), hc.get("CapDrop"), privileged)
    args = list(cfg.get("Entrypoint") or []) + list(cfg.get("Cmd") or [])
    if not args:
        raise InvalidArgument("no command specified")
    if hc.get("Init"):
        # A small init as pid 1: it forwards signals and reaps zombies (docker-init).
        args = [INIT_IN_CONTAINER, "--", *args]
    env = list(cfg.get("Env") or [])
    if not any(e.startswith("PATH=") for e in env):
        env.insert(0, "PATH=" + DEFAULT_PATH)
    uts_host = hc.get("UTSMode") == "host"
    net_mode = str(hc.get("NetworkMode") or "default")
    hostname = str(cfg.get("Hostname") or ctx.cid[:12])
    if not uts_host:
        env.insert(1, f"HOSTNAME={hostname}")
    if cfg.get("Tty") and not any(e.startswith("TERM=") for e in env):
        env.append("TERM=xterm")
    process: dict[str, Any] = {
        "terminal": bool(cfg.get("Tty")),
        "user": {"uid": ctx.uid, "gid": ctx.gid,
                 "additionalGids": sorted({ctx.gid, *ctx.groups})},
        "args": args,
        "env": env,
        "cwd": cfg.get("WorkingDir") or "/",
        "capabilities": {k: list(caps) for k in ("bounding", "effective", "permitted")},
        "oomScoreAdj": int(hc.get("OomScoreAdj") or 0),
    }
    if cfg.get("Tty") and hc.get("ConsoleSize") and any(hc["ConsoleSize"]):
        h, w = hc["ConsoleSize"]
        process["consoleSize"] = {"height": int(h), "width": int(w)}
    if sec.get("no-new-privileges") == "true":
        process["noNewPrivileges"] = True
    if sec.get("apparmor") and sec["apparmor"] != "unconfined":
        process["apparmorProfile"] = sec["apparmor"]
    if sec.get("label") and sec["label"] != "disable":
        raise NotSupported("--security-opt label: SELinux is not enabled on this host")
    rlimits = []
    for ul in hc.get("Ulimits") or []:
        name = str(ul.get("Name", "")).lower()
        if name not in RLIMITS:
            raise InvalidArgument(f"invalid ulimit type: {name}")
        rlimits.append({"type": "RLIMIT_" + name.upper(), "hard": int(ul.get("Hard", 0)),
                        "soft": int(ul.get("Soft", 0))})
    if rlimits:
        process["rlimits"] = rlimits

    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": ctx.rootfs, "readonly": bool(hc.get("ReadonlyRootfs"))},
        "mounts": _mounts(cfg, hc, ctx, privileged),
        "linux": _linux(hc, ctx, privileged, caps, sec, net_mode),
    }
    if not uts_host:
        spec["hostname"] = hostname
        if cfg.get("Domainname"):
            spec["domainname"] = cfg["Domainname"]
    return spec


def _mounts(cfg: dict[str, Any], hc: dict[str, Any], ctx: Context,
            privileged: bool) -> list[dict[str, Any]]:
    ro = [] if privileged else ["ro"]
    shm = int(hc.get("ShmSize") or DEFAULT_SHM_SIZE)
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", *ro]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": [*ro, "nosuid", "noexec", "nodev"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
    ]
    ipc = str(hc.get("IpcMode") or "private")
    if ipc not in ("host", "none") and not ipc.startswith("container:"):
        mounts.append({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                       "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={shm}"]})
    elif ipc == "host":
        mounts.append({"destination": "/dev/shm", "type": "bind", "source": "/dev/shm",
                       "options": ["rbind", "rprivate"]})
    # --tmpfs, and the binds, volumes and --mount tmpfs the caller resolved, parents
    # before what is mounted inside them.
    user = [{"destination": dest, "type": "tmpfs", "source": "tmpfs",
             "options": ["noexec", "nosuid", "nodev", *[o for o in str(opts).split(",") if o]]}
            for dest, opts in (hc.get("Tmpfs") or {}).items()]
    user += ctx.mounts
    user.sort(key=lambda m: posixpath.normpath(m["destination"]).count("/"))
    mounts += user
    taken = {m["destination"] for m in user}
    if hc.get("Init"):
        if not ctx.init_path:
            raise NotSupported("--init: no init binary is configured")
        mounts.append({"destination": INIT_IN_CONTAINER, "type": "bind",
                       "source": ctx.init_path, "options": ["bind", "ro"]})
    for name, dest in (("resolv.conf", "/etc/resolv.conf"), ("hostname", "/etc/hostname"),
                       ("hosts", "/etc/hosts")):
        if name in ctx.files and dest not in taken:
            mounts.append({"destination": dest, "type": "bind", "source": ctx.files[name],
                           "options": ["rbind", "rprivate"]})
    return mounts


def _namespaces(hc: dict[str, Any], ctx: Context, net_mode: str) -> list[dict[str, str]]:
    out: list[dict[str, str]] = [{"type": "mount"}]

    def add(kind: str, mode: str) -> None:
        if mode == "host":
            return
        if mode.startswith("container:") or kind in ctx.ns_paths:
            # resolved at start (another container's, or the netns palletd made); at
            # create (validation) the other may not run yet
            out.append({"type": kind, "path": ctx.ns_paths.get(kind, f"/proc/1/ns/{kind}")})
            return
        out.append({"type": kind})

    add("network", net_mode)
    add("uts", str(hc.get("UTSMode") or ""))
    add("pid", str(hc.get("PidMode") or ""))
    add("ipc", str(hc.get("IpcMode") or ""))
    cgns = str(hc.get("CgroupnsMode") or ctx.cgroupns_default)
    if cgns not in ("host", "private"):
        raise InvalidArgument(f"invalid cgroup namespace mode: {cgns}")
    if cgns == "private":
        out.append({"type": "cgroup"})
    userns = str(hc.get("UsernsMode") or "")
    if userns not in ("", "host"):
        raise NotSupported(f"--userns={userns}: user namespace remapping is not supported yet")
    return out


def _linux(hc: dict[str, Any], ctx: Context, privileged: bool, caps: list[str],
           sec: dict[str, str], net_mode: str) -> dict[str, Any]:
    linux: dict[str, Any] = {
        "resources": resources(hc, ctx, privileged),
        "cgroupsPath": f"{hc.get('CgroupParent') or ctx.cgroup_parent}/{ctx.cid}",
        "namespaces": _namespaces(hc, ctx, net_mode),
    }
    sysctl: dict[str, str] = {}
    if net_mode != "host" and not net_mode.startswith("container:"):
        sysctl = {"net.ipv4.ip_unprivileged_port_start": "0",
                  "net.ipv4.ping_group_range": "0 2147483647"}
    sysctl.update({str(k): str(v) for k, v in (hc.get("Sysctls") or {}).items()})
    if sysctl:
        linux["sysctl"] = sysctl
    devices = [{"path": d.path, "type": d.type, "major": d.major, "minor": d.minor,
                "fileMode": d.file_mode, "uid": d.uid, "gid": d.gid} for d in ctx.devices]
    if devices:
        linux["devices"] = devices
    seccomp = sec.get("seccomp", "")
    if not privileged and seccomp != "unconfined":
        if seccomp:
            try:
                linux["seccomp"] = json.loads(seccomp)
            except ValueError:
                raise InvalidArgument("decoding seccomp profile failed: invalid JSON") from None
        else:
            linux["seccomp"] = seccomp_profile(caps)
    unmasked = sec.get("systempaths") == "unconfined"
    if not privileged and not unmasked:
        linux["maskedPaths"] = list(hc.get("MaskedPaths") or MASKED_PATHS)
        linux["readonlyPaths"] = list(hc.get("ReadonlyPaths") or READONLY_PATHS)
    return linux


def resources(hc: dict[str, Any], ctx: Context, privileged: bool) -> dict[str, Any]:
    """linux.resources from HostConfig's resource fields (also what `update` applies)."""
    res: dict[str, Any] = {}
    if privileged:
        res["devices"] = [{"allow": True, "access": "rwm"}]
    else:
        rules: list[dict[str, Any]] = [{"allow": False, "access": "rwm"}]
        rules += [{"allow": a, "type": t, "major": ma, "minor": mi, "access": "rwm"}
                  for a, t, ma, mi in DEFAULT_DEVICE_RULES]
        rules += [{"allow": True, "type": d.type, "major": d.major, "minor": d.minor,
                   "access": d.permissions} for d in ctx.devices]
        for rule in hc.get("DeviceCgroupRules") or []:
            rules.append(device_cgroup_rule(rule))
        res["devices"] = rules
    mem: dict[str, Any] = {}
    limit = int(hc.get("Memory") or 0)
    if limit:
        mem["limit"] = limit
        swap = int(hc.get("MemorySwap") or 0)
        mem["swap"] = swap if swap else 2 * limit
    if hc.get("MemoryReservation"):
        mem["reservation"] = int(hc["MemoryReservation"])
    if hc.get("MemorySwappiness") is not None and int(hc["MemorySwappiness"]) >= 0:
        mem["swappiness"] = int(hc["MemorySwappiness"])
    if hc.get("OomKillDisable"):
        mem["disableOOMKiller"] = True
    if mem:
        res["memory"] = mem
    cpu: dict[str, Any] = {}
    if hc.get("CpuShares"):
        cpu["shares"] = int(hc["CpuShares"])
    nano = int(hc.get("NanoCpus") or 0)
    if nano:
        cpu["period"] = 100000
        cpu["quota"] = nano * 100000 // 1_000_000_000
    if hc.get("CpuPeriod"):
        cpu["period"] = int(hc["CpuPeriod"])
    if hc.get("CpuQuota"):
        cpu["quota"] = int(hc["CpuQuota"])
    if hc.get("CpuRealtimePeriod"):
        cpu["realtimePeriod"] = int(hc["CpuRealtimePeriod"])
    if hc.get("CpuRealtimeRuntime"):
        cpu["realtimeRuntime"] = int(hc["CpuRealtimeRuntime"])
    if hc.get("CpusetCpus"):
        cpu["cpus"] = str(hc["CpusetCpus"])
    if hc.get("CpusetMems"):
        cpu["mems"] = str(hc["CpusetMems"])
    if cpu:
        res["cpu"] = cpu
    pids = int(hc.get("PidsLimit") or 0)
    if pids > 0:
        res["pids"] = {"limit": pids}
    if hc.get("NetClsClassid"):
        # beyond docker: host traffic control can classify the container's packets
        res["network"] = {"classID": int(hc["NetClsClassid"])}
    blkio: dict[str, Any] = {}
    if hc.get("BlkioWeight"):
        blkio["weight"] = int(hc["BlkioWeight"])

    def numbers(path: str) -> dict[str, int]:
        if path not in ctx.block_devices:
            raise InvalidArgument(f"{path} is not a block device")
        major, minor = ctx.block_devices[path]
        return {"major": major, "minor": minor}

    if hc.get("BlkioWeightDevice"):
        blkio["weightDevice"] = [{**numbers(d["Path"]), "weight": int(d["Weight"])}
                                 for d in hc["BlkioWeightDevice"]]
    for key, oci in (("BlkioDeviceReadBps", "throttleReadBpsDevice"),
                     ("BlkioDeviceWriteBps", "throttleWriteBpsDevice"),
                     ("BlkioDeviceReadIOps", "throttleReadIOPSDevice"),
                     ("BlkioDeviceWriteIOps", "throttleWriteIOPSDevice")):
        if hc.get(key):
            blkio[oci] = [{**numbers(d["Path"]), "rate": int(d["Rate"])} for d in hc[key]]
    if blkio:
        res["blockIO"] = blkio
    return res


def device_cgroup_rule(rule: str) -> dict[str, Any]:
    """``c 1:3 rwm`` / ``b *:* m`` -> an OCI device rule."""
    parts = rule.split()
    if len(parts) != 3 or parts[0] not in ("a", "b", "c") or ":" not in parts[1] or \
            not parts[2] or set(parts[2]) - set("rwm"):
        raise InvalidArgument(f"invalid device cgroup rule format: '{rule}'")
    major, _, minor = parts[1].partition(":")
    out: dict[str, Any] = {"allow": True, "type": parts[0], "access": parts[2]}
    for key, value in (("major", major), ("minor", minor)):
        if value != "*":
            if not value.isdigit():
                raise InvalidArgument(f"invalid device cgroup rule format: '{rule}'")
            out[key] = int(value)
    return out
