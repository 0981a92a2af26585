"""`ps`, `events`, `update` and `features`: looking at a live container and adjusting it.

All four are cold paths (never on run/create/start/delete/kill/state), so the heavier
stdlib modules they need (subprocess, json, select) are imported inside the function
that needs them. The parts with rules of their own — the PID column of `ps` output,
runc's size and number syntax for `update` flags, the features document — are plain
functions so unit tests reach them without a container.
"""

from __future__ import annotations

import os
import sys
import time

from pallet.errors import InvalidArgument, InvalidState, NotSupported, PalletError, SystemFailure
from pallet.oci import jsonfast
from pallet.runtime import state

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    from pallet.oci.resources import Resources
    from pallet.runtime.cgroups import Cgroup
    from pallet.runtime.cli import Args

I64_MAX = (1 << 63) - 1
U64_MAX = (1 << 64) - 1


def _out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _warn(msg: str) -> None:
    """A logrus-style warning line on stderr, as runc prints its warnings."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    sys.stderr.write(f'time="{now}" level=warning msg={jsonfast.dumps(msg)}\n')


def _cgroup(ctr: state.Container, verb: str) -> Cgroup:
    from pallet.runtime.cgroups import Cgroup

    if not ctr.cgroup_paths:
        raise InvalidState(f"cannot {verb} container {ctr.id}: it has no cgroup", op=verb,
                           obj=ctr.id)
    return Cgroup.from_paths(ctr.cgroup_paths)


# --- ps ---------------------------------------------------------------------------------


def pid_column(header: str) -> int:
    """Index of the PID field in a ps header line (procps `-ef`: 1, busybox: 0)."""
    for i, name in enumerate(header.split()):
        if name == "PID":
            return i
    raise SystemFailure("couldn't find PID field in ps output", op="ps")


def filter_ps(output: str, pids: Iterable[int]) -> str:
    """The header of ``ps`` output and the rows whose PID is one of ``pids``."""
    lines = output.split("\n")
    column = pid_column(lines[0])
    wanted = set(pids)
    kept = [lines[0]]
    for line in lines[1:]:
        if not line:
            continue
        fields = line.split()
        try:
            pid = int(fields[column])
        except (IndexError, ValueError):
            raise SystemFailure(f"unable to parse pid from ps line {line!r}", op="ps") from None
        if pid in wanted:
            kept.append(line)
    return "".join(f"{line}\n" for line in kept)


def verb_ps(root: str, a: Args) -> int:
    fmt = a.str("format", "table")
    if fmt not in ("table", "json"):
        raise InvalidArgument(f"invalid format option: {fmt}")
    ctr = state.load(root, a.positional[0])
    ctr.require("ps")
    pids = _cgroup(ctr, "ps").pids()
    if fmt == "json":
        _out(jsonfast.dumps(pids) + "\n")
        return 0
    import subprocess

    args = a.positional[1:] or ["-ef"]
    try:
        proc = subprocess.run(["ps", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, check=False)
    except FileNotFoundError:
        raise NotSupported('exec: "ps": executable file not found in $PATH', op="ps") from None
    output = proc.stdout.decode(errors="replace")
    if proc.returncode != 0:
        raise SystemFailure(f"exit status {proc.returncode}: {output.strip()}", op="ps",
                            obj=ctr.id)
    _out(filter_ps(output, pids))
    return 0


# --- events -----------------------------------------------------------------------------

# How often a streaming `events` looks at the OOM counter between two stats events.
OOM_POLL = 0.5


def parse_duration(text: str) -> float:
    """Seconds in a Go duration ("5s", "1m30s", "250ms", "1.5h"), as --interval takes."""
    from pallet.oci.duration import parse_go_duration

    try:
        return parse_go_duration(text) / 1e9
    except ValueError:
        raise InvalidArgument(f'invalid value "{text}" for flag -interval: time: invalid '
                              f'duration "{text}"') from None


def stats_event(cid: str, data: dict[str, object]) -> dict[str, object]:
    """runc's ``{"type": "stats", ...}`` event around a Cgroup.stats() dict."""
    body = dict(data)
    # Not cgroup statistics, but runc's event carries them always (Intel RDT is not
    # supported here, and runc itself leaves network_interfaces null).
    body.setdefault("intel_rdt", {})
    body.setdefault("network_interfaces", None)
    return {"type": "stats", "id": cid, "data": body}


def _pidfd(ctr: state.Container) -> int | None:
    """A pidfd of the container's init, or None if it is already gone (or was replaced)."""
    try:
        fd = os.pidfd_open(ctr.pid)
    except ProcessLookupError:
        return None
    # Opened after the status check: make sure the pid still names our init.
    if ctr.status() == state.STOPPED:
        os.close(fd)
        return None
    return fd


def verb_events(root: str, a: Args) -> int:
    interval = parse_duration(a.str("interval", "5s"))
    if interval <= 0:
        raise InvalidArgument("duration interval must be greater than 0")
    ctr = state.load(root, a.positional[0])
    if ctr.status() == state.STOPPED:
        raise InvalidState(f"container with id {ctr.id} is not running", op="events",
                           obj=ctr.id, state=state.STOPPED)
    cg = _cgroup(ctr, "events")
    if a.bool("stats"):
        _out(jsonfast.dumps(stats_event(ctr.id, cg.stats())) + "\n")
        return 0
    return _stream(ctr, cg, interval)


def _stream(ctr: state.Container, cg: Cgroup, interval: float) -> int:
    """Stats every ``interval``, an oom event per OOM kill, until the container stops.

    The OOM counter is polled (every OOM_POLL seconds) rather than waited on through a
    v1 eventfd or v2 inotify: it works the same on every layout and a kill is counted
    even if it happened between two looks. The init's pidfd ends the stream at once.
    """
    import select

    pidfd = _pidfd(ctr)
    if pidfd is None:
        return 0
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    try:
        seen = cg.oom_kills()
        next_stats = time.monotonic() + interval
        while True:
            now = time.monotonic()
            wait = max(0.0, min(next_stats - now, OOM_POLL))
            exited = bool(poller.poll(wait * 1000))
            kills = cg.oom_kills()
            for _ in range(max(0, kills - seen)):
                _out(jsonfast.dumps({"type": "oom", "id": ctr.id}) + "\n")
            seen = max(seen, kills)
            if exited:
                return 0
            if time.monotonic() >= next_stats:
                try:
                    data = cg.stats()
                except PalletError:
                    if ctr.status() == state.STOPPED:
                        return 0  # gone (and deleted) between the poll and the read
                    raise
                _out(jsonfast.dumps(stats_event(ctr.id, data)) + "\n")
                next_stats += interval
                if next_stats < time.monotonic():  # a slow reader or a suspended host
                    next_stats = time.monotonic() + interval
    finally:
        os.close(pidfd)


# --- update -----------------------------------------------------------------------------

_BINARY_UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def ram_in_bytes(text: str) -> int:
    """Bytes in a size such as "512m", "1.5g", "64KiB", "1 GB" (docker/go-units
    RAMInBytes: binary multiples, optional "b"/"ib" after the unit, any case)."""
    invalid = InvalidArgument(f"invalid size: '{text}'")
    sep = max(text.rfind(c) for c in "0123456789. ")
    if sep == -1:
        raise invalid
    if text[sep] == " ":
        number, suffix = text[:sep], text[sep + 1:]
    else:
        number, suffix = text[: sep + 1], text[sep + 1:]
    size = _go_float(number)
    if size is None or size < 0:
        raise invalid
    sfx = suffix.lower()
    if sfx and sfx != "b":
        unit = _BINARY_UNITS.get(sfx[0])
        if unit is None or len(sfx) > 3 or (len(sfx) == 2 and sfx[1] != "b") or (
            len(sfx) == 3 and sfx[1:] != "ib"
        ):
            raise InvalidArgument(f"invalid suffix: '{sfx}'")
        size *= unit
    if size > I64_MAX:
        raise invalid
    return int(size)


def _go_float(text: str) -> float | None:
    """strconv.ParseFloat for plain decimals ("12", "1.5", ".5", "1e3"); None if not one."""
    mantissa, e, exponent = text.lower().partition("e")
    if mantissa[:1] in ("+", "-"):
        mantissa = mantissa[1:]
    whole, _, frac = mantissa.partition(".")
    digits = whole + frac
    if not digits or not (digits.isascii() and digits.isdigit()):
        return None
    if e:
        exp = exponent[1:] if exponent[:1] in ("+", "-") else exponent
        if not (exp.isascii() and exp.isdigit()):
            return None
    try:
        return float(text)
    except (ValueError, OverflowError):
        return None


def _go_int(flag: str, text: str, lo: int, hi: int) -> int:
    """strconv.ParseInt/ParseUint (base 10) of a flag value, runc's message on failure."""
    digits = text[1:] if text[:1] in ("+", "-") else text
    kind = "an unsigned integer" if lo == 0 else "an integer"
    if not digits or not (digits.isascii() and digits.isdigit()):
        raise InvalidArgument(f"invalid value for {flag}: {text!r} is not {kind}")
    value = int(text)
    if not lo <= value <= hi:
        raise InvalidArgument(f"invalid value for {flag}: {text} is out of range")
    return value


def _int_flag(flag: str, text: str) -> int:
    """A urfave IntFlag (--pids-limit, --blkio-weight): its parse error if not a number."""
    digits = text[1:] if text[:1] in ("+", "-") else text
    if not digits or not (digits.isascii() and digits.isdigit()):
        raise InvalidArgument(f'invalid value "{text}" for flag -{flag}: parse error')
    return int(text)


def update_from_flags(a: Args) -> dict[str, object]:
    """runc update's single-value flags as a ``linux.resources`` JSON object.

    Empty values are "not given" and, as in runc, 0 for --pids-limit and --blkio-weight
    too (they are integer flags whose default is 0); "-1" means unlimited for the memory
    flags.
    """
    memory: dict[str, object] = {}
    cpu: dict[str, object] = {}
    out: dict[str, object] = {}
    if a.str("blkio_weight"):
        weight = _int_flag("blkio-weight", a.str("blkio_weight"))
        if weight:
            out["blockIO"] = {"weight": weight}
    for flag, key in (("cpuset-cpus", "cpus"), ("cpuset-mems", "mems")):
        if value := a.str(flag.replace("-", "_")):
            cpu[key] = value
    if value := a.str("cpu_idle"):
        cpu["idle"] = _go_int("cpu-idle", value, -(1 << 63), I64_MAX)
    for flag, key in (("cpu-burst", "burst"), ("cpu-period", "period"),
                      ("cpu-rt-period", "realtimePeriod"), ("cpu-share", "shares")):
        if value := a.str(flag.replace("-", "_")):
            cpu[key] = _go_int(flag, value, 0, U64_MAX)
    for flag, key in (("cpu-quota", "quota"), ("cpu-rt-runtime", "realtimeRuntime")):
        if value := a.str(flag.replace("-", "_")):
            cpu[key] = _go_int(flag, value, -(1 << 63), I64_MAX)
    for flag, key in (("memory", "limit"), ("memory-swap", "swap"),
                      ("memory-reservation", "reservation")):
        if value := a.str(flag.replace("-", "_")):
            try:
                memory[key] = -1 if value == "-1" else ram_in_bytes(value)
            except InvalidArgument as exc:
                raise InvalidArgument(f"invalid value for {flag}: {exc}") from None
    for flag in ("kernel-memory", "kernel-memory-tcp"):
        if a.str(flag.replace("-", "_")):
            _warn(f"Setting --{flag} is ignored and will be removed")
    if a.str("l3_cache_schema"):
        raise NotSupported("Intel RDT/CAT: l3 cache schema is not enabled", op="update")
    if a.str("mem_bw_schema"):
        raise NotSupported("Intel RDT/MBA: memory bandwidth schema is not enabled", op="update")
    if a.str("pids_limit"):
        limit = _int_flag("pids-limit", a.str("pids_limit"))
        if limit:
            out["pids"] = {"limit": limit}
    if memory:
        out["memory"] = memory
    if cpu:
        out["cpu"] = cpu
    return out


def _read_resources(source: str) -> object:
    """The JSON of --resources FILE, or of stdin for "-"."""
    try:
        if source == "-":
            raw = sys.stdin.buffer.read()
        else:
            with open(source, "rb") as f:
                raw = f.read()
    except OSError as exc:
        raise InvalidArgument(
            f"update --resources {source}: {exc.strerror or exc}", op="update"
        ) from exc
    try:
        return jsonfast.loads(raw)
    except ValueError as exc:
        where = "stdin" if source == "-" else source
        raise InvalidArgument(f"update --resources: {where}: invalid JSON: {exc}",
                              op="update") from None


def requested_update(a: Args) -> Resources:
    """What the command line asks to change, validated; nothing is touched yet.

    With --resources the other flags are ignored, as in runc. Device rules are never
    updated (runc skips them too): a caller such as containerd may send the container's
    whole resources object, devices included.
    """
    from pallet.oci.resources import parse_resources

    source = a.str("resources")
    raw = _read_resources(source) if source else update_from_flags(a)
    upd = parse_resources(raw, "resources")
    upd.devices = None
    return upd


def merged_resources(base: Resources, upd: Resources) -> Resources:
    """The container's resources after ``upd``: pallet.oci.resources.merge_update, plus
    runc's rule that an unlimited memory limit with no swap given makes swap unlimited
    too (else the old memory+swap limit would cap the "unlimited" memory)."""
    from pallet.oci.resources import merge_update

    mem = upd.memory
    if (mem is not None and mem.limit == -1 and mem.swap is None
            and base.memory is not None and base.memory.swap not in (None, 0, -1)):
        mem.swap = -1
    return merge_update(base, upd)


def verb_update(root: str, a: Args) -> int:
    update(root, a.positional[0], requested_update(a))
    return 0


def update(root: str, cid: str, upd: Resources) -> None:
    """Merge ``upd`` into the container's resources, write them to its cgroup, record
    them (the previous ones come back if the kernel refuses part of the new)."""
    from pallet.oci.resources import Resources, parse_resources

    lock = state.load(root, cid).lock()
    try:
        # Re-read under the lock: a concurrent update may have saved new resources.
        ctr = state.load(root, cid)
        ctr.require("update")
        cg = _cgroup(ctr, "update")
        linux = ctr.config.get("linux")
        linux = linux if isinstance(linux, dict) else {}
        stored = linux.get("resources")
        base = parse_resources(stored) if stored is not None else Resources()
        new = merged_resources(base, upd)
        _apply_or_restore(cg, ctr.id, new, base)
        config = ctr.config
        config["linux"] = {**linux, "resources": new.to_dict()}
        ctr.data["config"] = config
        ctr.save()
    finally:
        os.close(lock)


def _without_devices(res: Resources) -> Resources:
    from pallet.oci.resources import Resources, merge_update

    out = merge_update(res, Resources())
    out.devices = None
    return out


def _apply_or_restore(cg: Cgroup, cid: str, new: Resources, old: Resources) -> None:
    """Write ``new``; if the kernel refuses part of it, write ``old`` back (as runc does)
    so the container is not left half-updated, and report the refusal."""
    try:
        cg.apply(_without_devices(new))
    except (PalletError, OSError):
        try:
            cg.apply(_without_devices(old))
        except (PalletError, OSError) as again:
            _warn(f"update of {cid} failed and restoring its previous resources failed too: "
                  f"{again}")
        raise


# --- features ---------------------------------------------------------------------------

OCI_VERSION_MIN = "1.0.0"
# This host-independent part names pallet, not runc: the org.opencontainers namespace
# belongs to the OCI's own projects.
ANNOTATION_VERSION = "io.github.pallet.runtime.version"
ANNOTATION_LIBSECCOMP = "io.github.seccomp.libseccomp.version"


def _kernel_at_least(major: int, minor: int) -> bool:
    release = os.uname().release.split("-", 1)[0].split(".")
    try:
        have = (int(release[0]), int(release[1]) if len(release) > 1 else 0)
    except ValueError:
        return False
    return have >= (major, minor)


def features() -> dict[str, object]:
    """The runtime-spec features document (features.md, features-linux.md)."""
    from pallet.linux import caps
    from pallet.oci.spec import HOOK_KINDS, NAMESPACE_TYPES
    from pallet.runtime import mountopts, seccomp
    from pallet.runtime.cli import SPEC_VERSION, VERSION

    options = {*mountopts.FLAGS, *mountopts.PROPAGATION, *mountopts.RECURSIVE,
               *mountopts.EXTENSIONS}
    annotations = {ANNOTATION_VERSION: VERSION}
    seccomp_features = seccomp.features()
    if seccomp_features.get("enabled"):
        annotations[ANNOTATION_LIBSECCOMP] = seccomp.libseccomp_version()
    return {
        "ociVersionMin": OCI_VERSION_MIN,
        "ociVersionMax": SPEC_VERSION,
        "hooks": list(HOOK_KINDS),
        "mountOptions": sorted(options),
        "linux": {
            "namespaces": sorted(NAMESPACE_TYPES),
            "capabilities": list(caps.NAMES[: caps.last_cap() + 1]),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False,
                       "rdma": True},
            "seccomp": seccomp_features,
            # Where the host has the LSM: set_security_labels refuses a profile otherwise.
            "apparmor": {"enabled": os.path.isdir("/sys/kernel/security/apparmor")},
            "selinux": {"enabled": os.path.isdir("/sys/fs/selinux")},
            "intelRdt": {"enabled": False},
            # mount_setattr(MOUNT_ATTR_IDMAP) arrived in Linux 5.12.
            "mountExtensions": {"idmap": {"enabled": _kernel_at_least(5, 12)}},
        },
        "annotations": annotations,
        # pallet gives no config.json annotation any power over the container.
        "potentiallyUnsafeConfigAnnotations": [],
    }


def verb_features(root: str, a: Args) -> int:
    import json

    _out(json.dumps(features(), indent=4) + "\n")
    return 0
