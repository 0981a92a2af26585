"""/_ping, /version, /info, /system/df, /events."""

from __future__ import annotations

import json

from aiohttp import web

from pallet.api import params
from pallet.api.versions import API_VERSION, MIN_API_VERSION
from pallet.engine import events, system
from pallet.engine.daemon import Engine

routes = web.RouteTableDef()


def engine(request: web.Request) -> Engine:
    eng: Engine = request.app["engine"]
    return eng


def ping_headers() -> dict[str, str]:
    return {"Builder-Version": "1", "Cache-Control": "no-cache, no-store, must-revalidate",
            "Pragma": "no-cache"}


async def ping(request: web.Request) -> web.Response:
    if request.method == "HEAD":
        return web.Response(headers={**ping_headers(), "Content-Length": "2",
                                     "Content-Type": "text/plain; charset=utf-8"})
    return web.Response(text="OK", headers=ping_headers())


async def version(request: web.Request) -> web.Response:
    return web.json_response(system.version_body(API_VERSION, MIN_API_VERSION))


async def info(request: web.Request) -> web.Response:
    eng = engine(request)
    return web.json_response(eng.info())


async def system_df(request: web.Request) -> web.Response:
    return web.json_response(engine(request).disk_usage())


async def events_stream(request: web.Request) -> web.StreamResponse:
    q = request.rel_url.query
    flt = params.filters(q.get("filters"))
    events.check_filters(flt)
    since = params.timestamp(q.get("since"))
    until = params.timestamp(q.get("until"))
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    async for ev in engine(request).events.stream(flt, since, until):
        await resp.write(json.dumps(ev).encode() + b"\n")
    await resp.write_eof()
    return resp


def add_routes(add: object) -> None:
    """Register with ``add(method, path, handler)`` (versioned and unversioned)."""
    assert callable(add)
    add("GET", "/_ping", ping)
    add("HEAD", "/_ping", ping)
    add("GET", "/version", version)
    add("GET", "/info", info)
    add("GET", "/system/df", system_df)
    add("GET", "/events", events_stream)
