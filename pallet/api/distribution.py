"""Registries: pull (POST /images/create?fromImage=), push, and login (POST /auth).

Pull and push answer a stream of Docker's JSON progress messages. As dockerd's
WriteFlusher does, the response starts with the first message: a failure before it (no
such manifest, no such tag) is an ordinary error response with its status code, one after
it is the stream's last line, ``{"errorDetail": {"message": …}, "error": …}``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web

from pallet.api.system import engine
from pallet.engine import distribution, pull, push
from pallet.errors import InvalidArgument, PalletError
from pallet.image import reference
from pallet.image.manifest import platform_from_string
from pallet.image.registry import Credentials, Unauthorized

log = logging.getLogger("palletd")

Job = Callable[[distribution.Emit], Coroutine[Any, Any, Any]]


def registry_auth(header: str | None) -> tuple[Credentials | None, str]:
    """``X-Registry-Auth``: base64url JSON {username, password, serveraddress} (or
    ``auth``, base64 "user:password"); "" or ``e30=`` ({}) mean anonymous."""
    if not header:
        return None, ""
    doc = json_header(header, "X-Registry-Auth")
    if not isinstance(doc, dict):
        raise InvalidArgument("invalid X-Registry-Auth header: not a JSON object")
    return auth_config(doc)


def json_header(value: str, name: str) -> Any:
    """A header docker sends as base64url JSON (padding optional), decoded."""
    value = value.strip()
    try:
        return json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    except (binascii.Error, ValueError) as exc:
        raise InvalidArgument(f"invalid {name} header: {exc}") from None


def auth_config(doc: dict[str, Any]) -> tuple[Credentials | None, str]:
    """(credentials, server address) from Docker's AuthConfig JSON."""
    user, password = str(doc.get("username") or ""), str(doc.get("password") or "")
    identity = str(doc.get("identitytoken") or "")
    if not user and isinstance(doc.get("auth"), str) and doc["auth"]:
        try:
            user, _, password = base64.b64decode(doc["auth"]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise InvalidArgument(f"invalid auth configuration: {exc}") from None
    server = str(doc.get("serveraddress") or "")
    if identity:
        return Credentials(user, "", identity), server
    return (Credentials(user, password) if user else None), server


def _line(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode() + b"\n"


async def stream(request: web.Request, job: Job) -> web.StreamResponse:
    """Run ``job``, writing its messages as they come; see the module's docstring."""
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    task: asyncio.Task[Any] = asyncio.create_task(job(queue.put_nowait))
    task.add_done_callback(lambda _: queue.put_nowait(None))
    resp: web.StreamResponse | None = None
    try:
        while (msg := await queue.get()) is not None:
            if resp is None:
                resp = web.StreamResponse(headers={"Content-Type": "application/json"})
                await resp.prepare(request)
            await resp.write(_line(msg))
        exc = task.exception()
        if exc is not None:
            if resp is None:
                raise exc
            if not isinstance(exc, PalletError):
                log.error("%s %s failed", request.method, request.path, exc_info=exc)
            message = str(exc) if isinstance(exc, PalletError) else \
                f"{type(exc).__name__}: {exc}"
            detail: dict[str, Any] = {"message": message}
            code = getattr(exc, "code", None)  # a build step's exit code
            if isinstance(code, int) and code:
                detail["code"] = code
            await resp.write(_line({"errorDetail": detail, "error": message}))
        if resp is None:  # a job that said nothing (pull and push always say something)
            return web.json_response({})
        await resp.write_eof()
    except ConnectionError:
        if resp is None or not resp.prepared:
            raise  # the job's own failure, before any answer: the error table's
        log.info("%s %s: the client went away; transfer stopped", request.method,
                 request.path)
    finally:
        if not task.done():  # the client went away: stop the transfer
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
    return resp


async def pull_image(request: web.Request) -> web.StreamResponse:
    """``POST /images/create?fromImage=…&tag=…&platform=…`` (images.create hands it here)."""
    q = request.rel_url.query
    ref = reference.parse_repository_and_tag(q["fromImage"], q.get("tag", ""))
    platform = platform_from_string(q["platform"]) if q.get("platform") else None
    creds, _ = registry_auth(request.headers.get("X-Registry-Auth"))
    svc = engine(request).images
    if ref.tag is None and ref.digest is None:  # no tag: every tag (docker pull -a)
        return await stream(request,
                            lambda emit: pull.pull_all_tags(svc, ref, platform, creds, emit))
    return await stream(request, lambda emit: pull.pull(svc, ref, platform, creds, emit))


async def push_image(request: web.Request) -> web.StreamResponse:
    """``POST /images/{name}/push?tag=…``: ``tag`` empty pushes every tag of ``name``."""
    svc = engine(request).images
    todo = await asyncio.to_thread(push.targets, svc, request.match_info["name"],
                                   request.rel_url.query.get("tag", ""))
    creds, _ = registry_auth(request.headers.get("X-Registry-Auth"))
    return await stream(request, lambda emit: push.push(svc, todo, creds, emit))


async def login(request: web.Request) -> web.Response:
    """``POST /auth``: check credentials against the registry; palletd stores nothing."""
    try:
        doc = json.loads(await request.read() or b"{}")
    except ValueError as exc:
        raise InvalidArgument(f"invalid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidArgument("invalid auth configuration: not a JSON object")
    creds, server = auth_config(doc)
    try:
        identity = await distribution.login(engine(request).cfg, server, creds)
    except Unauthorized as exc:
        # dockerd answers 401 here (and only here: a pull's 401 would make the docker CLI
        # prompt for a password).
        raise web.HTTPUnauthorized(text=str(exc)) from None
    return web.json_response({"Status": "Login Succeeded", "IdentityToken": identity})


def add_routes(add: object) -> None:
    """Register with ``add(method, path, handler)``; pulls come through images.create."""
    assert callable(add)
    add("POST", "/images/{name:.+}/push", push_image)
    add("POST", "/auth", login)
