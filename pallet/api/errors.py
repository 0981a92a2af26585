"""The one table from pallet's exceptions to HTTP status codes, with Docker's body.

Docker answers ``{"message": "..."}`` with 404 for missing objects, 409 for conflicts
and wrong states, 400 for bad parameters and 500 for the rest (moby's
errdefs/httpstatus table); so does palletd, from here and nowhere else.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from pallet.errors import (
    Conflict,
    Forbidden,
    InvalidArgument,
    InvalidState,
    NotFound,
    NotSupported,
    PalletError,
    SystemFailure,
)

log = logging.getLogger("palletd")

STATUS: tuple[tuple[type[PalletError], int], ...] = (
    (NotFound, 404),
    (Conflict, 409),
    (InvalidState, 409),
    (InvalidArgument, 400),
    (Forbidden, 403),
    (NotSupported, 501),
    (SystemFailure, 500),
)


def status_of(exc: BaseException) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def error_response(status: int, message: str) -> web.Response:
    # Exactly "application/json": the docker CLI shows the body raw if a charset follows.
    return web.Response(status=status, body=json.dumps({"message": message}).encode() + b"\n",
                        headers={"Content-Type": "application/json"})


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def errors_middleware(request: web.Request,
                            handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Exception as exc:
        if request.writer.output_size > 0:
            # A stream (export, logs, a pull's progress) failed after its headers went
            # out: a second response would land inside the body. Re-raised, aiohttp
            # logs it and drops the connection; the client sees the body end early.
            raise
        return _answer(request, exc)


def _answer(request: web.Request, exc: Exception) -> web.StreamResponse:
    """The error response for ``exc``, which is being handled."""
    if isinstance(exc, web.HTTPNotFound):
        return error_response(404, "page not found")  # Docker's words for an unknown route
    if isinstance(exc, web.HTTPException):
        if exc.status >= 400 and exc.content_type != "application/json":
            return error_response(exc.status, exc.text or exc.reason)
        raise exc
    if isinstance(exc, PalletError):
        return error_response(status_of(exc), str(exc))
    # a bug: answer 500 with the message, keep the daemon up
    log.exception("%s %s failed", request.method, request.path)
    return error_response(500, f"{type(exc).__name__}: {exc}")
