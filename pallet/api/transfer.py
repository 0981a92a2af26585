"""/images/get and /images/load: ``docker save`` and ``docker load`` over the Engine API.

Save streams: the archive is written by a worker thread into a bounded asyncio queue
and the handler copies the queue to a chunked response, so at most a few chunks of it
are ever in memory whatever the images weigh::

    worker thread                     event loop
    write_docker_archive --write()--> queue (_QUEUE_CHUNKS x 1 MiB) --> resp.write()
         blocks while the queue is full (the client's pace)

The status line waits for the first chunk (as moby's WriteFlusher does), so a name that
names nothing is still a plain 404. A failure after bytes went out can only cut the
connection: the client then sees a truncated transfer, never a tar that looks whole.

Load spools the body to a temp file, loads it in a thread and answers Docker's JSON
stream (``{"stream": "Loaded image: busybox:latest\\n"}``). dockerd answers 200 and an
error message in the stream even for a body that is no tar; palletd answers the error
status (400 for a bad archive) while nothing has been streamed yet, and the stream's
error message only after.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
from collections.abc import Callable
from typing import Any, BinaryIO, cast

from aiohttp import web

from pallet.api import params
from pallet.api.system import engine
from pallet.engine import transfer
from pallet.engine.images import ImageService
from pallet.errors import PalletError
from pallet.oci.units import human_size

log = logging.getLogger("palletd")

CHUNK = 1 << 20
_QUEUE_CHUNKS = 4
_BAR_WIDTH = 50

SaveItem = bytes | BaseException | None  # a chunk, the worker's failure, or the end


def _images(request: web.Request) -> ImageService:
    return engine(request).images


# --- save -----------------------------------------------------------------------------------

class _Cancelled(Exception):
    """The client went away: the worker stops at its next write."""


class _QueueWriter:
    """A file the worker thread writes; whole chunks go to the loop's queue."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[SaveItem]) -> None:
        self._loop = loop
        self._queue = queue
        self._buf = bytearray()
        self.cancelled = False  # set by the loop, read by the worker

    def write(self, data: bytes) -> int:
        if self.cancelled:
            raise _Cancelled
        self._buf += data
        if len(self._buf) >= CHUNK:
            self._send(bytes(self._buf))
            self._buf.clear()
        return len(data)

    def _send(self, item: SaveItem) -> None:
        # Blocks while the queue is full: the response's pace is the writer's.
        asyncio.run_coroutine_threadsafe(self._queue.put(item), self._loop).result()

    def run(self, work: Callable[[BinaryIO], None]) -> None:
        """``work(self)`` then the end marker; its exception instead, if it raises."""
        try:
            work(cast(BinaryIO, self))
            if self._buf:
                self._send(bytes(self._buf))
        except BaseException as exc:  # handed to the loop, which re-raises or logs it
            self._send(exc)
            return
        self._send(None)


async def _stream_save(request: web.Request, names: list[str]) -> web.StreamResponse:
    svc = _images(request)
    selected = await asyncio.to_thread(transfer.select, svc, names)
    queue: asyncio.Queue[SaveItem] = asyncio.Queue(maxsize=_QUEUE_CHUNKS)
    writer = _QueueWriter(asyncio.get_running_loop(), queue)
    worker = asyncio.ensure_future(asyncio.to_thread(
        writer.run, lambda out: transfer.save(svc, selected, out)))
    finished = False
    try:
        item = await queue.get()
        finished = not isinstance(item, bytes)
        if isinstance(item, BaseException):
            raise item
        resp = web.StreamResponse(headers={"Content-Type": "application/x-tar"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            while isinstance(item, bytes):
                await resp.write(item)
                item = await queue.get()
        except ConnectionError:
            log.info("GET %s: the client left before the end of the archive", request.path)
            return resp  # the finally stops the worker
        finished = True
        if isinstance(item, BaseException):
            log.error("GET %s: save failed after the stream began: %s", request.path, item)
            if request.transport is not None:
                request.transport.abort()
            return resp
        await resp.write_eof()
        return resp
    finally:
        writer.cancelled = True
        while not finished:  # unblock the worker: take what it still puts, up to its end
            finished = not isinstance(await queue.get(), bytes)
        await worker


async def save_one(request: web.Request) -> web.StreamResponse:
    """GET /images/{name}/get"""
    return await _stream_save(request, [request.match_info["name"]])


async def save_many(request: web.Request) -> web.StreamResponse:
    """GET /images/get?names=a&names=b"""
    return await _stream_save(request, request.rel_url.query.getall("names", []))


# --- load -----------------------------------------------------------------------------------

LoadItem = transfer.LoadReport | BaseException | None


async def load(request: web.Request) -> web.StreamResponse:
    """POST /images/load?quiet=0 with the archive as the body (moby: quiet unless told)."""
    quiet = params.boolean(request.rel_url.query.get("quiet"), default=True)
    svc = _images(request)
    fd, path = tempfile.mkstemp(dir=svc.tmp, prefix="load-")
    try:
        with os.fdopen(fd, "wb") as f:
            async for chunk in request.content.iter_chunked(CHUNK):
                f.write(chunk)
        return await _stream_load(request, svc, path, quiet)
    finally:
        os.unlink(path)


async def _stream_load(request: web.Request, svc: ImageService, path: str,
                       quiet: bool) -> web.StreamResponse:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[LoadItem] = asyncio.Queue()

    def put(item: LoadItem) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, item)

    def report(r: transfer.LoadReport) -> None:
        if not (quiet and r.layer):  # quiet drops the progress, never the result
            put(r)

    def work() -> None:
        try:
            with open(path, "rb") as f:
                transfer.load(svc, f, report)
        except BaseException as exc:  # handed to the loop, which re-raises or streams it
            put(exc)
            return
        put(None)

    # The load runs to its end even if the client leaves: the store stays whole.
    worker = asyncio.ensure_future(asyncio.to_thread(work))
    try:
        item = await queue.get()
        if isinstance(item, BaseException):
            raise item
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            while isinstance(item, transfer.LoadReport):
                await resp.write(_json(_message(item)))
                item = await queue.get()
            if isinstance(item, BaseException):
                if not isinstance(item, PalletError):
                    log.error("POST %s failed", request.path, exc_info=item)
                text = (str(item) if isinstance(item, PalletError)
                        else f"{type(item).__name__}: {item}")
                await resp.write(_json({"errorDetail": {"message": text}, "error": text}))
            await resp.write_eof()
        except ConnectionError:
            log.info("POST %s: the client left; the load goes on to its end", request.path)
        return resp
    finally:
        await worker


def _message(r: transfer.LoadReport) -> dict[str, Any]:
    if not r.layer:
        return {"stream": r.message + "\n"}
    done = human_size(r.size)
    return {"status": r.message, "progressDetail": {"current": r.size, "total": r.size},
            "progress": f"[{'=' * _BAR_WIDTH}>]  {done}/{done}", "id": r.layer}


def _json(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def add_routes(add: object) -> None:
    assert callable(add)
    add("GET", "/images/get", save_many)
    add("GET", "/images/{name:.+}/get", save_one)
    add("POST", "/images/load", load)
