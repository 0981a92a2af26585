"""A container's mounts as dockerd reads them: ``-v``, ``--mount``, ``--volumes-from`` and
the image's VOLUMEs, merged into the mount points the container records (pure).

Where each comes from in the create request::

    -v /host:/dst[:mode]   HostConfig.Binds          a bind (a missing host dir is made)
    -v name:/dst[:mode]    HostConfig.Binds          a named volume
    -v /dst                Config.Volumes            an anonymous volume
    VOLUME /dst            the image's Volumes       an anonymous volume
    --mount k=v,...        HostConfig.Mounts         bind | volume | tmpfs
    --volumes-from c[:ro]  HostConfig.VolumesFrom    the other container's mount points

``plan`` merges them in dockerd's order: volumes-from first, binds and mounts over them
(one of those two on a destination the other has is a "Duplicate mount point"), then
the anonymous volumes where nothing is mounted yet. A mount point is a dict (it lives
in the container's JSON record) with Docker's inspect fields and a private "Spec".
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pallet.errors import InvalidArgument, NotFound, NotSupported, PalletError

LOCAL = "local"
ANONYMOUS_LABEL = "com.docker.volume.anonymous"
VOLUME_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
PROPAGATIONS = ("private", "rprivate", "slave", "rslave", "shared", "rshared")
_RW_MODES = ("rw", "ro", "ro-non-recursive", "ro-force-recursive", "rro")
_READONLY = ("ro", "ro-non-recursive", "ro-force-recursive", "rro")
_LABEL_MODES = ("z", "Z")  # SELinux relabelling: accepted, nothing to do without SELinux
_CONSISTENCY = ("consistent", "cached", "delegated")  # Docker Desktop's; no-ops here
_LOCAL_OPTS = ("type", "o", "device", "size")
_PUBLIC = ("Type", "Name", "Source", "Destination", "Driver", "Mode", "RW", "Propagation")


@dataclass(frozen=True)
class Spec:
    """One requested mount, parsed and validated."""

    type: str  # "bind" | "volume" | "tmpfs"
    target: str
    source: str = ""  # bind: the host path; volume: its name ("" = anonymous)
    readonly: bool = False
    mode: str = ""  # what inspect shows as Mode (the -v mode text)
    propagation: str = ""  # bind only
    nonrecursive: bool = False  # bind: "bind" rather than "rbind"
    create_source: bool = False  # bind from -v: a missing host dir is made at start
    copy: bool = True  # volume: the image's content is copied into it while it is empty
    driver: str = ""
    driver_opts: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    subpath: str = ""  # volume: mount this directory of it
    tmpfs: str = ""  # tmpfs: its mount data ("size=64m,mode=1777")


# --- names and options of volumes ----------------------------------------------------------

def check_volume_name(name: str) -> None:
    """The local driver's rule for names, in dockerd's words."""
    if not VOLUME_NAME_RE.match(name):
        raise InvalidArgument(
            f'create {name}: "{name}" includes invalid characters for a local volume name, '
            'only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
            "directory, use absolute path", obj=name)


def check_driver(driver: str, missing: type[PalletError] = NotFound) -> str:
    """The driver to use ("" means local); only the local driver is built in. A
    container's create answers a missing one with ``missing`` = InvalidArgument: on a
    404 from create the docker CLI goes off to pull the image."""
    driver = driver or LOCAL
    if driver != LOCAL:
        raise missing(f'error looking up volume plugin {driver}: plugin "{driver}" not found',
                      obj=driver)
    return driver


def check_local_options(name: str, opts: dict[str, str]) -> None:
    """The local driver's options: ``type``, ``device`` and ``o`` (all three for a
    mount); ``size`` needs project quotas, which pallet does not set up."""
    for key in opts:
        if key not in _LOCAL_OPTS:
            raise InvalidArgument(f'create {name}: invalid option: "{key}"', obj=name)
    if "size" in opts:
        raise InvalidArgument(f"create {name}: quota size requested but no quota support",
                              obj=name)
    for key, needs in (("device", ("type",)), ("type", ("device",)), ("o", ("device", "type"))):
        if key in opts:
            for need in needs:
                if need not in opts:
                    raise InvalidArgument(f'create {name}: missing required option: "{need}"',
                                          obj=name)


# --- -v -----------------------------------------------------------------------------------

def _valid_mode(mode: str) -> bool:
    if mode == "":
        return True
    counts = [0, 0, 0, 0, 0]
    for o in mode.split(","):
        for i, group in enumerate((_RW_MODES, _LABEL_MODES, PROPAGATIONS, ("nocopy",),
                                   _CONSISTENCY)):
            if o in group:
                counts[i] += 1
                break
        else:
            return False
    return max(counts) <= 1


def parse_bind(raw: str, volume_driver: str = "") -> Spec:
    """One HostConfig.Binds entry: ``src:dst[:mode]``, or ``dst`` alone (anonymous)."""
    arr = raw.split(":", 3)
    if arr[0] == "":
        raise InvalidArgument(f"invalid volume specification: '{raw}'")
    mode = ""
    if len(arr) == 1:
        source, target = "", arr[0]
    elif len(arr) == 2:
        if _valid_mode(arr[1]):  # "/dst:ro": a mode but no source
            raise InvalidArgument(f"invalid volume specification: '{raw}'")
        source, target = arr
    elif len(arr) == 3:
        source, target, mode = arr
    else:
        raise InvalidArgument(f"invalid volume specification: '{raw}'")
    if not _valid_mode(mode):
        raise InvalidArgument(f"invalid mode: {mode}")
    opts = mode.split(",") if mode else []
    kind = "bind" if source.startswith("/") else "volume"
    prop = next((o for o in opts if o in PROPAGATIONS), "")
    try:
        _validate(kind, target, source, readonly=False,
                  bind_options=bool(prop), volume_options=False)
        if kind == "volume" and source:
            check_volume_name(source)
    except InvalidArgument as exc:
        if kind == "volume" and str(exc).startswith("create "):
            raise
        raise InvalidArgument(f"invalid volume specification: '{raw}': {exc}") from None
    readonly = any(o in _READONLY for o in opts)
    if kind == "bind":
        return Spec("bind", _clean(target), _clean(source), readonly, mode,
                    prop or "rprivate", create_source=True)
    # A named volume of the local driver shows Mode "z" (dockerd's setBindModeIfNull).
    driver = check_driver(volume_driver, InvalidArgument)
    shown = mode or ("z" if source and driver == LOCAL else "")
    return Spec("volume", _clean(target), source, readonly, shown,
                copy="nocopy" not in opts, driver=driver)


def parse_volumes_from(spec: str) -> tuple[str, str]:
    """``container[:mode]`` -> (container, mode); the mode is rw or ro (and z/Z)."""
    if not spec:
        raise InvalidArgument("volumes-from specification cannot be an empty string")
    ref, _, mode = spec.partition(":")
    if not mode:
        return ref, "rw"
    opts = mode.split(",")
    if not _valid_mode(mode) or any(o in PROPAGATIONS or o == "nocopy" for o in opts):
        raise InvalidArgument(f"invalid mode: {mode}")
    return ref, mode


# --- --mount --------------------------------------------------------------------------------

def _mount_error(kind: str, msg: str) -> InvalidArgument:
    return InvalidArgument(f'invalid mount config for type "{kind}": {msg}')


def _validate(kind: str, target: str, source: str, *, readonly: bool, bind_options: bool,
              volume_options: bool, tmpfs_options: bool = False, subpath: str = "",
              exists: Callable[[str], bool] | None = None) -> None:
    """dockerd's validateMountConfig (raising the message it would)."""
    if not target:
        raise _mount_error(kind, "field Target must not be empty")
    if posixpath.normpath(target) in ("/", "//"):
        raise _mount_error(kind, "invalid specification: destination can't be '/'")
    if not target.startswith("/"):
        raise _mount_error(kind, f"invalid mount path: '{target}' mount path must be absolute")
    if kind == "bind":
        if not source:
            raise _mount_error(kind, "field Source must not be empty")
        if volume_options:
            raise _mount_error(kind, "field VolumeOptions must not be specified")
        if tmpfs_options:
            raise _mount_error(kind, "field TmpfsOptions must not be specified")
        if not source.startswith("/"):
            raise _mount_error(kind, f"invalid mount path: '{source}' mount path must be "
                               "absolute")
        if exists is not None and not exists(source):
            raise _mount_error(kind, f"bind source path does not exist: {source}")
    elif kind == "volume":
        if bind_options:
            raise _mount_error(kind, "field BindOptions must not be specified")
        if tmpfs_options:
            raise _mount_error(kind, "field TmpfsOptions must not be specified")
        if subpath:
            if not source:
                raise _mount_error(kind, "must not set Subpath when using anonymous volumes")
            clean = posixpath.normpath(subpath)
            if clean.startswith("/") or clean == ".." or clean.startswith("../"):
                raise _mount_error(kind, "subpath must be a relative path within the volume")
        if readonly and not source:
            raise _mount_error(kind, "must not set ReadOnly mode when using anonymous volumes")
    elif kind == "tmpfs":
        if bind_options:
            raise _mount_error(kind, "field BindOptions must not be specified")
        if volume_options:
            raise _mount_error(kind, "field VolumeOptions must not be specified")
        if source:
            raise _mount_error(kind, "field Source must not be specified")
    elif kind in ("image", "cluster"):
        raise NotSupported(f"--mount type={kind}: {kind} mounts are not supported")
    else:
        raise _mount_error(kind, "mount type unknown")


def _tmpfs_data(opts: dict[str, Any], readonly: bool) -> str:
    """dockerd's ConvertTmpfsOptions: ro, mode in octal, size with the largest unit."""
    out = ["ro"] if readonly else []
    mode = opts.get("Mode")
    if mode:
        out.append(f"mode={int(mode):o}")
    size = int(opts.get("SizeBytes") or 0)
    if size < 0:
        raise _mount_error("tmpfs", f"invalid tmpfs size: {size}")
    if size:
        for suffix, div in (("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)):
            if size % div == 0:
                out.append(f"size={size // div}{suffix}")
                break
        else:
            out.append(f"size={size}")
    for opt in opts.get("Options") or []:
        if not isinstance(opt, list) or not 1 <= len(opt) <= 2:
            raise _mount_error("tmpfs", "invalid option array length")
        if opt[0] not in ("exec", "noexec"):
            raise _mount_error("tmpfs", f"invalid option: {opt[0]}")
        out.append("=".join(str(o) for o in opt))
    return ",".join(out)


def parse_mount(m: Any, exists: Callable[[str], bool] | None = None) -> Spec:
    """One HostConfig.Mounts entry (``--mount``). ``exists`` checks a bind's source."""
    if not isinstance(m, dict):
        raise InvalidArgument("invalid mount config: a mount must be an object")
    kind = str(m.get("Type") or "")
    target = str(m.get("Target") or "")
    source = str(m.get("Source") or "")
    readonly = bool(m.get("ReadOnly"))
    bind_opts = m.get("BindOptions") or None
    vol_opts = m.get("VolumeOptions") or None
    tmpfs_opts = m.get("TmpfsOptions") or None
    if kind == "bind" and bind_opts and bind_opts.get("CreateMountpoint"):
        exists = None  # made at start
    prop = str((bind_opts or {}).get("Propagation") or "")
    if kind == "bind" and prop and prop not in PROPAGATIONS:
        raise _mount_error(kind, f"invalid propagation mode: {prop}")
    subpath = str((vol_opts or {}).get("Subpath") or "")
    _validate(kind, target, source, readonly=readonly, bind_options=bind_opts is not None,
              volume_options=vol_opts is not None, tmpfs_options=tmpfs_opts is not None
              and kind != "tmpfs", subpath=subpath, exists=exists)
    if kind == "bind":
        return Spec("bind", _clean(target), _clean(source), readonly, "", prop or "rprivate",
                    nonrecursive=bool((bind_opts or {}).get("NonRecursive")),
                    create_source=bool((bind_opts or {}).get("CreateMountpoint")))
    if kind == "tmpfs":
        return Spec("tmpfs", _clean(target), readonly=readonly,
                    tmpfs=_tmpfs_data(tmpfs_opts or {}, readonly))
    vo = vol_opts or {}
    dc = vo.get("DriverConfig") or {}
    if source:
        check_volume_name(source)
    driver = check_driver(str(dc.get("Name") or ""), InvalidArgument)
    opts = {str(k): str(v) for k, v in (dc.get("Options") or {}).items()}
    if opts:
        check_local_options(source or "<anonymous>", opts)
    return Spec("volume", _clean(target), source, readonly, copy=not vo.get("NoCopy"),
                driver=driver, driver_opts=opts,
                labels={str(k): str(v) for k, v in (vo.get("Labels") or {}).items()},
                subpath=posixpath.normpath(subpath) if subpath else "")


# --- merging -------------------------------------------------------------------------------

def _clean(path: str) -> str:
    out = posixpath.normpath(path)
    return "/" + out.lstrip("/") if out.startswith("/") else out


def plan(hc: dict[str, Any], config_volumes: Iterable[str],
         inherited: Iterable[tuple[list[dict[str, Any]], str]] = (),
         exists: Callable[[str], bool] | None = None) -> list[Spec | dict[str, Any]]:
    """What the container mounts, destination by destination, in dockerd's order: a
    Spec to make, or an inherited mount point (``--volumes-from``: the other's points
    and the mode they are taken with)."""
    tmpfs = {_clean(str(d)) for d in (hc.get("Tmpfs") or {})}
    for dest in tmpfs:
        if not dest.startswith("/") or dest == "/":
            raise InvalidArgument(f"invalid tmpfs mount destination: '{dest}'")
    out: dict[str, Spec | dict[str, Any]] = {}
    for points, mode in inherited:
        writable = not any(o in _READONLY for o in mode.split(","))
        for p in points:
            out[p["Destination"]] = {**p, "RW": bool(p["RW"]) and writable, "Mode": "",
                                     "Spec": {**p.get("Spec", {}), "Copy": False}}
    taken: set[str] = set()
    driver = str(hc.get("VolumeDriver") or "")
    specs = [parse_bind(str(b), driver) for b in hc.get("Binds") or []]
    specs += [parse_mount(m, exists) for m in hc.get("Mounts") or []]
    for spec in specs:
        if spec.target in taken or spec.target in tmpfs:
            raise InvalidArgument(f"Duplicate mount point: {spec.target}")
        taken.add(spec.target)
        out[spec.target] = spec
    for raw in config_volumes:
        if not raw.startswith("/"):
            raise InvalidArgument(f"invalid volume specification: '{raw}': invalid mount "
                                  f"path: '{raw}' mount path must be absolute")
        dest = _clean(raw)
        if dest == "/":
            raise InvalidArgument(f"invalid volume specification: '{raw}': invalid "
                                  "specification: destination can't be '/'")
        if dest not in out and dest not in tmpfs:
            out[dest] = Spec("volume", dest, driver=check_driver(driver, InvalidArgument))
    return list(out.values())


def point(spec: Spec, *, name: str = "", source: str = "", driver: str = "") -> dict[str, Any]:
    """The mount point a container records for ``spec`` (a volume: once it is known)."""
    return {
        "Type": spec.type, "Name": name, "Source": source or spec.source,
        "Destination": spec.target, "Driver": driver, "Mode": spec.mode,
        "RW": not spec.readonly,
        "Propagation": spec.propagation if spec.type == "bind" else "",
        "Spec": {"Copy": spec.type == "volume" and spec.copy,
                 "NonRecursive": spec.nonrecursive, "CreateSource": spec.create_source,
                 "Subpath": spec.subpath, "Tmpfs": spec.tmpfs},
    }


def view(p: dict[str, Any]) -> dict[str, Any]:
    """A mount point as inspect and ps show it (Name and Driver only where set)."""
    out = {k: p.get(k, "") for k in _PUBLIC}
    for key in ("Name", "Driver"):
        if not out[key]:
            del out[key]
    return out


def volume_names(points: Iterable[dict[str, Any]]) -> list[str]:
    return [str(p["Name"]) for p in points if p.get("Type") == "volume" and p.get("Name")]


def oci_mount(p: dict[str, Any], source: str) -> dict[str, Any]:
    """The runtime-spec mount of mount point ``p``, ``source`` being its host path."""
    spec = p.get("Spec") or {}
    dest = p["Destination"]
    if p["Type"] == "tmpfs":
        extra = [o for o in str(spec.get("Tmpfs") or "").split(",") if o]
        return {"destination": dest, "type": "tmpfs", "source": "tmpfs",
                "options": ["noexec", "nosuid", "nodev", *extra]}
    opts = ["bind" if spec.get("NonRecursive") else "rbind"]
    if not p["RW"]:
        opts.append("ro")
    opts.append(p.get("Propagation") or "rprivate")
    return {"destination": dest, "type": "bind", "source": source, "options": opts}

