"""/volumes/*: create, list, inspect, remove, prune — and, beyond Docker, export and
import of a volume's contents as a tar stream.

    GET  /volumes/{name}/export   200, the tar (names relative to the volume's root)
    POST /volumes/{name}/import   the request body, a tar, extracted into the volume;
                                  a missing volume is created (local driver, no options);
                                  it must be empty (409 otherwise); 204 when done, and on
                                  failure the volume is as before (emptied again, or gone
                                  if the import created it)
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
from typing import Any

from aiohttp import web

from pallet.api import params, streams
from pallet.api.system import engine
from pallet.api.versions import parse as parse_version
from pallet.engine import volumetar
from pallet.engine.volumes import VolumeService
from pallet.errors import InvalidArgument

log = logging.getLogger("palletd")


def _svc(request: web.Request) -> VolumeService:
    return engine(request).volumes


def _name(request: web.Request) -> str:
    return request.match_info["name"]


async def list_volumes(request: web.Request) -> web.Response:
    flt = params.filters(request.rel_url.query.get("filters"))
    return web.json_response(await asyncio.to_thread(_svc(request).listing, flt))


async def create(request: web.Request) -> web.Response:
    raw = await request.read()
    try:
        body: Any = json.loads(raw) if raw else {}
    except ValueError as exc:
        raise InvalidArgument(f"invalid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidArgument("invalid volume create request: must be a JSON object")
    for key in ("DriverOpts", "Labels"):
        value = body.get(key)
        if value is not None and not isinstance(value, dict):
            raise InvalidArgument(f"invalid volume create request: {key} must be an object")
    if body.get("ClusterVolumeSpec"):
        raise InvalidArgument("cluster volumes need a swarm manager; this node is not one")
    reply = await asyncio.to_thread(
        _svc(request).create, str(body.get("Name") or ""), str(body.get("Driver") or ""),
        body.get("DriverOpts") or {}, body.get("Labels") or {})
    return web.json_response(reply, status=201)


async def inspect(request: web.Request) -> web.Response:
    return web.json_response(await asyncio.to_thread(_svc(request).inspect, _name(request)))


async def remove(request: web.Request) -> web.Response:
    force = params.boolean(request.rel_url.query.get("force"))
    await asyncio.to_thread(_svc(request).remove, _name(request), force)
    return web.Response(status=204)


async def prune(request: web.Request) -> web.Response:
    flt = params.filters(request.rel_url.query.get("filters"))
    if parse_version(request["api_version"]) < (1, 42):
        flt["all"] = ["true"]  # before 1.42 prune took every unused volume
    return web.json_response(await asyncio.to_thread(_svc(request).prune, flt))


async def export(request: web.Request) -> web.StreamResponse:
    svc = _svc(request)
    name = _name(request)
    path, ref = await asyncio.to_thread(svc.export_begin, name)
    try:
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/x-tar"})
        await resp.prepare(request)
        chunks = volumetar.export(path)
        try:
            while True:
                chunk = await asyncio.to_thread(next, chunks, None)
                if chunk is None:
                    break
                await resp.write(chunk)
        except ConnectionError:
            log.info("GET %s: the client left before the end of the archive", request.path)
            return resp
        except OSError as exc:  # after the head: only cutting the stream says it failed
            log.error("GET %s: export failed after the stream began: %s", request.path, exc)
            if request.transport is not None:
                request.transport.abort()
            return resp
        await resp.write_eof()
        return resp
    finally:
        await asyncio.to_thread(svc.release, name, ref)


async def import_volume(request: web.Request) -> web.Response:
    svc = _svc(request)
    name = _name(request)
    path, ref, made = await asyncio.to_thread(svc.import_begin, name)
    ok = False
    proc: subprocess.Popen[bytes] | None = None
    try:
        proc = await asyncio.to_thread(volumetar.open_import, path)
        await streams.feed(proc, request)
        await asyncio.to_thread(volumetar.finish_import, proc, name)
        ok = True
    finally:
        if proc is not None and proc.poll() is None:  # the client went away mid-stream
            proc.kill()
            await asyncio.to_thread(proc.wait)
        await asyncio.to_thread(svc.import_end, name, ref, made, ok)
    return web.Response(status=204)


def add_routes(add: Any) -> None:
    add("GET", "/volumes", list_volumes)
    add("POST", "/volumes/create", create)
    add("POST", "/volumes/prune", prune)
    add("GET", "/volumes/{name}", inspect)
    add("DELETE", "/volumes/{name}", remove)
    add("GET", "/volumes/{name}/export", export)
    add("POST", "/volumes/{name}/import", import_volume)
