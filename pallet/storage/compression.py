"""Layer compression: gzip, zstd or none, told apart by their magic bytes.

Registries label blobs with a media type, but docker-archive tarballs, `import` and
careless registries do not, and a label can lie; the bytes cannot. Reading goes through
ISA-L's gzip (several times zlib's speed, the lever on pull time) when the `isal`
package is there, and falls back to the stdlib's gzip when it is not.

Every reader returned here turns a corrupt or truncated stream into InvalidArgument,
so callers tell "the blob is bad" apart from "the disk failed" by exception type.
"""

from __future__ import annotations

import enum
import gzip
import io
import zlib
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, BinaryIO, Protocol, cast

import zstandard

from pallet.errors import InvalidArgument, NotSupported
from pallet.storage import magic

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

try:
    from isal import isal_zlib

    _CODEC_ERRORS: tuple[type[Exception], ...] = (
        gzip.BadGzipFile, zlib.error, zstandard.ZstdError,
        cast("type[Exception]", isal_zlib.error),  # its stub calls it an instance
    )
except ImportError:  # the stdlib's gzip does the work, more slowly
    _CODEC_ERRORS = (gzip.BadGzipFile, zlib.error, zstandard.ZstdError)


class Compression(enum.StrEnum):
    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"


# Docker reads these legacy layer codecs; the OCI image spec does not allow them.
_UNSUPPORTED_MAGIC = {magic.BZIP2: "bzip2", magic.XZ: "xz"}
_MAGIC_LEN = 6

CHUNK = 1 << 20
# ISA-L's level 1 compresses like zlib's 1-2 at several times the speed; pushes are
# bound by it, and the registry stores what we send, so speed wins over a few percent.
GZIP_LEVEL_ISAL = 1
GZIP_LEVEL_ZLIB = 6
ZSTD_LEVEL = 3
# zstd can expand 4 bytes of input to a 128 KiB block: feeding the decompressor small
# slices bounds the memory one call can take (1 KiB in -> at most 32 MiB out).
_ZSTD_FEED = 1024


def detect(head: bytes) -> Compression:
    """The compression of a stream whose first bytes are ``head`` (6 are enough)."""
    if head.startswith(magic.GZIP):
        return Compression.GZIP
    if head.startswith(magic.ZSTD):
        return Compression.ZSTD
    for prefix, name in _UNSUPPORTED_MAGIC.items():
        if head.startswith(prefix):
            raise NotSupported(f"{name}-compressed layers are not supported (gzip, zstd or none)")
    return Compression.NONE


def open_decompressed(stream: BinaryIO) -> BinaryIO:
    """A readable stream of ``stream``'s content, decompressed by what its magic says.

    Reads only forward, so ``stream`` may be a pipe or an HTTP body.
    """
    head = _read_exactly(stream, _MAGIC_LEN)
    raw = _Prefixed(head, stream)
    kind = detect(head)
    inner: _Readable
    if kind is Compression.GZIP:
        inner = _gzip_reader(raw)
    elif kind is Compression.ZSTD:
        inner = _ZstdReader(raw)
    else:
        inner = raw
    return io.BufferedReader(_Checked(inner, kind.value), CHUNK)


def compress(stream: BinaryIO | Iterable[bytes], kind: Compression) -> Iterator[bytes]:
    """``stream``'s content compressed as ``kind``, in chunks (for push and save).

    ``stream`` may also be an iterable of chunks, such as diff.diff_upper's tar.
    """
    chunks = _chunks(stream)
    if kind is Compression.NONE:
        yield from chunks
        return
    codec: _Compressor = (_gzip_compressobj() if kind is Compression.GZIP
                          else zstandard.ZstdCompressor(level=ZSTD_LEVEL).compressobj())
    for chunk in chunks:
        if out := codec.compress(chunk):
            yield out
    yield codec.flush()


def _chunks(stream: BinaryIO | Iterable[bytes]) -> Iterator[bytes]:
    # A file is iterable too, by lines: read it by chunks instead.
    read = getattr(stream, "read", None)
    if read is None:
        yield from (c for c in stream if c)
        return
    while chunk := read(CHUNK):
        yield chunk


class _Compressor(Protocol):
    """What zlib's and ISA-L's compress objects have in common."""

    def compress(self, data: bytes, /) -> bytes: ...

    def flush(self) -> bytes: ...


def _gzip_compressobj() -> _Compressor:
    # wbits 31 = a gzip header and trailer; both libraries write mtime 0 and no file
    # name, so the same tar always compresses to the same blob (reproducible digests).
    try:
        from isal import isal_zlib
    except ImportError:
        return zlib.compressobj(GZIP_LEVEL_ZLIB, zlib.DEFLATED, 31)
    return isal_zlib.compressobj(GZIP_LEVEL_ISAL, isal_zlib.DEFLATED, 31)


def _gzip_reader(raw: _Prefixed) -> _Readable:
    try:
        from isal import igzip
    except ImportError:
        return gzip.GzipFile(fileobj=raw, mode="rb")
    return igzip.IGzipFile(fileobj=raw, mode="rb")  # type: ignore[no-untyped-call]


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes | None: ...


def _fill(buffer: WriteableBuffer, data: bytes | memoryview) -> int:
    memoryview(buffer).cast("B")[: len(data)] = data
    return len(data)


def _read_exactly(stream: BinaryIO, n: int) -> bytes:
    """Up to ``n`` bytes: fewer only at end of stream (pipes return short reads)."""
    parts: list[bytes] = []
    got = 0
    while got < n:
        part = stream.read(n - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


class _Prefixed(io.RawIOBase):
    """``head`` (bytes already read to sniff the magic) followed by the rest of ``rest``."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._head:
            if size < 0:
                out, self._head = self._head + self._rest.read(), b""
                return out
            out, self._head = self._head[:size], self._head[size:]
            return out
        return self._rest.read(size)

    def readinto(self, buffer: WriteableBuffer) -> int:
        return _fill(buffer, self.read(memoryview(buffer).nbytes))


class _ZstdReader(io.RawIOBase):
    """zstd frames, one after another, decoded with a bound on memory per call.

    python-zstandard's own stream reader returns a clean end of file when the input
    stops in the middle of a frame; a truncated download must be an error instead.
    """

    def __init__(self, raw: _Readable) -> None:
        self._raw = raw
        self._dctx = zstandard.ZstdDecompressor()
        self._frame: zstandard.ZstdDecompressionObj | None = None
        # Offsets into the current buffers rather than slicing them: a slice copies the
        # rest, and a chunk fed a KiB at a time would be copied a thousand times.
        self._pending, self._ppos = b"", 0  # compressed input not yet fed
        self._out, self._opos = b"", 0  # decompressed output not yet returned
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        while self._opos == len(self._out):
            if self._ppos < len(self._pending):
                self._feed()
                continue
            if self._eof:
                return 0
            chunk = self._raw.read(CHUNK)
            if not chunk:  # end of input (a raw stream's None means "none yet": not here)
                self._eof = True
                if self._frame is not None:
                    raise InvalidArgument("zstd stream ends in the middle of a frame")
                return 0
            self._pending, self._ppos = chunk, 0
        want = memoryview(buffer).nbytes
        n = _fill(buffer, memoryview(self._out)[self._opos:self._opos + want])
        self._opos += n
        return n

    def _feed(self) -> None:
        if self._frame is None:
            self._frame = self._dctx.decompressobj()
        piece = self._pending[self._ppos:self._ppos + _ZSTD_FEED]
        self._ppos += len(piece)
        self._out, self._opos = self._frame.decompress(piece), 0
        if self._frame.eof:
            # The rest of the piece belongs to the next frame.
            self._pending = self._frame.unused_data + self._pending[self._ppos:]
            self._ppos = 0
            self._frame = None


class _Checked(io.RawIOBase):
    """Turns a codec's complaints about its input into InvalidArgument."""

    def __init__(self, inner: _Readable, what: str) -> None:
        self._inner = inner
        self._what = what

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        try:
            return self._inner.read(size) or b""
        except EOFError as exc:
            raise InvalidArgument(f"{self._what} stream is truncated") from exc
        except _CODEC_ERRORS as exc:
            raise InvalidArgument(f"{self._what} stream is corrupt: {exc}") from exc

    def readinto(self, buffer: WriteableBuffer) -> int:
        return _fill(buffer, self.read(memoryview(buffer).nbytes))
