"""/containers/*: the lifecycle, inspect and list, logs, wait, attach."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any, BinaryIO

from aiohttp import web

from pallet.api import hijack, params, streams
from pallet.api.system import engine
from pallet.api.versions import parse as parse_version
from pallet.engine.containers import ContainerService
from pallet.engine.monitorclient import frames
from pallet.errors import InvalidArgument, InvalidState, NotFound
from pallet.monitor import logfile, wire

FOLLOW_POLL = 0.05


def _svc(request: web.Request) -> ContainerService:
    return engine(request).containers


def _id(request: web.Request) -> str:
    return request.match_info["id"]


async def _json_body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise InvalidArgument(f"invalid JSON: {exc}") from None


def _int(raw: str | None, name: str, default: int | None = None) -> int | None:
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidArgument(f"invalid value for {name}: {raw!r}") from None


async def create(request: web.Request) -> web.Response:
    body = await _json_body(request)
    if body is None:
        raise InvalidArgument("config cannot be empty in order to create a container")
    platform = request.rel_url.query.get("platform", "")
    if platform and platform.split("/")[0] != "linux":
        raise InvalidArgument(f"invalid platform: {platform}")
    reply = await asyncio.to_thread(_svc(request).create, body,
                                    request.rel_url.query.get("name", ""))
    return web.json_response(reply, status=201)


async def list_containers(request: web.Request) -> web.Response:
    q = request.rel_url.query
    body = await asyncio.to_thread(
        _svc(request).listing, params.boolean(q.get("all")), _int(q.get("limit"), "limit", -1)
        or -1, params.boolean(q.get("size")), params.filters(q.get("filters")))
    return web.json_response(body)


async def inspect(request: web.Request) -> web.Response:
    size = params.boolean(request.rel_url.query.get("size"))
    return web.json_response(await asyncio.to_thread(_svc(request).inspect, _id(request), size))


async def start(request: web.Request) -> web.Response:
    if request.rel_url.query.get("checkpoint"):
        raise InvalidArgument("checkpoints are not supported")
    started = await asyncio.to_thread(_svc(request).start, _id(request))
    return web.Response(status=204 if started else 304)


async def stop(request: web.Request) -> web.Response:
    q = request.rel_url.query
    stopped = await _svc(request).stop(_id(request), _int(q.get("t"), "t"), q.get("signal"))
    return web.Response(status=204 if stopped else 304)


async def restart(request: web.Request) -> web.Response:
    q = request.rel_url.query
    svc = _svc(request)
    await svc.stop(_id(request), _int(q.get("t"), "t"), q.get("signal"))
    await asyncio.to_thread(svc.start, _id(request))
    doc = await asyncio.to_thread(svc.get, _id(request))
    svc._event(doc, "restart")
    return web.Response(status=204)


async def kill(request: web.Request) -> web.Response:
    await asyncio.to_thread(_svc(request).kill, _id(request),
                            request.rel_url.query.get("signal"))
    return web.Response(status=204)


async def pause(request: web.Request) -> web.Response:
    await asyncio.to_thread(_svc(request).pause, _id(request))
    return web.Response(status=204)


async def unpause(request: web.Request) -> web.Response:
    await asyncio.to_thread(_svc(request).unpause, _id(request))
    return web.Response(status=204)


async def rename(request: web.Request) -> web.Response:
    await asyncio.to_thread(_svc(request).rename, _id(request),
                            request.rel_url.query.get("name", ""))
    return web.Response(status=204)


async def remove(request: web.Request) -> web.Response:
    q = request.rel_url.query
    if params.boolean(q.get("link")):
        raise InvalidArgument("links are not supported")
    await _svc(request).remove(_id(request), params.boolean(q.get("force")),
                               volumes=params.boolean(q.get("v")))
    return web.Response(status=204)


async def prune(request: web.Request) -> web.Response:
    flt = params.filters(request.rel_url.query.get("filters"))
    until = params.timestamp(flt["until"][0]) if flt.get("until") else None
    return web.json_response(await asyncio.to_thread(_svc(request).prune, flt, until))


async def resize(request: web.Request) -> web.Response:
    q = request.rel_url.query
    svc = _svc(request)
    doc = await asyncio.to_thread(svc.get, _id(request))
    h, w = _int(q.get("h"), "h", 0) or 0, _int(q.get("w"), "w", 0) or 0
    if doc["State"]["Running"]:
        await asyncio.to_thread(svc.monitor.call, "resize", id=doc["Id"], height=h, width=w)
    return web.Response(status=200)


async def wait(request: web.Request) -> web.StreamResponse:
    svc = _svc(request)
    condition = request.rel_url.query.get("condition", "")
    await asyncio.to_thread(svc.get, _id(request))  # 404 before the 200
    if condition not in ("", "not-running", "next-exit", "removed"):
        raise InvalidArgument(f"invalid condition: {condition!r}")
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    await resp.prepare(request)  # the docker CLI waits for this head before it starts
    result = await svc.wait(_id(request), condition)
    try:
        await resp.write(json.dumps(result).encode() + b"\n")
        await resp.write_eof()
    except ConnectionError:
        pass  # the client stopped waiting
    return resp


# --- logs ----------------------------------------------------------------------------------

def _stream_content_type(request: web.Request, tty: bool) -> str:
    if tty or parse_version(request["api_version"]) < (1, 42):
        return hijack.RAW
    return hijack.MULTIPLEXED


def _render(e: logfile.Entry, tty: bool, timestamps: bool, details: bool = False) -> bytes:
    data = e.details() + e.line if details else e.line
    if timestamps:
        data = e.time.encode() + b" " + data
    if tty:
        return data
    return wire.frame(2 if e.stream == "stderr" else 1, data)


async def logs(request: web.Request) -> web.StreamResponse:
    q = request.rel_url.query
    svc = _svc(request)
    doc, path = await asyncio.to_thread(svc.log_path, _id(request))
    want = {s for s in ("stdout", "stderr") if params.boolean(q.get(s))}
    if not want:
        raise InvalidArgument("Bad parameters: you must choose at least one stream")
    since = params.timestamp(q.get("since")) or 0.0
    until = params.timestamp(q.get("until"))
    tail_raw = q.get("tail", "all") or "all"
    tail = -1 if tail_raw == "all" else _int(tail_raw, "tail")
    assert tail is not None
    follow = params.boolean(q.get("follow"))
    stamps = params.boolean(q.get("timestamps"))
    tty = bool(doc["Config"].get("Tty"))

    def keep(e: logfile.Entry) -> bool:
        return e.stream in want and e.ts >= since and (until is None or e.ts <= until)

    def backlog() -> tuple[list[logfile.Entry], BinaryIO | None, bytes]:
        """What is logged so far; the live file is read through one descriptor that
        the follow goes on reading, so no line is read twice or lost, even when the
        container is removed (its log with it) before the client has read it all."""
        live: BinaryIO | None = None
        try:
            live = open(path, "rb")  # noqa: SIM115 - the follow goes on reading it
        except FileNotFoundError:
            pass
        entries: list[logfile.Entry] = []
        for fname in logfile.files(path):
            if fname == path:
                continue
            try:
                entries += [e for raw in logfile.read_lines(fname) if raw.endswith(b"\n")
                            if (e := logfile.parse(raw)) is not None and keep(e)]
            except FileNotFoundError:
                continue  # rotated away while we read
        partial = b""
        if live is not None:
            lines = live.read().split(b"\n")
            partial = lines.pop()
            entries += [e for raw in lines
                        if (e := logfile.parse(raw)) is not None and keep(e)]
        if tail >= 0:
            entries = entries[-tail:] if tail else []
        return entries, live, partial

    entries, live, partial = await asyncio.to_thread(backlog)
    resp = web.StreamResponse(status=200, headers={
        "Content-Type": _stream_content_type(request, tty)})
    await resp.prepare(request)
    details = params.boolean(q.get("details"))
    await resp.write(b"".join(_render(e, tty, stamps, details) for e in entries))
    try:
        if follow and (until is None or until > asyncio.get_running_loop().time()):
            await _follow(request, resp, svc, doc["Id"], path, live, partial, keep, tty,
                          stamps, details)
    finally:
        if live is not None:
            live.close()
    await resp.write_eof()
    return resp


async def _follow(request: web.Request, resp: web.StreamResponse, svc: ContainerService,
                  cid: str, path: str, live: BinaryIO | None, partial: bytes, keep: Any,
                  tty: bool, stamps: bool, details: bool) -> None:
    """New lines of the live log file until the container stops (or the client leaves).

    The file is read through the descriptor the backlog opened; when the name points to
    another file (rotated) the old one, read to its end, is left for the new one, and
    when the name is gone (the container removed) what was left is all there is."""
    try:
        while True:
            running = cid in svc.docs and svc.docs[cid]["State"]["Running"]
            chunk = live.read() if live is not None else b""
            if not chunk:
                try:
                    now = os.stat(path).st_ino
                except FileNotFoundError:
                    now = None
                if now is not None and (live is None or now != os.fstat(live.fileno()).st_ino):
                    if live is not None:
                        live.close()
                    live, partial = open(path, "rb"), b""  # noqa: SIM115 - rotated: the new file
                    continue
            if chunk:
                lines = (partial + chunk).split(b"\n")
                partial = lines.pop()
                out = []
                for raw in lines:
                    e = logfile.parse(raw)
                    if e is not None and keep(e):
                        out.append(_render(e, tty, stamps, details))
                if out:
                    await resp.write(b"".join(out))
                continue
            if not running:
                return
            if request.transport is None or request.transport.is_closing():
                return
            await asyncio.sleep(FOLLOW_POLL)
    finally:
        if live is not None:
            live.close()


# --- attach --------------------------------------------------------------------------------

def detach_keys(spec: str) -> bytes:
    """``ctrl-p,ctrl-q`` -> b"\\x10\\x11" (Docker's syntax: ctrl-<key> or one character)."""
    out = bytearray()
    for part in spec.split(","):
        part = part.strip()
        if len(part) == 1:
            out.append(ord(part))
        elif part.startswith("ctrl-") and len(part) == 6:
            c = part[5]
            if "a" <= c <= "z":
                out.append(ord(c) - ord("a") + 1)
            elif c in "@[\\]^_":
                out.append({"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}[c])
            else:
                raise InvalidArgument(f"invalid detach keys: {spec}")
        else:
            raise InvalidArgument(f"invalid detach keys: {spec}")
    return bytes(out)


async def attach(request: web.Request) -> web.StreamResponse:
    q = request.rel_url.query
    svc = _svc(request)
    doc = await asyncio.to_thread(svc.get, _id(request))
    tty = bool(doc["Config"].get("Tty"))
    keys = detach_keys(q.get("detachKeys") or "ctrl-p,ctrl-q")
    want_in, want_out, want_err = (params.boolean(q.get(k)) for k in ("stdin", "stdout",
                                                                         "stderr"))
    hj = await hijack.upgrade(request, _stream_content_type(request, tty))
    try:
        if params.boolean(q.get("logs")) and doc["LogPath"]:
            want = {s for s, on in (("stdout", want_out), ("stderr", want_err)) if on}
            entries = await asyncio.to_thread(
                lambda: [e for e in logfile.entries(doc["LogPath"]) if e.stream in want])
            await hj.write(b"".join(_render(e, tty, False) for e in entries))
        if params.boolean(q.get("stream")):
            reader, writer, _ = await svc.monitor.open_stream(
                "attach", id=doc["Id"], stdin=want_in, stdout=want_out, stderr=want_err,
                wait_start=not doc["State"]["Running"])
            if await pump(reader, writer, hj, want_in, tty, keys):
                svc._event(doc, "detach")
    except (ConnectionError, NotFound):
        pass
    finally:
        hj.close()
    return hj.response


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
               hj: hijack.Hijacked, want_in: bool, tty: bool, keys: bytes) -> bool:
    """Copy between the client and a monitor stream until the output ends (or the
    client detaches, or goes away); True if the client detached with ``keys``."""
    detached = asyncio.Event()

    async def output() -> None:
        async for _, head, data in frames(reader):
            await hj.write(data if tty else head + data)

    async def stdin() -> None:
        held = b""  # a prefix of the detach keys, not yet known to be input
        while True:
            data = await hj.read()
            if data is None:
                if hj.closed():
                    detached.set()  # the client is gone altogether
                elif not writer.is_closing():
                    writer.write_eof()
                return
            if not want_in:
                continue
            data = held + data
            held = b""
            if keys:
                at = data.find(keys)
                if at >= 0:
                    writer.write(data[:at])
                    detached.set()
                    return
                for n in range(min(len(keys) - 1, len(data)), 0, -1):
                    if data.endswith(keys[:n]):
                        held, data = data[-n:], data[:-n]
                        break
            writer.write(data)
            await writer.drain()

    out_task = asyncio.create_task(output())
    in_task = asyncio.create_task(stdin())
    det_task = asyncio.create_task(detached.wait())
    try:
        await asyncio.wait({out_task, det_task}, return_when=asyncio.FIRST_COMPLETED)
        return detached.is_set() and not hj.closed()
    finally:
        for t in (out_task, in_task, det_task):
            t.cancel()
        writer.close()


async def stats(request: web.Request) -> web.StreamResponse:
    from pallet.engine import stats as engine_stats

    q = request.rel_url.query
    svc = _svc(request)
    doc = await asyncio.to_thread(svc.get, _id(request))
    stream = params.boolean(q.get("stream"), default=True)
    one_shot = params.boolean(q.get("one-shot"))
    root, cid, name = svc.runtime_root, doc["Id"], doc["Name"]

    async def take() -> dict[str, Any] | None:
        if not doc["State"]["Running"]:
            return None
        try:
            return await asyncio.to_thread(engine_stats.sample, root, cid, name)
        except InvalidState:
            return None  # it stopped meanwhile

    def empty() -> dict[str, Any]:
        return {"read": "0001-01-01T00:00:00Z", "preread": "0001-01-01T00:00:00Z",
                "pids_stats": {}, "blkio_stats": {}, "num_procs": 0, "storage_stats": {},
                "cpu_stats": {"cpu_usage": {"total_usage": 0}, "throttling_data": {}},
                "precpu_stats": {"cpu_usage": {"total_usage": 0}, "throttling_data": {}},
                "memory_stats": {}, "name": name, "id": cid}

    if not stream:
        first = await take()
        if first is not None and not one_shot:
            await asyncio.sleep(0.5)  # a second reading: precpu_stats makes CPU % possible
            second = await take()
            first = engine_stats.with_previous(second, first) if second else first
        return web.json_response(first or empty())
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    prev = None
    try:
        while True:
            cur = await take()
            if cur is None:
                await resp.write((json.dumps(empty()) + "\n").encode())
                break
            await resp.write((json.dumps(engine_stats.with_previous(cur, prev)) + "\n")
                             .encode())
            prev = cur
            await asyncio.sleep(1.0)
    except ConnectionError:
        pass
    return resp


async def top(request: web.Request) -> web.Response:
    from pallet.engine import stats as engine_stats

    svc = _svc(request)
    doc = await asyncio.to_thread(svc.get, _id(request))
    if not doc["State"]["Running"]:
        raise InvalidState(f"Container {doc['Id']} is not running")
    return web.json_response(await asyncio.to_thread(
        engine_stats.top, svc.runtime_root, doc["Id"],
        request.rel_url.query.get("ps_args", "")))


async def update(request: web.Request) -> web.Response:
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise InvalidArgument("update config cannot be empty")
    return web.json_response(await asyncio.to_thread(_svc(request).update, _id(request), body))


async def changes(request: web.Request) -> web.Response:
    return web.json_response(await asyncio.to_thread(_svc(request).changes, _id(request)))


async def export(request: web.Request) -> web.StreamResponse:
    from pallet.storage.diff import tar_directory

    svc = _svc(request)
    ctx = svc.rootfs(_id(request), mounts=False)  # as dockerd: no volumes, no /proc
    _doc, root = await asyncio.to_thread(ctx.__enter__)
    try:
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/x-tar"})
        await resp.prepare(request)
        chunks = tar_directory(root)
        while True:
            chunk = await asyncio.to_thread(next, chunks, None)
            if chunk is None:
                break
            await resp.write(chunk)
        await resp.write_eof()
        return resp
    finally:
        await asyncio.to_thread(ctx.__exit__, None, None, None)


async def commit(request: web.Request) -> web.Response:
    q = request.rel_url.query
    body = await _json_body(request)
    repo = q.get("repo", "")
    repo_tag = f"{repo}:{q['tag']}" if repo and q.get("tag") else repo
    image_id = await asyncio.to_thread(
        _svc(request).commit, q.get("container", ""), repo_tag, q.get("comment", ""),
        q.get("author", ""), q.getall("changes", []), params.boolean(q.get("pause"), True),
        body if isinstance(body, dict) else None)
    return web.json_response({"Id": image_id}, status=201)


async def archive(request: web.Request) -> web.StreamResponse:
    """GET: a tar of the path; HEAD: its stat; PUT: a tar extracted into the path."""
    from pallet.engine import archive as arch

    q = request.rel_url.query
    path = q.get("path", "")
    if not path:
        raise InvalidArgument("path must not be empty")
    svc = _svc(request)
    ctx = svc.rootfs(_id(request))
    doc, root = await asyncio.to_thread(ctx.__enter__)
    try:
        if request.method == "HEAD":
            info = await asyncio.to_thread(arch.stat_path, root, path)
            return web.Response(status=200, headers={
                "X-Docker-Container-Path-Stat": arch.stat_header(info)})
        if request.method == "GET":
            proc, info = await asyncio.to_thread(arch.open_get, root, path)
            import io

            assert isinstance(proc.stdout, io.BufferedReader)
            resp = web.StreamResponse(status=200, headers={
                "Content-Type": "application/x-tar",
                "X-Docker-Container-Path-Stat": arch.stat_header(info)})
            await resp.prepare(request)
            try:
                while chunk := await asyncio.to_thread(proc.stdout.read1, 1 << 20):
                    await resp.write(chunk)
            finally:
                await asyncio.to_thread(proc.wait)
            await resp.write_eof()
            return resp
        if doc["HostConfig"].get("ReadonlyRootfs") and doc["State"]["Running"]:
            raise InvalidState("container rootfs is marked read-only")
        proc = await asyncio.to_thread(arch.open_put, root, path)
        await streams.feed(proc, request)
        await asyncio.to_thread(arch.finish_put, proc, path)
        return web.Response(status=200)
    finally:
        await asyncio.to_thread(ctx.__exit__, None, None, None)


def add_routes(add: Any) -> None:
    add("GET", "/containers/{id}/changes", changes)
    add("GET", "/containers/{id}/export", export)
    add("POST", "/commit", commit)
    add("GET", "/containers/{id}/archive", archive)
    add("HEAD", "/containers/{id}/archive", archive)
    add("PUT", "/containers/{id}/archive", archive)
    add("GET", "/containers/{id}/stats", stats)
    add("GET", "/containers/{id}/top", top)
    add("POST", "/containers/{id}/update", update)
    add("POST", "/containers/create", create)
    add("GET", "/containers/json", list_containers)
    add("POST", "/containers/prune", prune)
    add("GET", "/containers/{id}/json", inspect)
    add("POST", "/containers/{id}/start", start)
    add("POST", "/containers/{id}/stop", stop)
    add("POST", "/containers/{id}/restart", restart)
    add("POST", "/containers/{id}/kill", kill)
    add("POST", "/containers/{id}/pause", pause)
    add("POST", "/containers/{id}/unpause", unpause)
    add("POST", "/containers/{id}/rename", rename)
    add("POST", "/containers/{id}/wait", wait)
    add("POST", "/containers/{id}/resize", resize)
    add("POST", "/containers/{id}/attach", attach)
    add("GET", "/containers/{id}/logs", logs)
    add("DELETE", "/containers/{id}", remove)
