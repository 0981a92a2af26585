"""/networks/*: create, list, inspect, remove, prune, connect and disconnect."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from pallet.api import params
from pallet.api.system import engine
from pallet.errors import InvalidArgument


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise InvalidArgument(f"invalid JSON: {exc}") from None


async def create(request: web.Request) -> web.Response:
    doc = await asyncio.to_thread(engine(request).sandboxes.create_network,
                                  await _body(request))
    return web.json_response({"Id": doc["Id"], "Warning": ""}, status=201)


async def listing(request: web.Request) -> web.Response:
    flt = params.filters(request.rel_url.query.get("filters"))
    return web.json_response(await asyncio.to_thread(engine(request).networks.listing, flt))


async def inspect(request: web.Request) -> web.Response:
    return web.json_response(await asyncio.to_thread(engine(request).networks.inspect,
                                                     request.match_info["id"]))


async def remove(request: web.Request) -> web.Response:
    await asyncio.to_thread(engine(request).sandboxes.remove_network, request.match_info["id"])
    return web.Response(status=204)


async def prune(request: web.Request) -> web.Response:
    flt = params.filters(request.rel_url.query.get("filters"))
    eng = engine(request)

    def run() -> list[str]:
        gone = []
        for doc in eng.networks.prunable(flt):
            eng.sandboxes.remove_network(doc["Id"])
            gone.append(doc["Name"])
        return gone

    return web.json_response({"NetworksDeleted": await asyncio.to_thread(run)})


async def connect(request: web.Request) -> web.Response:
    body = await _body(request)
    if not isinstance(body, dict) or not body.get("Container"):
        raise InvalidArgument("connect: Container must be given")
    await asyncio.to_thread(engine(request).containers.connect, request.match_info["id"],
                            str(body["Container"]), body.get("EndpointConfig"))
    return web.Response(status=200)


async def disconnect(request: web.Request) -> web.Response:
    body = await _body(request)
    if not isinstance(body, dict) or not body.get("Container"):
        raise InvalidArgument("disconnect: Container must be given")
    await asyncio.to_thread(engine(request).containers.disconnect, request.match_info["id"],
                            str(body["Container"]), bool(body.get("Force")))
    return web.Response(status=200)


def add_routes(add: Any) -> None:
    add("POST", "/networks/create", create)
    add("GET", "/networks", listing)
    add("GET", "/networks/", listing)
    add("POST", "/networks/prune", prune)
    add("GET", "/networks/{id}", inspect)
    add("DELETE", "/networks/{id}", remove)
    add("POST", "/networks/{id}/connect", connect)
    add("POST", "/networks/{id}/disconnect", disconnect)
