"""Reading and writing cgroupfs files, with errors that name the file.

Every write goes through ``write`` so the kernel's errno becomes one of pallet's errors
with the path and value in the message, and so unit tests have one seam to record the
exact sequence of writes (the devices controller's meaning lies in that order).
"""

from __future__ import annotations

import errno
import os

from pallet.errors import InvalidArgument, NotFound, NotSupported, SystemFailure


def path_error(exc: OSError, path: str, action: str) -> Exception:
    """Translate an OSError from a cgroup file into pallet's error for it."""
    code = exc.errno or 0
    msg = f"cgroups: {action} {path}: {os.strerror(code)}"
    if code == errno.ENOENT:
        if os.path.isdir(os.path.dirname(path)):
            name = os.path.basename(path)
            return NotSupported(
                f"cgroups: {path} does not exist: this kernel or cgroup does not provide {name}",
                op=action,
                obj=path,
            )
        return NotFound(f"cgroups: {os.path.dirname(path)} does not exist", op=action, obj=path)
    if code in (errno.EINVAL, errno.ERANGE, errno.EOVERFLOW):
        return InvalidArgument(msg, op=action, obj=path)
    return SystemFailure(msg, op=action, obj=path, errno=code, path=path)


def write(directory: str, name: str, value: str) -> None:
    """Write ``value`` to ``directory/name`` in one write(2), as cgroupfs expects."""
    path = f"{directory}/{name}"
    try:
        # O_TRUNC: harmless on cgroupfs, needed on the fake tree unit tests use.
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)
    except OSError as exc:
        raise path_error(exc, path, f"write {value!r} to") from exc


def read(directory: str, name: str) -> str:
    path = f"{directory}/{name}"
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read()
    except OSError as exc:
        raise path_error(exc, path, "read") from exc


def read_opt(directory: str, name: str) -> str | None:
    """The file's text, or None when the file does not exist (a feature this kernel lacks)."""
    try:
        with open(f"{directory}/{name}", encoding="ascii", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise path_error(exc, f"{directory}/{name}", "read") from exc


def parse_uint(text: str, path: str) -> int:
    """A counter or limit; "max" (v2) and v1's 2**63-ish "unlimited" come back as 2**64-1."""
    text = text.strip()
    if text == "max":
        return (1 << 64) - 1
    try:
        value = int(text)
    except ValueError as exc:
        raise SystemFailure(f"cgroups: {path}: unexpected content {text!r}", path=path) from exc
    # Negative values (e.g. -1 in some v1 files) mean "no limit" too.
    return (1 << 64) - 1 if value < 0 else value


def read_uint(directory: str, name: str) -> int:
    return parse_uint(read(directory, name), f"{directory}/{name}")


def read_uint_opt(directory: str, name: str) -> int | None:
    text = read_opt(directory, name)
    return None if text is None else parse_uint(text, f"{directory}/{name}")


def read_keyed(directory: str, name: str) -> dict[str, int]:
    """A flat keyed file ("key value" per line): memory.stat, cpu.stat, memory.events."""
    text = read_opt(directory, name)
    out: dict[str, int] = {}
    for line in (text or "").splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


def exists(directory: str, name: str) -> bool:
    return os.path.exists(f"{directory}/{name}")


def mkdir(path: str) -> bool:
    """mkdir, True if this call created it; False if it already existed."""
    try:
        os.mkdir(path, 0o755)
        return True
    except FileExistsError:
        return False


def rmdir(path: str) -> None:
    """rmdir a cgroup directory; raises OSError so callers can wait on EBUSY."""
    os.rmdir(path)
