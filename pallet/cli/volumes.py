"""pallet volume create, ls, inspect, rm, prune — docker's flags, output and exit codes —
and pallet's own volume export / import (a volume's contents as a tar stream).

Also the ``--mount`` flag of run and create, read as the docker CLI reads it.
"""

from __future__ import annotations

import os
import sys

from pallet.cli.flags import LIST, STR, Flag, UsageError, parse
from pallet.cli.objects import filters as parse_filters
from pallet.cli.objects import inspect_each, write_stream
from pallet.client.transport import APIError, Transport

_FORMAT = Flag("-f,--format", STR)

USAGE = """Usage:  pallet volume COMMAND

Manage volumes

Commands:
  create      Create a volume
  export      Write a volume's contents to a tar archive (STDOUT or -o FILE)
  import      Fill an empty (or new) volume from a tar archive (FILE or STDIN)
  inspect     Display detailed information on one or more volumes
  ls          List volumes
  prune       Remove unused local volumes
  rm          Remove one or more volumes
"""


def _out(text: str) -> None:
    sys.stdout.write(text)


def _fail(message: str) -> int:
    sys.stderr.write(message + "\n")
    return 1


def _kv(items: list[str], flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key:
            raise UsageError(f'invalid argument "{item}" for "{flag}" flag: invalid key')
        out[key] = value
    return out


def usage(host: str | None, argv: list[str]) -> int:
    if argv:
        raise UsageError(f"'volume {argv[0]}' is not a pallet command.\n"
                         "See 'pallet volume --help'")
    _out(USAGE)
    return 0


def create(host: str | None, argv: list[str]) -> int:
    a = parse(argv, [Flag("-d,--driver", STR), Flag("--label", LIST), Flag("-o,--opt", LIST),
                     Flag("--name", STR)])
    if len(a.args) > 1:
        raise UsageError('"pallet volume create" requires at most 1 argument.')
    name = a.args[0] if a.args else str(a.name or "")
    if a.args and a.name and a.name != a.args[0]:
        raise UsageError("conflicting options: cannot specify a volume-name through both "
                         "--name and as a positional arg")
    body = {"Name": name, "Driver": a.driver or "local",
            "DriverOpts": _kv(a.opt if isinstance(a.opt, list) else [], "--opt"),
            "Labels": _kv(a.label if isinstance(a.label, list) else [], "--label")}
    vol = Transport(host).post_json("/volumes/create", None, body)
    assert isinstance(vol, dict)
    _out(f"{vol['Name']}\n")
    return 0


def ls(host: str | None, argv: list[str]) -> int:
    a = parse(argv, [_FORMAT, Flag("-q,--quiet"), Flag("--filter", LIST),
                     Flag("--cluster")])
    filters = parse_filters(a.filter)
    body = Transport(host).get_json("/volumes", {"filters": filters or None})
    assert isinstance(body, dict)
    for warning in body.get("Warnings") or []:
        sys.stderr.write(f"{warning}\n")
    vols = sorted(body.get("Volumes") or [], key=lambda v: str(v["Name"]))
    if a.quiet:
        _out("".join(f"{v['Name']}\n" for v in vols))
        return 0
    rows = [{"Name": v["Name"], "Driver": v["Driver"], "Scope": v.get("Scope", "local"),
             "Mountpoint": v.get("Mountpoint", ""),
             "Labels": ",".join(f"{k}={val}" for k, val in (v.get("Labels") or {}).items()),
             "Links": "N/A", "Size": "N/A"} for v in vols]
    from pallet.cli import template

    _out(template.show(a.format, "table {{.Driver}}\t{{.Name}}", rows,
                       {"Name": "VOLUME NAME"}))
    return 0


def inspect(host: str | None, argv: list[str]) -> int:
    a = parse(argv, [_FORMAT])
    if not a.args:
        raise UsageError('"pallet volume inspect" requires at least 1 argument.')
    return inspect_each(host, list(a.args), "/volumes/{}", a.format)


def rm(host: str | None, argv: list[str]) -> int:
    a = parse(argv, [Flag("-f,--force")])
    if not a.args:
        raise UsageError('"pallet volume rm" requires at least 1 argument.')
    t = Transport(host)
    code = 0
    for name in a.args:
        try:
            t.request("DELETE", f"/volumes/{name}", {"force": a.force or None}).close()
            _out(name + "\n")
        except APIError as exc:
            sys.stderr.write(f"Error response from daemon: {exc.message}\n")
            code = 1
    return code


def prune(host: str | None, argv: list[str]) -> int:
    a = parse(argv, [Flag("-a,--all"), Flag("-f,--force"), Flag("--filter", LIST)])
    filters = parse_filters(a.filter)
    if a.all:
        filters["all"] = ["true"]
    if not a.force:
        what = "all local volumes" if a.all else "anonymous local volumes"
        sys.stderr.write(f"WARNING! This will remove {what} not used by at least one "
                         "container.\nAre you sure you want to continue? [y/N] ")
        if sys.stdin.readline().strip().lower() != "y":
            return 0
    body = Transport(host).post_json("/volumes/prune", {"filters": filters or None})
    assert isinstance(body, dict)
    deleted = body.get("VolumesDeleted") or []
    if deleted:
        _out("Deleted Volumes:\n" + "".join(f"{d}\n" for d in deleted) + "\n")
    from pallet.oci.units import human_size

    _out(f"Total reclaimed space: {human_size(int(body.get('SpaceReclaimed', 0)), digits=3)}\n")
    return 0


def export(host: str | None, argv: list[str]) -> int:
    a = parse(argv, [Flag("-o,--output", STR, "Write to a file, instead of STDOUT")])
    if len(a.args) != 1:
        raise UsageError('"pallet volume export" requires exactly 1 argument.')
    output = a.output if isinstance(a.output, str) else ""
    if not output and os.isatty(sys.stdout.fileno()):
        return _fail("cowardly refusing to write a tar archive to a terminal. Use the -o flag "
                     "or redirect")
    write_stream(Transport(host).request("GET", f"/volumes/{a.args[0]}/export"), output)
    return 0


def import_(host: str | None, argv: list[str]) -> int:
    a = parse(argv, [])
    if not 1 <= len(a.args) <= 2:
        raise UsageError('"pallet volume import" requires 1 or 2 arguments: VOLUME [FILE|-]')
    name = a.args[0]
    source = a.args[1] if len(a.args) == 2 and a.args[1] != "-" else ""
    if not source and os.isatty(sys.stdin.fileno()):
        return _fail("requested import from stdin, but stdin is a terminal")
    try:
        data = open(source, "rb") if source else sys.stdin.buffer  # noqa: SIM115 - streamed
    except OSError as exc:
        return _fail(f"open {source}: {(exc.strerror or str(exc)).lower()}")
    try:
        Transport(host).request("POST", f"/volumes/{name}/import", None, body=data,
                                headers={"Content-Type": "application/x-tar"}).close()
    finally:
        if source:
            data.close()
    return 0


# --- run/create --mount -----------------------------------------------------------------------

def _bool(key: str, value: str) -> bool:
    if value.lower() in ("1", "t", "true"):
        return True
    if value.lower() in ("0", "f", "false"):
        return False
    raise ValueError(f"invalid value for {key}: {value}")


def mount_flag(spec: str) -> dict[str, object]:
    """One ``--mount`` value (CSV ``key=value`` fields) as a HostConfig.Mounts entry."""
    try:
        return _mount_flag(spec)
    except ValueError as exc:
        raise UsageError(f'invalid argument "{spec}" for "--mount" flag: {exc}') from None


def _mount_flag(spec: str) -> dict[str, object]:
    import csv

    fields = next(csv.reader([spec]), [])
    m: dict[str, object] = {"Type": "volume"}
    bind: dict[str, object] = {}
    vol: dict[str, object] = {}
    tmpfs: dict[str, object] = {}
    driver: dict[str, object] = {}
    for field in fields:
        key, eq, val = field.partition("=")
        key = key.lower()
        if not eq:
            if key in ("readonly", "ro"):
                m["ReadOnly"] = True
            elif key == "volume-nocopy":
                vol["NoCopy"] = True
            elif key == "bind-nonrecursive":
                bind["NonRecursive"] = True
            else:
                raise ValueError(f"invalid field '{field}' must be a key=value pair")
            continue
        if key == "type":
            m["Type"] = val.lower()
        elif key in ("source", "src"):
            m["Source"] = os.path.abspath(val) if val == "." or val.startswith("./") else val
        elif key in ("target", "dst", "destination"):
            m["Target"] = val
        elif key in ("readonly", "ro"):
            m["ReadOnly"] = _bool(key, val)
        elif key == "consistency":
            m["Consistency"] = val.lower()
        elif key == "bind-propagation":
            bind["Propagation"] = val.lower()
        elif key == "bind-nonrecursive":
            bind["NonRecursive"] = _bool(key, val)
        elif key == "bind-recursive":
            flags = {"enabled": {}, "disabled": {"NonRecursive": True},
                     "writable": {"ReadOnlyNonRecursive": True},
                     "readonly": {"ReadOnlyForceRecursive": True}}
            if val not in flags:
                raise ValueError(f'invalid value for {key}: {val} (must be "enabled", '
                                 '"disabled", "writable", or "readonly")')
            bind.update(flags[val])
        elif key == "bind-create-src":
            bind["CreateMountpoint"] = _bool(key, val)
        elif key == "volume-subpath":
            vol["Subpath"] = val
        elif key == "volume-nocopy":
            vol["NoCopy"] = _bool(key, val)
        elif key == "volume-label":
            k, _, v = val.partition("=")
            vol.setdefault("Labels", {})[k] = v  # type: ignore[index]
        elif key == "volume-driver":
            driver["Name"] = val
        elif key == "volume-opt":
            k, _, v = val.partition("=")
            driver.setdefault("Options", {})[k] = v  # type: ignore[index]
        elif key == "tmpfs-size":
            from pallet.cli.containers import ram_in_bytes

            try:
                tmpfs["SizeBytes"] = ram_in_bytes(val)
            except UsageError:
                raise ValueError(f"invalid value for {key}: {val}") from None
        elif key == "tmpfs-mode":
            try:
                tmpfs["Mode"] = int(val, 8)
            except ValueError:
                raise ValueError(f"invalid value for {key}: {val}") from None
        else:
            raise ValueError(f"unexpected key '{key}' in '{field}'")
    if driver:
        vol["DriverConfig"] = driver
    kind = m["Type"]
    if not kind:
        raise ValueError("type is required")
    if not m.get("Target"):
        raise ValueError("target is required")
    for opts, what, want, key in ((vol, "volume", "volume", "VolumeOptions"),
                                  (bind, "bind", "bind", "BindOptions"),
                                  (tmpfs, "tmpfs", "tmpfs", "TmpfsOptions")):
        if opts:
            if kind != want:
                raise ValueError(f"cannot mix '{what}-*' options with mount type '{kind}'")
            m[key] = opts
    return m


def split_volumes(specs: list[str]) -> tuple[list[str], dict[str, object]]:
    """``-v`` values as the docker CLI sends them: with a source, HostConfig.Binds (a
    relative ``./dir`` made absolute); a path alone, Config.Volumes (anonymous)."""
    binds: list[str] = []
    anonymous: dict[str, object] = {}
    for spec in specs:
        source, sep, rest = spec.partition(":")
        if not sep:
            anonymous[spec] = {}
            continue
        if source == "." or source.startswith(("./", "../")) or source == "..":
            source = os.path.abspath(source)
        binds.append(f"{source}:{rest}")
    return binds, anonymous
