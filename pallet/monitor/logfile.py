"""Container logs in Docker's json-file format, rotated by default.

One JSON object per line: ``{"log": "text\\n", "stream": "stdout", "time": RFC 3339}``,
the file Docker's json-file driver writes (reference/dockerd-20.10/json-file-log-sample.log).
Output is cut at newlines; a line longer than 16 KiB is cut there too, without the
newline (as Docker does). Unlike Docker, rotation is on by default: ``max_size`` bytes
per file, ``max_file`` files (the live one and its rotated ``.1`` ... ``.N-1``). The
``local`` driver writes the same lines and compresses rotated files (``.N.gz``).

The writer lives in pallet-monitor (never blocks on a reader); the reader serves
``logs`` in palletd.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

from pallet.errors import InvalidArgument
from pallet.oci import jsonfast

MAX_LINE = 16 * 1024
DEFAULT_MAX_SIZE = 20 * 1024 * 1024
DEFAULT_MAX_FILE = 5
DRIVERS = ("json-file", "local", "none")
STREAMS = ("stdin", "stdout", "stderr")


def rfc3339_nano(ns: int) -> str:
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def parse_size(text: str) -> int:
    """Docker's log-opt sizes: a number with an optional k, m or g (powers of 1024)."""
    raw = text.strip().lower().removesuffix("b")
    mult = 1
    if raw[-1:] in ("k", "m", "g"):
        mult = 1024 ** ("kmg".index(raw[-1]) + 1)
        raw = raw[:-1]
    try:
        value = float(raw)
    except ValueError:
        raise InvalidArgument(f"invalid size: '{text}'") from None
    if value < 0:
        raise InvalidArgument(f"invalid size: '{text}'")
    return int(value * mult)


def attributes(opts: dict[str, str], labels: dict[str, str], env: list[str]) -> dict[str, str]:
    """The extra attributes --log-opt labels/labels-regex/env/env-regex pick from the
    container's labels and environment, as dockerd's loggers record them."""
    import re

    out: dict[str, str] = {}
    envs = dict(e.partition("=")[::2] for e in env)
    for source, names, regex in ((labels, "labels", "labels-regex"), (envs, "env", "env-regex")):
        for key in (k.strip() for k in opts.get(names, "").split(",") if k.strip()):
            if key in source:
                out[key] = source[key]
        if opts.get(regex):
            try:
                pattern = re.compile(opts[regex])
            except re.error as exc:
                raise InvalidArgument(f"invalid {regex}: {exc}") from None
            out.update({k: v for k, v in source.items() if pattern.search(k)})
    return out


def options(driver: str, opts: dict[str, str]) -> tuple[int, int, bool]:
    """(max_size, max_file, compress) from a LogConfig; InvalidArgument for bad ones."""
    if driver not in DRIVERS:
        raise InvalidArgument(f'logger: no log driver named \'{driver}\' is registered')
    known = {"max-size", "max-file", "compress", "labels", "env", "tag", "mode",
             "max-buffer-size", "env-regex", "labels-regex"}
    for key in opts:
        if key not in known:
            raise InvalidArgument(f"unknown log opt '{key}' for {driver} log driver")
    max_size = parse_size(opts["max-size"]) if "max-size" in opts else DEFAULT_MAX_SIZE
    try:
        max_file = int(opts.get("max-file", DEFAULT_MAX_FILE))
    except ValueError:
        raise InvalidArgument(f"invalid value for max-file: {opts['max-file']}") from None
    if max_file < 1:
        raise InvalidArgument("max-file cannot be less than 1")
    compress = driver == "local"
    if "compress" in opts:
        compress = opts["compress"].lower() in ("1", "true")
    return max_size, max_file, compress


class LogWriter:
    """Appends one container's output to its log, rotating as it goes."""

    def __init__(self, path: str, max_size: int = DEFAULT_MAX_SIZE,
                 max_file: int = DEFAULT_MAX_FILE, compress: bool = False,
                 attrs: dict[str, str] | None = None) -> None:
        self.path = path
        self.max_size = max_size
        self.max_file = max_file
        self.compress = compress
        # --log-opt labels=/env=: the same attributes on every line (logs --details)
        self.attrs = attrs or {}
        self._partial: dict[str, bytes] = {}
        self.fd = self._open()
        self.size = os.fstat(self.fd).st_size

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)

    def write(self, stream: str, data: bytes, ns: int | None = None) -> None:
        """Log ``data`` read from ``stream``; an unfinished line waits for its end."""
        buf = self._partial.pop(stream, b"") + data
        stamp = rfc3339_nano(ns if ns is not None else time.time_ns())
        out = []
        start = 0
        while True:
            nl = buf.find(b"\n", start, start + MAX_LINE)
            if nl >= 0:
                out.append(self._line(buf[start:nl + 1], stream, stamp))
                start = nl + 1
            elif len(buf) - start >= MAX_LINE:
                out.append(self._line(buf[start:start + MAX_LINE], stream, stamp))
                start += MAX_LINE
            else:
                break
        if start < len(buf):
            self._partial[stream] = buf[start:]
        if out:
            self._append(b"".join(out))

    def flush(self, stream: str | None = None) -> None:
        """Write what is left of an unfinished line (at EOF of ``stream``, or all)."""
        stamp = rfc3339_nano(time.time_ns())
        for name in ([stream] if stream else list(self._partial)):
            rest = self._partial.pop(name, b"")
            if rest:
                self._append(self._line(rest, name, stamp))

    def close(self) -> None:
        self.flush()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _line(self, text: bytes, stream: str, stamp: str) -> bytes:
        line: dict[str, object] = {"log": text.decode("utf-8", "replace"), "stream": stream}
        if self.attrs:
            line["attrs"] = self.attrs
        line["time"] = stamp
        return (jsonfast.dumps(line) + "\n").encode()

    def _append(self, data: bytes) -> None:
        if self.max_size and self.size and self.size + len(data) > self.max_size:
            self._rotate()
        os.write(self.fd, data)
        self.size += len(data)

    def _rotate(self) -> None:
        os.close(self.fd)
        if self.max_file > 1:
            suffix = ".gz" if self.compress else ""
            for i in range(self.max_file - 1, 1, -1):
                older = f"{self.path}.{i - 1}{suffix}"
                if os.path.exists(older):
                    os.rename(older, f"{self.path}.{i}{suffix}")
            os.rename(self.path, f"{self.path}.1")
            if self.compress:
                _gzip_file(f"{self.path}.1")
            self.fd = self._open()
        else:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_TRUNC | os.O_CLOEXEC)
        self.size = 0


def _gzip_file(path: str) -> None:
    import zlib

    comp = zlib.compressobj(1, zlib.DEFLATED, 31)
    tmp = path + ".gz.tmp"
    with open(path, "rb") as src, open(tmp, "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(comp.compress(chunk))
        dst.write(comp.flush())
    os.rename(tmp, path + ".gz")
    os.unlink(path)


# --- reading ---------------------------------------------------------------------------

def files(path: str) -> list[str]:
    """The log's files, oldest first (rotated ones, then the live one)."""
    out = []
    i = 1
    while True:
        for cand in (f"{path}.{i}", f"{path}.{i}.gz"):
            if os.path.exists(cand):
                out.append(cand)
                break
        else:
            break
        i += 1
    out.reverse()
    if os.path.exists(path):
        out.append(path)
    return out


def size(path: str) -> int:
    return sum(os.path.getsize(f) for f in files(path))


class Entry:
    __slots__ = ("attrs", "line", "stream", "time", "ts")

    def __init__(self, line: bytes, stream: str, stamp: str, ts: float,
                 attrs: dict[str, str] | None = None) -> None:
        self.line = line
        self.stream = stream
        self.time = stamp
        self.ts = ts
        self.attrs = attrs or {}

    def details(self) -> bytes:
        """docker logs --details' prefix: the attributes as k=v,k=v (query-escaped,
        sorted), then a space, even when there are none."""
        from urllib.parse import quote_plus

        return ",".join(f"{quote_plus(k)}={quote_plus(v)}"
                        for k, v in sorted(self.attrs.items())).encode() + b" "


def parse(raw: bytes) -> Entry | None:
    try:
        obj = jsonfast.loads(raw)
    except ValueError:
        return None  # a line torn by a crash mid-write: skipped, as Docker does
    if not isinstance(obj, dict):
        return None
    stamp = str(obj.get("time", ""))
    attrs = obj.get("attrs")
    return Entry(str(obj.get("log", "")).encode(), str(obj.get("stream", "stdout")),
                 stamp, parse_time(stamp),
                 {str(k): str(v) for k, v in attrs.items()} if isinstance(attrs, dict) else None)


def parse_time(stamp: str) -> float:
    """Seconds since the epoch of an RFC 3339 UTC time as the writer makes them (0 if not)."""
    import calendar

    head, _, frac = stamp.rstrip("Z").partition(".")
    try:
        secs = calendar.timegm(time.strptime(head, "%Y-%m-%dT%H:%M:%S"))
        return secs + (int(frac[:9].ljust(9, "0")) / 1e9 if frac else 0.0)
    except ValueError:
        return 0.0




def read_lines(fname: str) -> Iterator[bytes]:
    if fname.endswith(".gz"):
        import gzip

        with gzip.open(fname, "rb") as g:
            yield from g
        return
    with open(fname, "rb") as f:
        yield from f


def entries(path: str) -> Iterator[Entry]:
    for fname in files(path):
        try:
            for raw in read_lines(fname):
                if raw.endswith(b"\n"):
                    e = parse(raw)
                    if e is not None:
                        yield e
        except FileNotFoundError:
            continue  # rotated away while we read
