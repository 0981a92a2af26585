"""A volume's contents as a tar stream, out and in (`pallet volume export/import`).

Export reads the volume's directory with storage.diff's tar writer, which opens every
entry by directory fd and never follows a symlink. Import extracts in a helper process
chrooted into the volume's directory, as dockerd's chrootarchive does: whatever the
archive holds (a symlink to ``/``, then a file through it), nothing lands outside the
volume. Entry names must be relative and stay inside (no ``..``): an archive that
names an absolute path or climbs out is refused whole, not partly extracted.

    python -m pallet.engine.volumetar import ROOT     a tar on stdin, extracted into ROOT

A subprocess (palletd has threads: no fork) costs an interpreter start; import is not a
hot path.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

from pallet.errors import InvalidArgument, SystemFailure


def export(path: str) -> Iterator[bytes]:
    """The tree under ``path`` as an uncompressed tar, in chunks; names relative."""
    from pallet.storage.diff import tar_directory

    return tar_directory(path)


def check_name(name: str, what: str = "path") -> str:
    """An entry's name, relative ("./a" -> "a"); InvalidArgument for one that is
    absolute or climbs out."""
    if name.startswith("/"):
        raise InvalidArgument(f"invalid {what} in archive: {name}: absolute paths are not "
                              "allowed in a volume archive")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidArgument(f"invalid {what} in archive: {name}: it leaves the volume")
    return "/".join(parts) or "."


# --- the helper (runs chrooted) ------------------------------------------------------------

def _members(tar: Any) -> Iterator[Any]:
    for m in tar:
        m.name = check_name(m.name)
        if m.islnk():  # a hard link names another entry: inside, too
            m.linkname = check_name(m.linkname, "link")
        yield m


def _helper(argv: list[str]) -> int:
    import grp  # noqa: F401 - tarfile imports these lazily: load them before chroot
    import gzip  # noqa: F401
    import pwd  # noqa: F401
    import shutil  # noqa: F401
    import tarfile

    if len(argv) != 2 or argv[0] != "import":
        sys.stderr.write("InvalidArgument\nusage: volumetar import ROOT\n")
        return 2
    os.chroot(argv[1])
    os.chdir("/")
    # The chroot is what keeps entries inside; tarfile's own filters would also rewrite
    # modes and refuse absolute symlinks, which a volume may well hold.
    extra: dict[str, Any] = {"filter": "fully_trusted"} if hasattr(tarfile, "data_filter") \
        else {}
    try:
        with tarfile.open(fileobj=sys.stdin.buffer, mode="r|*") as tar:
            tar.extractall("/", members=_members(tar), numeric_owner=True, **extra)
    except InvalidArgument as exc:
        sys.stderr.write(f"InvalidArgument\n{exc}\n")
        return 1
    except tarfile.TarError as exc:
        sys.stderr.write(f"InvalidArgument\ninvalid tar archive: {exc}\n")
        return 1
    except OSError as exc:
        sys.stderr.write(f"SystemFailure\n{exc.filename or ''}: {exc.strerror or exc}\n")
        return 1
    return 0


# --- palletd's side -------------------------------------------------------------------------

def open_import(root: str) -> subprocess.Popen[bytes]:
    """The helper, reading a tar on its stdin into ``root``."""
    import pallet

    env = {"PATH": "/usr/bin:/bin",
           "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(pallet.__file__)))}
    return subprocess.Popen([sys.executable, "-m", "pallet.engine.volumetar", "import", root],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env)


def finish_import(proc: subprocess.Popen[bytes], name: str) -> None:
    """Wait for the helper; its refusal as InvalidArgument, a failure as SystemFailure."""
    assert proc.stderr is not None
    err = proc.stderr.read()
    if proc.wait() == 0:
        return
    kind, _, msg = err.decode(errors="replace").partition("\n")
    msg = f"import {name}: " + (msg.strip() or kind.strip() or "extraction failed")
    if kind == "InvalidArgument":
        raise InvalidArgument(msg, op="import", obj=name)
    raise SystemFailure(msg, op="import", obj=name)


if __name__ == "__main__":
    sys.exit(_helper(sys.argv[1:]))
