"""``POST /build``: the classic builder's protocol, which the docker CLI speaks when
BuildKit is off (and docker-py always): the context as a tar body, the options as query
parameters, the progress as a stream of JSON messages (api/distribution.stream).

    {"stream": "Step 1/3 : FROM busybox\n"}   what the builder says and RUN prints
    {"aux": {"ID": "sha256:…"}}                the image, before "Successfully built"
    {"errorDetail": {"code": 3, "message": …}, "error": …}   the last line on failure
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from typing import Any

from aiohttp import web
from multidict import MultiMapping

from pallet.api import params
from pallet.api.distribution import auth_config, json_header, stream
from pallet.api.system import engine
from pallet.engine.builds import Options
from pallet.errors import InvalidArgument, NotSupported
from pallet.image.registry import Credentials
from pallet.image.registry.credentials import hostname
from pallet.storage import magic


def _json(q: MultiMapping[str], key: str, kind: type) -> Any:
    raw = q.get(key)
    if not raw:
        return kind()
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise InvalidArgument(f"invalid {key} parameter: {exc}") from None
    if not isinstance(value, kind):
        raise InvalidArgument(f"invalid {key} parameter: want a JSON {kind.__name__}")
    return value


def _int(q: MultiMapping[str], key: str) -> int | None:
    raw = q.get(key)
    if raw in (None, ""):
        return None
    try:
        return int(str(raw))
    except ValueError:
        raise InvalidArgument(f"invalid {key} parameter: {raw!r}") from None


def registry_config(header: str | None) -> dict[str, Credentials]:
    """``X-Registry-Config``: base64url JSON of {registry: AuthConfig}, every login the
    client has, for the build's pulls; by registry host."""
    if not header:
        return {}
    doc = json_header(header, "X-Registry-Config")
    out: dict[str, Credentials] = {}
    for key, entry in (doc.items() if isinstance(doc, dict) else []):
        if isinstance(entry, dict):
            creds, _ = auth_config(entry)
            if creds is not None:
                out[hostname(str(key))] = creds
    return out


def options(q: MultiMapping[str]) -> Options:
    if q.get("remote"):
        raise NotSupported("remote build contexts (git, URLs) are not supported: send the "
                           "context as the request body")
    if q.get("version") == "2":
        raise NotSupported("BuildKit (version=2) is not supported: use the classic builder "
                           "(DOCKER_BUILDKIT=0)")
    args = _json(q, "buildargs", dict)
    labels = _json(q, "labels", dict)
    hc: dict[str, Any] = {}
    for key, field in (("memory", "Memory"), ("memswap", "MemorySwap"),
                       ("cpushares", "CpuShares"), ("cpuperiod", "CpuPeriod"),
                       ("cpuquota", "CpuQuota"), ("shmsize", "ShmSize")):
        value = _int(q, key)
        if value:
            hc[field] = value
    for key, field in (("cpusetcpus", "CpusetCpus"), ("cpusetmems", "CpusetMems")):
        if q.get(key):
            hc[field] = q[key]
    hosts = [h for raw in q.getall("extrahosts", []) for h in raw.split(",") if h]
    epoch = _int(q, "sourcedateepoch")
    return Options(
        dockerfile=q.get("dockerfile") or "Dockerfile",
        tags=[t for t in q.getall("t", []) if t],
        no_cache=params.boolean(q.get("nocache")),
        pull=params.boolean(q.get("pull")),
        rm=params.boolean(q.get("rm"), default=True),
        force_rm=params.boolean(q.get("forcerm")),
        quiet=params.boolean(q.get("q")),
        build_args={str(k): (None if v is None else str(v)) for k, v in args.items()},
        labels={str(k): str(v) for k, v in labels.items()},
        target=q.get("target", ""),
        network=q.get("networkmode", "") if q.get("networkmode") != "default" else "",
        cache_from=[str(c) for c in _json(q, "cachefrom", list)],
        squash=params.boolean(q.get("squash")),
        extra_hosts=hosts,
        host_config=hc,
        platform=q.get("platform", ""),
        source_date_epoch=epoch,
    )


async def build(request: web.Request) -> web.StreamResponse:
    opts = options(request.rel_url.query)
    opts.auth = registry_config(request.headers.get("X-Registry-Config"))
    eng = engine(request)
    fd, path = tempfile.mkstemp(dir=eng.images.tmp, prefix="context-")
    try:
        with os.fdopen(fd, "wb") as f:
            head = b""
            async for chunk in request.content.iter_chunked(1 << 20):
                if len(head) < 8:
                    head += chunk[:8]
                f.write(chunk)
            if not magic.compressed(head):
                # The docker CLI ends the tar it sends after the last file's data: no
                # padding, no end-of-archive blocks (Go's reader takes that; tarfile
                # wants them). Zero blocks after a whole archive change nothing.
                f.write(b"\0" * (-f.tell() % 512 + 1024))
        with open(path, "rb") as body:
            return await stream(request, lambda emit: eng.builds.build(body, opts, emit))
    finally:
        os.unlink(path)


async def prune(request: web.Request) -> web.Response:
    """``POST /build/prune`` (docker builder prune, docker system prune)."""
    q = request.rel_url.query
    params.filters(q.get("filters"))  # checked; the classic cache has no ages to filter
    return web.json_response(await asyncio.to_thread(
        engine(request).builds.prune_cache, params.boolean(q.get("all"))))


def add_routes(add: object) -> None:
    assert callable(add)
    add("POST", "/build", build)
    add("POST", "/build/prune", prune)
