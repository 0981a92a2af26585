"""A registry's front, served by aiohttp in a thread of the test, on 127.0.0.1."""

from __future__ import annotations

import asyncio
import threading

import aiohttp
from aiohttp import web


class ThreadedProxy:
    """Subclasses implement ``handle``; ``start`` serves every GET on a free port."""

    port: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError

    @staticmethod
    async def fetch(upstream: str, request: web.Request) -> tuple[int, bytes, dict[str, str]]:
        """The registry's answer to ``request``: status, body and the headers that matter."""
        headers = {k: v for k, v in request.headers.items()
                   if k in ("Accept", "Range", "Authorization")}
        async with aiohttp.ClientSession() as session, session.get(
                upstream + request.path_qs, headers=headers) as up:
            body = await up.read()
            keep = {k: v for k, v in up.headers.items()
                    if k in ("Content-Type", "Docker-Content-Digest", "Content-Range")}
            return up.status, body, keep

    def start(self) -> None:
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_get("/{tail:.*}", self.handle)
            runner = web.AppRunner(app, access_log=None)
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.shutdown())
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        assert ready.wait(10)

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
