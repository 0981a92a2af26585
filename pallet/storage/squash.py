"""Layers merged into one (``build --squash``): what the stack of them adds, as one tar.

The layers are read bottom first. A later entry replaces an earlier one of the same
path; a whiteout (``.wh.x``) drops what the earlier squashed layers had at ``x`` and
under it, and stays, since the layers below the squashed ones may have ``x`` too; an
opaque marker (``.wh..wh..opq``) does the same for everything under its directory.
Entries come out sorted (parents before children), so the same layers always give the
same bytes. File data waits in a temporary file, not in memory.
"""

from __future__ import annotations

import os
import tarfile
import tempfile
from collections.abc import Iterator
from typing import BinaryIO

from pallet.storage.layertar import WHITEOUT_OPAQUE, WHITEOUT_PREFIX

_CHUNK = 1 << 20


def squash(layers: list[BinaryIO], tmp: str) -> Iterator[bytes]:
    """One uncompressed layer tar, in chunks, for uncompressed layer tars ``layers``."""
    with tempfile.TemporaryFile(dir=tmp) as data:
        entries: dict[str, tuple[tarfile.TarInfo, int]] = {}  # path -> (header, offset)
        for stream in layers:
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for m in tar:
                    _take(tar, m, entries, data)
        yield from _write(entries, data)


def _drop_under(entries: dict[str, tuple[tarfile.TarInfo, int]], path: str) -> None:
    prefix = path + "/"
    for p in [p for p in entries if p == path or p.startswith(prefix)]:
        del entries[p]


def _take(tar: tarfile.TarFile, m: tarfile.TarInfo,
          entries: dict[str, tuple[tarfile.TarInfo, int]], data: BinaryIO) -> None:
    path = m.name.strip("/").removeprefix("./")
    if not path or path == ".":
        return
    parent, _, base = path.rpartition("/")
    if base == WHITEOUT_OPAQUE:  # the directory's own entry stays: only its children go
        for p in [p for p in entries if not parent or p.startswith(parent + "/")]:
            del entries[p]
    elif base.startswith(WHITEOUT_PREFIX):
        _drop_under(entries, f"{parent}/{base[len(WHITEOUT_PREFIX):]}".lstrip("/"))
    else:
        # something here again: a whiteout of it from an earlier squashed layer is moot
        entries.pop(f"{parent}/{WHITEOUT_PREFIX}{base}".lstrip("/"), None)
        if not m.isdir():
            _drop_under(entries, path)
    offset = -1
    if m.isfile():
        src = tar.extractfile(m)
        assert src is not None
        data.seek(0, os.SEEK_END)
        offset = data.tell()
        while chunk := src.read(_CHUNK):
            data.write(chunk)
    m.name = path
    entries[path] = (m, offset)


def _write(entries: dict[str, tuple[tarfile.TarInfo, int]], data: BinaryIO
           ) -> Iterator[bytes]:
    class _Sink:
        def __init__(self) -> None:
            self.parts: list[bytes] = []

        def write(self, b: bytes) -> int:
            self.parts.append(bytes(b))
            return len(b)

        def take(self) -> bytes:
            out = b"".join(self.parts)
            self.parts.clear()
            return out

    sink = _Sink()
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as out:  # type: ignore[call-overload]
        for path in sorted(entries):
            info, offset = entries[path]
            if offset >= 0:
                data.seek(offset)
                out.addfile(info, _Limited(data, info.size))
            else:
                out.addfile(info)
            yield sink.take()
    yield sink.take()


class _Limited:
    def __init__(self, f: BinaryIO, size: int) -> None:
        self.f = f
        self.left = size

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        n = self.left if n < 0 else min(n, self.left)
        b = self.f.read(n)
        self.left -= len(b)
        return b
