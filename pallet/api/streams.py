"""Request bodies into helper processes (cp into a container, volume import)."""

from __future__ import annotations

import asyncio
import subprocess

from aiohttp import web


async def feed(proc: subprocess.Popen[bytes], request: web.Request) -> None:
    """The request body into ``proc``'s stdin, then EOF; a helper that stops reading
    early says why on its own (the caller reads its verdict)."""
    assert proc.stdin is not None
    try:
        async for chunk in request.content.iter_chunked(1 << 20):
            await asyncio.to_thread(proc.stdin.write, chunk)
    except BrokenPipeError:
        pass
    finally:
        try:
            proc.stdin.close()
        except BrokenPipeError:
            pass
