"""HTTP/1.1 over a unix socket (or TCP+TLS): requests, whole and streamed responses."""

from __future__ import annotations

# _socket, not socket: the socket module drags in enum, selectors and functools
# (~12 ms of every CLI start); a unix stream needs none of them.
import _socket
import posix

# json through _json alone: the json package imports re (~10 ms per CLI start).
from pallet.oci import jsonfast as json

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from collections.abc import Iterator
    from typing import BinaryIO

    Socket = _socket.socket

DEFAULT_HOST = "unix:///run/pallet/pallet.sock"
CLIENT_API_VERSION = "1.44"


class APIError(Exception):
    """The daemon answered an error: its status and Docker's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ConnectionFailed(Exception):
    """No daemon answers at the host."""


class Response:
    def __init__(self, status: int, headers: dict[str, str], sock: Socket,
                 buf: bytes) -> None:
        self.status = status
        self.headers = headers
        self._sock = sock
        self._buf = buf

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")

    def chunks(self) -> Iterator[bytes]:
        """The body as it arrives (chunked, sized, or until the connection closes)."""
        if self.header("transfer-encoding").lower() == "chunked":
            yield from self._chunked()
            return
        length = self.header("content-length")
        if length:
            remaining = int(length) - len(self._buf)
            if self._buf:
                yield self._buf
            while remaining > 0:
                data = self._sock.recv(min(65536, remaining))
                if not data:
                    raise _cut()
                remaining -= len(data)
                yield data
            return
        if self._buf:
            yield self._buf
        while True:
            data = self._sock.recv(65536)
            if not data:
                return
            yield data

    def _fill(self, n: int) -> None:
        while len(self._buf) < n:
            data = self._sock.recv(65536)
            if not data:
                raise _cut()
            self._buf += data

    def _chunked(self) -> Iterator[bytes]:
        # A body cut before its last (zero-size) chunk is an error, never a short success:
        # `pallet save` must not leave a truncated archive that looks whole.
        while True:
            while b"\r\n" not in self._buf:
                data = self._sock.recv(65536)
                if not data:
                    raise _cut()
                self._buf += data
            line, _, self._buf = self._buf.partition(b"\r\n")
            size = int(line.split(b";")[0], 16)
            if size == 0:
                return
            self._fill(size + 2)
            chunk, self._buf = self._buf[:size], self._buf[size + 2:]
            yield chunk

    def read(self) -> bytes:
        return b"".join(self.chunks())

    def json(self) -> object:
        return json.loads(self.read() or b"null")

    def lines(self) -> Iterator[bytes]:
        """JSON-lines streams (events, pull progress): one complete line at a time."""
        pending = b""
        for chunk in self.chunks():
            pending += chunk
            while b"\n" in pending:
                line, _, pending = pending.partition(b"\n")
                if line.strip():
                    yield line
        if pending.strip():
            yield pending

    def close(self) -> None:
        self._sock.close()


def getenv(name: str) -> str | None:
    """``os.environ.get`` for the CLI's hot path, which does not import os: its
    _collections_abc costs ~2.5 ms of every command's start here."""
    value = posix.environ.get(name.encode())
    return None if value is None else value.decode(errors="surrogateescape")


class Transport:
    """One daemon, one API version (negotiated on first use with HEAD /_ping)."""

    def __init__(self, host: str | None = None) -> None:
        self.host = host or getenv("PALLET_HOST") or getenv("DOCKER_HOST") or DEFAULT_HOST
        self.version: str | None = getenv("DOCKER_API_VERSION") or None

    def _connect(self) -> Socket:
        try:
            if self.host.startswith("unix://"):
                s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
                try:
                    s.connect(self.host[len("unix://"):])
                except BaseException:
                    s.close()
                    raise
                return s
            if self.host.startswith("tcp://"):
                import socket

                addr, _, port = self.host[len("tcp://"):].rpartition(":")
                return self._tls(socket.create_connection((addr, int(port)), timeout=60), addr)
        except OSError as exc:
            raise ConnectionFailed(
                f"Cannot connect to the pallet daemon at {self.host}. "
                "Is the pallet daemon running?") from exc
        raise ConnectionFailed(f"unsupported host: {self.host}")

    def _tls(self, s: socket.socket, server: str) -> Socket:
        import os
        import ssl

        certs = os.environ.get("DOCKER_CERT_PATH", os.path.expanduser("~/.docker"))
        ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))
        ctx.load_cert_chain(os.path.join(certs, "cert.pem"), os.path.join(certs, "key.pem"))
        return ctx.wrap_socket(s, server_hostname=server)

    def negotiate(self) -> str:
        if self.version is None:
            resp = self.request("HEAD", "/_ping", versioned=False)
            server = resp.header("api-version") or CLIENT_API_VERSION
            resp.close()
            self.version = min((server, CLIENT_API_VERSION), key=_vkey)
        return self.version

    def request(self, method: str, path: str, query: dict[str, object] | None = None,
                body: bytes | BinaryIO | None = None, headers: dict[str, str] | None = None,
                versioned: bool = True,
                repeated: dict[str, list[str]] | None = None) -> Response:
        """Send a request; raise APIError for a status >= 400 (with Docker's message).

        The first request goes out with our own API version, without asking the daemon
        first (one round trip less per command); an older daemon refuses it as "too
        new", and then the version is negotiated and the request sent again.
        """
        optimistic = versioned and self.version is None and (
            body is None or isinstance(body, bytes))
        try:
            resp = self._request(method, path, query, body, headers, versioned, repeated,
                                 CLIENT_API_VERSION if optimistic else None)
            if optimistic:
                self.version = CLIENT_API_VERSION  # the daemon speaks it
            return resp
        except APIError as exc:
            if not (optimistic and exc.status == 400 and "too new" in exc.message):
                raise
        return self._request(method, path, query, body, headers, versioned, repeated, None)

    def _request(self, method: str, path: str, query: dict[str, object] | None,
                 body: bytes | BinaryIO | None, headers: dict[str, str] | None,
                 versioned: bool, repeated: dict[str, list[str]] | None,
                 version: str | None) -> Response:
        url = f"/v{version or self.negotiate()}{path}" if versioned else path
        if query:
            q = [f"{_quote(k)}={_quote(_qvalue(v))}" for k, v in query.items() if v is not None]
            for k, values in (repeated or {}).items():  # ?changes=a&changes=b
                q += [f"{_quote(k)}={_quote(v)}" for v in values]
            if q:
                url += "?" + "&".join(q)
        hdrs = {"Host": "pallet", "User-Agent": "pallet-cli", **(headers or {})}
        if body is not None:
            hdrs.setdefault("Content-Type", "application/json")
            if isinstance(body, bytes):
                hdrs["Content-Length"] = str(len(body))
            else:  # a file or a pipe: streamed, never read whole into memory
                hdrs["Transfer-Encoding"] = "chunked"
        s = self._connect()
        head = f"{method} {url} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
        s.sendall(head.encode() + b"Connection: close\r\n\r\n"
                  + (body if isinstance(body, bytes) else b""))
        if body is not None and not isinstance(body, bytes):
            for chunk in iter(lambda: body.read(1 << 20), b""):
                s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            s.sendall(b"0\r\n\r\n")
        resp = _read_head(s, method)
        if resp.status >= 400:
            raw = resp.read()
            resp.close()
            try:
                message = str(json.loads(raw).get("message", raw.decode()))
            except (ValueError, AttributeError, UnicodeDecodeError):
                message = raw.decode(errors="replace").strip()
            raise APIError(resp.status, message)
        return resp

    def hijack(self, path: str, query: dict[str, object] | None = None,
               body: bytes | None = None) -> tuple[Socket, bytes]:
        """POST with ``Upgrade: tcp`` (attach, exec start): the raw socket once the daemon
        answers 101, and what it sent after the head already."""
        url = f"/v{self.negotiate()}{path}"
        if query:
            q = [f"{_quote(k)}={_quote(_qvalue(v))}" for k, v in query.items() if v is not None]
            url += "?" + "&".join(q) if q else ""
        s = self._connect()
        head = (f"POST {url} HTTP/1.1\r\nHost: pallet\r\nUser-Agent: pallet-cli\r\n"
                "Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body or b'')}\r\n\r\n")
        s.sendall(head.encode() + (body or b""))
        resp = _read_head(s, "POST")
        if resp.status >= 400:
            raw = resp.read()
            s.close()
            try:
                message = str(json.loads(raw).get("message", raw.decode()))
            except (ValueError, AttributeError, UnicodeDecodeError):
                message = raw.decode(errors="replace").strip()
            raise APIError(resp.status, message)
        return s, resp._buf

    def post_json(self, path: str, query: dict[str, object] | None = None,
                  body: object = None) -> object:
        data = json.dumps(body).encode() if body is not None else None
        resp = self.request("POST", path, query, data)
        try:
            return resp.json()
        finally:
            resp.close()

    def get_json(self, path: str, query: dict[str, object] | None = None) -> object:
        resp = self.request("GET", path, query)
        try:
            return resp.json()
        finally:
            resp.close()


def _cut() -> ConnectionFailed:
    return ConnectionFailed("unexpected EOF: the daemon closed the connection mid-response")


def _read_head(s: Socket, method: str) -> Response:
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = s.recv(65536)
        if not data:
            raise ConnectionFailed("the daemon closed the connection")
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if method == "HEAD":
        headers.pop("transfer-encoding", None)
        headers["content-length"] = "0"
    return Response(status, headers, s, rest)


_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


def _quote(text: str) -> str:
    """Percent-encoding of a query component (urllib.parse would import re: ~10 ms)."""
    return "".join(chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in text.encode())


def _qvalue(v: object) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, dict | list):
        return json.dumps(v)
    return str(v)


def _vkey(v: str) -> tuple[int, int]:
    major, _, minor = v.partition(".")
    return int(major), int(minor or 0)
