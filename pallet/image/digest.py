"""Content digests (``sha256:<hex>``) as the OCI image spec and go-digest define them.

Validation follows go-digest's ``Parse`` because its messages are the ones Docker shows:
an unknown algorithm, a wrong length and a malformed value are three different errors.
Only lowercase hex is a valid encoding; the reference grammar accepts uppercase hex and
then go-digest refuses it, and so do we.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from pallet.errors import InvalidArgument

# go-digest registers these three; the OCI spec registers sha256 and sha512.
_HEX_LENGTH = {"sha256": 64, "sha384": 96, "sha512": 128}
_ENCODED = re.compile(r"[a-f0-9]+")
# go-digest's DigestRegexp, to tell "unsupported algorithm" from "not a digest at all".
_ANY_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")

ERR_FORMAT = "invalid checksum digest format"
ERR_LENGTH = "invalid checksum digest length"
ERR_UNSUPPORTED = "unsupported digest algorithm"


def digest_error(s: str) -> str:
    """go-digest's complaint about ``s``, or "" when ``s`` is a valid digest."""
    algorithm, sep, encoded = s.partition(":")
    if not algorithm or not sep or not encoded:
        return ERR_FORMAT
    length = _HEX_LENGTH.get(algorithm)
    if length is None:
        return ERR_UNSUPPORTED if _ANY_DIGEST.fullmatch(s) else ERR_FORMAT
    if len(encoded) != length:
        return ERR_LENGTH
    if not _ENCODED.fullmatch(encoded):
        return ERR_FORMAT
    return ""


@dataclass(frozen=True, slots=True)
class Digest:
    """A validated content digest; ``str()`` gives ``algorithm:hex``."""

    algorithm: str
    hex: str

    @classmethod
    def parse(cls, s: str) -> Digest:
        if not isinstance(s, str):
            raise InvalidArgument(f"{ERR_FORMAT}: {s!r}", op="parse digest", obj=repr(s))
        err = digest_error(s)
        if err:
            raise InvalidArgument(f"{err}: {s}", op="parse digest", obj=s)
        algorithm, _, encoded = s.partition(":")
        return cls(algorithm, encoded)

    @classmethod
    def of_bytes(cls, data: bytes | bytearray | memoryview, algorithm: str = "sha256") -> Digest:
        h = Hasher(algorithm)
        h.update(data)
        return h.digest()

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    def short(self) -> str:
        """The 12-hex-digit form Docker prints as an image or layer id."""
        return self.hex[:12]


class Hasher:
    """Streaming digest: feed it the bytes as they are copied, ask for the digest at the end.

    ``size`` counts the bytes fed so far, so a copy loop can check a descriptor's size
    and digest with one pass over the data.
    """

    __slots__ = ("_h", "algorithm", "size")

    def __init__(self, algorithm: str = "sha256") -> None:
        if algorithm not in _HEX_LENGTH:
            raise InvalidArgument(f"{ERR_UNSUPPORTED}: {algorithm}", op="hash", obj=algorithm)
        self.algorithm = algorithm
        self._h = hashlib.new(algorithm)
        self.size = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._h.update(data)
        self.size += len(data) if not isinstance(data, memoryview) else data.nbytes

    def digest(self) -> Digest:
        """The digest of everything fed so far (more may be fed afterwards)."""
        return Digest(self.algorithm, self._h.hexdigest())
