"""/containers/{id}/exec and /exec/*: one more process in a running container."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from pallet.api import hijack
from pallet.api.containers import _json_body, _stream_content_type, _svc, detach_keys, pump
from pallet.errors import InvalidArgument, PalletError
from pallet.monitor import wire


async def create(request: web.Request) -> web.Response:
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise InvalidArgument("exec config cannot be empty")
    reply = await asyncio.to_thread(_svc(request).exec_create, request.match_info["id"], body)
    return web.json_response(reply, status=201)


async def start(request: web.Request) -> web.StreamResponse:
    svc = _svc(request)
    eid = request.match_info["id"]
    body = await _json_body(request) or {}
    ex = svc.exec_get(eid)
    detach = bool(body.get("Detach"))
    tty = bool(body["Tty"]) if body.get("Tty") is not None else ex["ProcessConfig"]["tty"]
    if body.get("ConsoleSize"):
        ex["ConsoleSize"] = body["ConsoleSize"]
    keys = detach_keys(ex["DetachKeys"] or "ctrl-p,ctrl-q")
    if detach:
        await svc.exec_start(eid, True, tty)
        return web.json_response({}, status=200)
    svc.exec_get(eid)  # 404 before the upgrade
    hj = await hijack.upgrade(request, _stream_content_type(request, tty))
    try:
        try:
            stream = await svc.exec_start(eid, False, tty)
        except PalletError as exc:
            # The stream is ours already: the error goes down it (as dockerd does), and
            # the exec's exit code says what failed.
            text = f"{exc}\r\n".encode()
            await hj.write(text if tty else wire.frame(1, text))
            return hj.response
        assert stream is not None
        await pump(stream[0], stream[1], hj, ex["OpenStdin"], tty, keys)
        await svc.exec_wait(eid)  # the exit code is there when the client asks for it
    except ConnectionError:
        pass
    finally:
        hj.close()
    return hj.response


async def inspect(request: web.Request) -> web.Response:
    ex = _svc(request).exec_get(request.match_info["id"])
    out: dict[str, Any] = {k: v for k, v in ex.items()
                           if k not in ("Env", "WorkingDir", "ConsoleSize", "Started")}
    return web.Response(body=json.dumps(out).encode(), content_type="application/json")


async def resize(request: web.Request) -> web.Response:
    svc = _svc(request)
    ex = svc.exec_get(request.match_info["id"])
    q = request.rel_url.query
    try:
        h, w = int(q.get("h", "0")), int(q.get("w", "0"))
    except ValueError:
        raise InvalidArgument("invalid resize height or width") from None
    if ex["Running"]:
        await asyncio.to_thread(svc.monitor.call, "resize", id=ex["ID"], height=h, width=w)
    return web.Response(status=200)


def add_routes(add: Any) -> None:
    add("POST", "/containers/{id}/exec", create)
    add("POST", "/exec/{id}/start", start)
    add("GET", "/exec/{id}/json", inspect)
    add("POST", "/exec/{id}/resize", resize)
