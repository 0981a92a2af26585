"""/images/*: list, inspect, history, tag, remove, prune, import (POST /images/create)."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile

from aiohttp import web

from pallet.api import distribution, params
from pallet.api.system import engine
from pallet.engine.images import ImageService
from pallet.errors import InvalidArgument


def _images(request: web.Request) -> ImageService:
    return engine(request).images


async def list_images(request: web.Request) -> web.Response:
    q = request.rel_url.query
    flt = params.filters(q.get("filters"))
    for key in flt:
        if key not in ("dangling", "label", "reference", "before", "since", "until"):
            raise InvalidArgument(f"invalid filter '{key}'")
    body = await asyncio.to_thread(_images(request).listing, request["api_version"], flt,
                                   params.boolean(q.get("all")),
                                   params.boolean(q.get("shared-size")))
    return web.json_response(body)


async def inspect_image(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    return web.json_response(
        await asyncio.to_thread(_images(request).inspect, name, request["api_version"]))


async def history(request: web.Request) -> web.Response:
    return web.json_response(
        await asyncio.to_thread(_images(request).history, request.match_info["name"]))


async def tag(request: web.Request) -> web.Response:
    q = request.rel_url.query
    if not q.get("repo"):
        raise InvalidArgument("repository name must have at least one component")
    await asyncio.to_thread(_images(request).tag, request.match_info["name"], q["repo"],
                            q.get("tag", ""))
    return web.Response(status=201)


async def delete(request: web.Request) -> web.Response:
    q = request.rel_url.query
    return web.json_response(await asyncio.to_thread(
        _images(request).delete, request.match_info["name"], params.boolean(q.get("force"))))


async def prune(request: web.Request) -> web.Response:
    flt = params.filters(request.rel_url.query.get("filters"))
    return web.json_response(await asyncio.to_thread(_images(request).prune, flt))


async def create(request: web.Request) -> web.StreamResponse:
    """fromSrc=- imports the request body; fromImage pulls (api/distribution.py)."""
    q = request.rel_url.query
    if q.get("fromImage"):
        return await distribution.pull_image(request)
    src = q.get("fromSrc")
    if src != "-":
        raise InvalidArgument("fromSrc must be '-' (the request body); URLs are not fetched")
    repo = q.get("repo", "")
    repo_tag = f"{repo}:{q['tag']}" if repo and q.get("tag") else repo
    changes = q.getall("changes", [])
    svc = _images(request)
    # Spool the body to disk: the import reads it twice (blob, then layer).
    fd, path = tempfile.mkstemp(dir=svc.tmp)
    try:
        with os.fdopen(fd, "wb") as f:
            async for chunk in request.content.iter_chunked(1 << 20):
                f.write(chunk)
        with open(path, "rb") as f:
            image_id = await asyncio.to_thread(svc.import_tar, f, repo_tag, changes,
                                               q.get("message", ""), q.get("platform", ""))
    finally:
        os.unlink(path)
    return web.Response(text=json.dumps({"status": image_id}) + "\n",
                        content_type="application/json")


async def bootstrap(request: web.Request) -> web.Response:
    """pallet's own: POST /images/bootstrap?fromImage=busybox&tag=latest (no registry)."""
    q = request.rel_url.query
    ref = q.get("fromImage", "")
    name, _, tag = ref.partition(":")
    image_id = await asyncio.to_thread(_images(request).bootstrap, name,
                                       q.get("tag") or tag or "latest")
    return web.Response(text=json.dumps({"status": image_id}) + "\n",
                        content_type="application/json")


def add_routes(add: object) -> None:
    assert callable(add)
    add("GET", "/images/json", list_images)
    add("POST", "/images/create", create)
    add("POST", "/images/prune", prune)
    add("POST", "/images/bootstrap", bootstrap)
    add("GET", "/images/{name:.+}/json", inspect_image)
    add("GET", "/images/{name:.+}/history", history)
    add("POST", "/images/{name:.+}/tag", tag)
    add("DELETE", "/images/{name:.+}", delete)
