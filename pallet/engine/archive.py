"""Copying into and out of a container (`docker cp`), from inside its root.

A path in a container is resolved by the container's rules: an absolute symlink in
there points into the container, never at the host. So the copy runs in a helper
process that chroots into the container's root first (its /proc/<pid>/root while it
runs, its mounted snapshot otherwise), as dockerd's chrootarchive does; whatever the
container planted, the helper cannot see the host's files.

    python -m pallet.engine.archive stat ROOT PATH   stat JSON on stdout
    python -m pallet.engine.archive get ROOT PATH    stat JSON line, then a tar of PATH
    python -m pallet.engine.archive put ROOT DIR     a tar on stdin, extracted into DIR

A subprocess (not a fork of palletd: it has threads) costs an interpreter start; cp is
not a hot path.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import time
from typing import Any

from pallet.errors import InvalidArgument, NotFound, SystemFailure

# Go's os.FileMode type bits, which the docker CLI reads from the stat header.
_GO_DIR = 1 << 31
_GO_SYMLINK = 1 << 27
_GO_DEVICE = 1 << 26
_GO_PIPE = 1 << 25
_GO_SOCKET = 1 << 24
_GO_SETUID = 1 << 23
_GO_SETGID = 1 << 22
_GO_CHARDEV = 1 << 21
_GO_STICKY = 1 << 20


def go_mode(st: os.stat_result) -> int:
    m = st.st_mode
    out = m & 0o777
    if stat.S_ISDIR(m):
        out |= _GO_DIR
    elif stat.S_ISLNK(m):
        out |= _GO_SYMLINK
    elif stat.S_ISFIFO(m):
        out |= _GO_PIPE
    elif stat.S_ISSOCK(m):
        out |= _GO_SOCKET
    elif stat.S_ISCHR(m):
        out |= _GO_DEVICE | _GO_CHARDEV
    elif stat.S_ISBLK(m):
        out |= _GO_DEVICE
    if m & stat.S_ISUID:
        out |= _GO_SETUID
    if m & stat.S_ISGID:
        out |= _GO_SETGID
    if m & stat.S_ISVTX:
        out |= _GO_STICKY
    return out


def stat_header(info: dict[str, Any]) -> str:
    """The X-Docker-Container-Path-Stat header value."""
    return base64.b64encode(json.dumps(info).encode()).decode()


# --- the helper (runs chrooted) -----------------------------------------------------------

def _stat(path: str) -> dict[str, Any]:
    st = os.lstat(path)
    mtime = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(st.st_mtime))
    return {"name": os.path.basename(path.rstrip("/")) or "/", "size": st.st_size,
            "mode": go_mode(st), "mtime": mtime + "Z",
            "linkTarget": os.readlink(path) if stat.S_ISLNK(st.st_mode) else ""}


def _resolve(path: str) -> str:
    """``path`` with every symlink but the last component followed (inside the chroot);
    a trailing "/" or "/." follows the last too, as docker cp does."""
    follow_last = path.endswith("/") or path.endswith("/.")
    parent, base = os.path.split(path.rstrip("/") or "/")
    real = os.path.join(os.path.realpath(parent or "/"), base)
    return os.path.realpath(real) if follow_last else real


def _helper(argv: list[str]) -> int:
    import grp  # noqa: F401
    import gzip  # noqa: F401 - tarfile imports these lazily: load them before chroot
    import pwd  # noqa: F401
    import shutil  # noqa: F401
    import tarfile

    verb, root, path = argv
    os.chroot(root)
    os.chdir("/")
    try:
        target = _resolve(path)
        info = _stat(target)
    except FileNotFoundError:
        sys.stderr.write(f"NotFound\nCould not find the file {path} in container\n")
        return 1
    except OSError as exc:
        sys.stderr.write(f"SystemFailure\n{path}: {exc.strerror}\n")
        return 1
    if verb == "stat":
        sys.stdout.write(json.dumps(info) + "\n")
        return 0
    if verb == "get":
        out = sys.stdout.buffer
        out.write(json.dumps(info).encode() + b"\n")
        out.flush()
        name = os.path.basename(path.rstrip("/")) or "."
        if path.endswith("/."):
            name = "."
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            tar.add(target, arcname=name, recursive=True)
        return 0
    # put: into an existing directory
    if not info["mode"] & _GO_DIR:
        sys.stderr.write(f"InvalidArgument\nextraction point is not a directory: {path}\n")
        return 1
    with tarfile.open(fileobj=sys.stdin.buffer, mode="r|*") as tar:
        try:
            tar.extractall(target, members=_members(tar), numeric_owner=True)
        except InvalidArgument as exc:
            sys.stderr.write(f"InvalidArgument\n{exc}\n")
            return 1
    return 0


def _members(tar: Any) -> Any:
    """Names relative to the destination (a leading "/" dropped), never with "..": the
    chroot keeps them in the container anyway; this keeps them under the destination."""
    for m in tar:
        name = m.name.lstrip("/")
        if ".." in name.split("/"):
            raise InvalidArgument(f"invalid path in archive: {m.name}")
        m.name = name
        yield m


# --- palletd's side -------------------------------------------------------------------------

def _run(verb: str, root: str, path: str, stdin: Any = subprocess.DEVNULL,
         stdout: Any = subprocess.PIPE) -> subprocess.Popen[bytes]:
    import pallet

    env = {"PATH": "/usr/bin:/bin",
           "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(pallet.__file__)))}
    return subprocess.Popen([sys.executable, "-m", "pallet.engine.archive", verb, root, path],
                            stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, env=env)


def _failure(err: bytes, path: str) -> Exception:
    kind, _, msg = err.decode(errors="replace").partition("\n")
    msg = msg.strip() or kind.strip() or f"copying {path} failed"
    if kind == "NotFound":
        return NotFound(msg, obj=path)
    if kind == "InvalidArgument":
        return InvalidArgument(msg, obj=path)
    return SystemFailure(msg, obj=path)


def stat_path(root: str, path: str) -> dict[str, Any]:
    proc = _run("stat", root, path)
    out, err = proc.communicate(timeout=60)
    if proc.returncode != 0:
        raise _failure(err, path)
    info: dict[str, Any] = json.loads(out)
    return info


def open_get(root: str, path: str) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """The helper streaming a tar of ``path`` on its stdout, and the path's stat."""
    proc = _run("get", root, path)
    assert proc.stdout is not None and proc.stderr is not None
    line = proc.stdout.readline()
    if not line:
        err = proc.stderr.read()
        proc.wait()
        raise _failure(err, path)
    return proc, json.loads(line)


def open_put(root: str, path: str) -> subprocess.Popen[bytes]:
    return _run("put", root, path, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)


def finish_put(proc: subprocess.Popen[bytes], path: str) -> None:
    assert proc.stderr is not None
    err = proc.stderr.read()
    if proc.wait() != 0:
        raise _failure(err, path)


if __name__ == "__main__":
    sys.exit(_helper(sys.argv[1:]))
