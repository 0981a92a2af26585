"""OCI image layout directories for save and load (`--format oci-dir`, `load -i DIR`).

palletd speaks archives only: what it saves is an OCI layout in a tar (as docker 25+
writes it, with docker's manifest.json beside), and what it loads may be one. So a
directory is the archive's layout files unpacked, and a directory to load is packed
into a tar here. Only the layout's own names are taken from an archive (``oci-layout``,
``index.json``, ``blobs/<algorithm>/<hex>``), never a link or a path that climbs out.
"""

from __future__ import annotations

import os
import re
import tarfile
import tempfile
from collections.abc import Iterator
from typing import BinaryIO

from pallet.storage.chunks import ChunkReader

_LAYOUT_NAME = re.compile(r"(oci-layout|index\.json|blobs/[a-z0-9]+/[a-f0-9]{32,128})")


def extract_layout(chunks: Iterator[bytes], directory: str) -> None:
    """The layout files of the archive in ``chunks`` into ``directory`` (made if
    missing); a file lands complete or not at all."""
    os.makedirs(directory, exist_ok=True)
    with tarfile.open(fileobj=ChunkReader.over(chunks), mode="r|") as tar:  # type: ignore[call-overload]
        for m in tar:
            name = m.name.removeprefix("./")
            if not m.isfile() or not _LAYOUT_NAME.fullmatch(name):
                continue
            path = os.path.join(directory, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            src = tar.extractfile(m)
            assert src is not None
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as out:
                    while data := src.read(1 << 20):
                        out.write(data)
                    os.fchmod(out.fileno(), 0o644)
                os.rename(tmp, path)
            except BaseException:
                os.unlink(tmp)
                raise
    if not os.path.exists(os.path.join(directory, "index.json")):
        raise OSError(f"the archive held no OCI layout for {directory}")


def pack_layout(directory: str) -> BinaryIO:
    """The OCI layout at ``directory`` as a tar (in a temporary file, read from the
    start): its layout files only."""
    if not os.path.isfile(os.path.join(directory, "oci-layout")):
        raise FileNotFoundError(2, "not an OCI image layout (no oci-layout file)", directory)
    out = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the caller, which streams it
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in ("oci-layout", "index.json"):
            tar.add(os.path.join(directory, name), arcname=name, recursive=False)
        blobs = os.path.join(directory, "blobs")
        for algorithm in sorted(os.listdir(blobs)):
            for blob in sorted(os.listdir(os.path.join(blobs, algorithm))):
                rel = f"blobs/{algorithm}/{blob}"
                if _LAYOUT_NAME.fullmatch(rel) and os.path.isfile(os.path.join(directory, rel)):
                    tar.add(os.path.join(directory, rel), arcname=rel, recursive=False)
    out.seek(0)
    return out
