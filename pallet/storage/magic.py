"""What the first bytes of a stream say it is: a compressed stream, a tar.

Import-free, so the CLI can tell a tar on stdin from a Dockerfile without loading the
codecs (storage/compression.py, which reads these same constants).
"""

from __future__ import annotations

GZIP = b"\x1f\x8b"
ZSTD = b"\x28\xb5\x2f\xfd"
BZIP2 = b"BZh"
XZ = b"\xfd7zXZ\x00"
# What Python's tarfile unpacks by itself ("r|*"): build contexts, ADD's archives.
TARFILE_CODECS = (GZIP, BZIP2, XZ)


def compressed(head: bytes) -> bool:
    """``head`` starts a gzip, zstd, bzip2 or xz stream."""
    return head.startswith((GZIP, ZSTD, BZIP2, XZ))


def is_tar(head: bytes) -> bool:
    """``head`` (512 bytes) starts a plain tar or one tarfile can decompress by itself."""
    return head.startswith(TARFILE_CODECS) or (len(head) >= 262 and head[257:262] == b"ustar")
