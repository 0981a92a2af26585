"""Pull and push without a registry: progress messages, auth headers, mirrors, manifest
kinds, the CLI's renderer, and when a failure is an HTTP error or a stream line."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pallet.api.distribution import registry_auth, stream
from pallet.api.errors import errors_middleware
from pallet.cli.distribution import Progress, StreamError
from pallet.cli.distribution import registry_auth as cli_registry_auth
from pallet.engine import distribution
from pallet.engine.distribution import (
    OneRegistry,
    Reporter,
    human_size,
    mirror_map,
    progress_bar,
)
from pallet.engine.push import manifest_for
from pallet.errors import InvalidArgument, NotFound
from pallet.image import manifest as mf
from pallet.image.registry import Credentials, CredentialStore

DIGEST = "sha256:" + "ab" * 32


# --- Docker's progress messages --------------------------------------------------------


@pytest.mark.parametrize(("size", "text"), [
    (0, "0B"), (512, "512B"), (1000, "1kB"), (1069499, "1.069MB"), (2129920, "2.13MB"),
    (93_000_000_000, "93GB"),
])
def test_human_size_is_go_units(size: int, text: str) -> None:
    assert human_size(size) == text


def test_progress_bar_is_dockerds() -> None:
    assert progress_bar(0, 2129920) == "[>" + " " * 50 + "]       0B/2.13MB"
    assert progress_bar(2129920, 2129920) == "[" + "=" * 50 + ">]   2.13MB/2.13MB"
    assert progress_bar(1064960, 2129920) == "[" + "=" * 25 + ">" + " " * 25 + "]  1.065MB/2.13MB"
    assert progress_bar(5, 0) == "      5B"
    assert progress_bar(0, 0) == ""


def test_reporter_throttles_byte_counts_but_not_the_last(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(distribution.time, "monotonic", lambda: now[0])
    sent: list[dict[str, Any]] = []
    r = Reporter(sent.append)
    r.progress("Downloading", "abc", 0, 10, force=True)
    r.progress("Downloading", "abc", 3, 10)  # too soon
    now[0] += 0.2
    r.progress("Downloading", "abc", 5, 10)
    r.progress("Downloading", "abc", 10, 10)  # done: always sent
    assert [m["progressDetail"]["current"] for m in sent] == [0, 5, 10]
    r.status("Pull complete", "abc")
    r.status("Pulling from library/busybox", "latest", layer=False)
    r.status("Digest: x")
    assert sent[-3:] == [
        {"status": "Pull complete", "progressDetail": {}, "id": "abc"},
        {"status": "Pulling from library/busybox", "id": "latest"},
        {"status": "Digest: x"},
    ]


# --- credentials and registries --------------------------------------------------------


def _header(doc: dict[str, str], pad: bool = True) -> str:
    raw = base64.urlsafe_b64encode(json.dumps(doc).encode()).decode()
    return raw if pad else raw.rstrip("=")


def test_registry_auth_header_forms() -> None:
    alice = Credentials("alice", "wonder/land?")
    doc = {"username": "alice", "password": "wonder/land?", "serveraddress": "r:5000"}
    assert registry_auth(_header(doc)) == (alice, "r:5000")
    assert registry_auth(_header(doc, pad=False)) == (alice, "r:5000")
    legacy = {"auth": base64.b64encode(b"alice:wonder/land?").decode()}
    assert registry_auth(_header(legacy)) == (alice, "")
    assert registry_auth("e30=") == (None, "")  # {}: what docker sends when logged out
    assert registry_auth(None) == (None, "")
    with pytest.raises(InvalidArgument, match="X-Registry-Auth"):
        registry_auth("not base64!")


def test_cli_header_is_what_palletd_reads(tmp_path: Any) -> None:
    store = CredentialStore(str(tmp_path / "config.json"))
    assert registry_auth(cli_registry_auth("r:5000", store)) == (None, "")
    store.store("r:5000", Credentials("alice", "pw"))
    assert registry_auth(cli_registry_auth("r:5000", store)) == (Credentials("alice", "pw"),
                                                                  "r:5000")


def test_credentials_go_to_their_registry_only() -> None:
    creds = Credentials("alice", "pw")
    hub = OneRegistry("docker.io", creds)
    assert hub.get("registry-1.docker.io") == creds and hub.get("index.docker.io") == creds
    assert hub.get("mirror.example:5000") is None
    assert OneRegistry("r:5000", None).get("r:5000") is None


def test_mirrors_serve_docker_hub_unless_named() -> None:
    assert mirror_map(["mirror.example", "http://10.0.0.1:5000"]) == {
        "docker.io": ["mirror.example", "http://10.0.0.1:5000"]}
    assert mirror_map(["quay.io=https://q.mirror", "index.docker.io=m"]) == {
        "quay.io": ["https://q.mirror"], "docker.io": ["m"]}
    with pytest.raises(InvalidArgument, match="invalid registry mirror"):
        mirror_map(["quay.io="])


def test_manifest_kind_follows_the_layers() -> None:
    config = b"{}"
    docker = manifest_for(config, [(DIGEST, mf.DOCKER_LAYER_GZIP, 10)])
    assert docker.media_type == mf.DOCKER_MANIFEST
    assert docker.config.media_type == mf.DOCKER_CONFIG and docker.config.size == 2
    mixed = manifest_for(config, [(DIGEST, mf.DOCKER_LAYER_GZIP, 10),
                                  (DIGEST, mf.OCI_LAYER_ZSTD, 5)])
    assert mixed.media_type == mf.OCI_MANIFEST and mixed.config.media_type == mf.OCI_CONFIG
    assert [d.media_type for d in mixed.layers] == [mf.OCI_LAYER_GZIP, mf.OCI_LAYER_ZSTD]
    assert manifest_for(config, []).media_type == mf.DOCKER_MANIFEST


# --- the pallet CLI's renderer ---------------------------------------------------------

PULL = [
    {"status": "Pulling from library/busybox", "id": "latest"},
    {"status": "Pulling fs layer", "progressDetail": {}, "id": "aaa"},
    {"status": "Downloading", "progressDetail": {"current": 5, "total": 10},
     "progress": "[=========================>                         ]       5B/10B",
     "id": "aaa"},
    {"status": "Pull complete", "progressDetail": {}, "id": "aaa"},
    {"status": "Digest: sha256:x"},
]


def test_progress_off_a_terminal_prints_state_changes_only() -> None:
    out = io.StringIO()
    p = Progress(out, tty=False)
    for msg in PULL:
        p.show(msg)
    assert out.getvalue() == ("latest: Pulling from library/busybox\naaa: Pulling fs layer\n"
                              "aaa: Pull complete\nDigest: sha256:x\n")


def test_progress_on_a_terminal_redraws_layer_lines() -> None:
    out = io.StringIO()
    p = Progress(out, tty=True, width=80)  # narrow: counts without the bar
    for msg in PULL:
        p.show(msg)
    assert out.getvalue() == (
        "latest: Pulling from library/busybox\n"
        "\n\x1b[1A\x1b[2K\raaa: Pulling fs layer\r\x1b[1B"
        "\x1b[1A\x1b[2K\raaa: Downloading 5B/10B\r\x1b[1B"
        "\x1b[1A\x1b[2K\raaa: Pull complete\r\x1b[1B"
        "Digest: sha256:x\n")


def test_progress_raises_the_streams_error_and_keeps_aux() -> None:
    p = Progress(None, tty=False)
    p.show({"progressDetail": {}, "aux": {"Tag": "1"}})
    assert p.aux == {"Tag": "1"}
    with pytest.raises(StreamError, match="unauthorized: authentication required"):
        p.show({"errorDetail": {"message": "unauthorized: authentication required"},
                "error": "unauthorized: authentication required"})


# --- an error before the first message is an HTTP error; after it, a stream line -------


async def _serve(job: Any) -> tuple[int, str]:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await stream(request, job)

    app = web.Application(middlewares=[errors_middleware])
    app.router.add_post("/job", handler)
    async with TestClient(TestServer(app)) as client:
        resp = await client.post("/job")
        return resp.status, await resp.text()


def test_failure_before_any_message_is_an_error_response() -> None:
    async def job(emit: Any) -> None:
        raise NotFound("manifest for x:1 not found: manifest unknown: manifest unknown")

    status, body = asyncio.run(_serve(job))
    assert status == 404
    assert json.loads(body) == {
        "message": "manifest for x:1 not found: manifest unknown: manifest unknown"}


def test_failure_after_a_message_ends_the_stream() -> None:
    async def job(emit: Any) -> None:
        emit({"status": "Pulling from x", "id": "1"})
        raise InvalidArgument("filesystem layer verification failed for digest sha256:a")

    status, body = asyncio.run(_serve(job))
    lines = [json.loads(line) for line in body.splitlines()]
    assert status == 200
    assert lines == [{"status": "Pulling from x", "id": "1"},
                     {"errorDetail": {"message": "filesystem layer verification failed for "
                                                 "digest sha256:a"},
                      "error": "filesystem layer verification failed for digest sha256:a"}]


def test_a_client_that_goes_away_stops_the_transfer() -> None:
    stopped = asyncio.Event()

    async def job(emit: Any) -> None:
        try:
            while True:
                emit({"status": "Downloading", "progressDetail": {}, "id": "aaa"})
                await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            stopped.set()
            raise

    async def handler(request: web.Request) -> web.StreamResponse:
        return await stream(request, job)

    async def scenario() -> None:
        app = web.Application(middlewares=[errors_middleware])
        app.router.add_post("/job", handler)
        async with TestClient(TestServer(app)) as client:
            resp = await client.post("/job")
            assert b"Downloading" in await resp.content.readline()
            resp.close()  # hang up mid-stream
            await asyncio.wait_for(stopped.wait(), 5)

    asyncio.run(scenario())


def test_a_raw_stream_that_fails_midway_is_cut_off_not_answered_twice() -> None:
    """An export's tar fails after its headers and some body went out: the connection
    is dropped (the client sees the body end early), no error response follows inside
    the body."""
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/x-tar"})
        await resp.prepare(request)
        await resp.write(b"first part of the tar")
        raise NotFound("reading the rootfs failed")

    async def scenario() -> bytes:
        app = web.Application(middlewares=[errors_middleware])
        app.router.add_get("/export", handler)
        async with TestClient(TestServer(app)) as client:
            resp = await client.get("/export")
            assert resp.status == 200
            got = b""
            with pytest.raises(aiohttp.ClientPayloadError):
                async for chunk in resp.content.iter_any():
                    got += chunk
            return got

    assert asyncio.run(scenario()) == b"first part of the tar"
