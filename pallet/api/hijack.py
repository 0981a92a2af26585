"""The hijacked connection of attach and exec start: HTTP until 101, raw bytes after.

The docker CLI sends ``Connection: Upgrade`` / ``Upgrade: tcp`` and, once it has the
``101 UPGRADED`` head, reads the container's output from the socket and writes stdin
to it; at stdin's EOF it shuts its write side down and keeps reading until we close.
aiohttp would close the whole connection on that half-close, so the transport gets a
protocol in front of aiohttp's that keeps it open and reports the EOF instead.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

RAW = "application/vnd.docker.raw-stream"
MULTIPLEXED = "application/vnd.docker.multiplexed-stream"
HIGH_WATER = 1 << 20


class _Response(web.StreamResponse):
    """The 101 head; aiohttp's end-of-response writes nothing after our stream."""

    _length_check = False  # no chunked framing: the body is the raw stream

    async def write_eof(self, data: bytes = b"") -> None:
        return None


class _Input:
    """aiohttp's payload parser slot: what the client sends after the head."""

    def __init__(self, queue: asyncio.Queue[bytes | None]) -> None:
        self.queue = queue

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.queue.put_nowait(bytes(data))
        return False, b""

    def feed_eof(self) -> None:
        self.queue.put_nowait(None)


class _HalfClose(asyncio.Protocol):
    """Delegates to aiohttp's protocol, but a client's EOF keeps the connection open."""

    def __init__(self, inner: Any, on_eof: Any) -> None:
        self.inner = inner
        self.on_eof = on_eof

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool:
        self.on_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.on_eof()
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class Hijacked:
    """The raw stream: ``read()`` (None at the client's EOF), ``write()``, ``close()``."""

    def __init__(self, request: web.Request, response: web.StreamResponse) -> None:
        self.request = request
        self.response = response
        transport = request.transport
        assert transport is not None
        self.transport = transport
        self.input: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._eof = False
        request.protocol.set_parser(_Input(self.input))  # type: ignore[arg-type]
        transport.set_protocol(_HalfClose(request.protocol, self._on_eof))

    def _on_eof(self) -> None:
        if not self._eof:
            self._eof = True
            self.input.put_nowait(None)

    async def read(self) -> bytes | None:
        return await self.input.get()

    async def write(self, data: bytes) -> None:
        if self.transport.is_closing():
            raise ConnectionResetError("the client went away")
        self.transport.write(data)
        while self.transport.get_write_buffer_size() > HIGH_WATER:
            if self.transport.is_closing():
                raise ConnectionResetError("the client went away")
            await asyncio.sleep(0.005)

    def closed(self) -> bool:
        return self.transport.is_closing()

    def close(self) -> None:
        """End the stream; aiohttp closes the connection once the handler returns."""
        self.request.protocol.force_close()


async def upgrade(request: web.Request, content_type: str) -> Hijacked:
    """Answer 101 (or 200 to a client that did not ask to upgrade) and take the stream."""
    wants = request.headers.get("Upgrade", "").lower() == "tcp"
    resp = _Response(status=101 if wants else 200, reason="UPGRADED" if wants else "OK")
    resp.headers["Content-Type"] = content_type
    if wants:
        resp.headers["Connection"] = "Upgrade"
        resp.headers["Upgrade"] = "tcp"
    else:
        resp.force_close()
    await resp.prepare(request)
    return Hijacked(request, resp)
