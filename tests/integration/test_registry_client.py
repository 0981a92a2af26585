"""RegistryClient against a real registry (Debian's docker-registry 2.8) and small fakes.

The real registry, in three flavours (anonymous, htpasswd, token) from tests/support/
registry.py, proves the protocol; tiny aiohttp servers on 127.0.0.1 play what a real one
will not do on demand: lie about content, cut a connection, fail with 503, ignore Range.
Needs no root.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from pallet.errors import InvalidArgument, NotFound, SystemFailure
from pallet.image.digest import Digest
from pallet.image.registry import (
    MEDIA_DOCKER_MANIFEST,
    MEDIA_OCI_INDEX,
    MEDIA_OCI_MANIFEST,
    BlobPush,
    Credentials,
    CredentialStore,
    RegistryClient,
    RetryPolicy,
    Unauthorized,
)
from pallet.image.store import ContentStore
from tests.support.registry import (
    PASSWORD,
    USER,
    Registry,
    free_port,
    registry,
    registry_htpasswd,
    registry_token,
)

__all__ = ["registry", "registry_htpasswd", "registry_token"]  # fixtures, used by name

FAST = RetryPolicy(attempts=4, first_delay=0.01, max_delay=0.05, deadline=10.0)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def run(
    fn: Callable[[RegistryClient], Awaitable[Any]],
    creds: CredentialStore | None = None,
    **kwargs: Any,
) -> Any:
    """Run ``fn(client)`` in a fresh event loop with a fresh session."""

    async def main() -> Any:
        async with aiohttp.ClientSession() as session:
            client = RegistryClient(session, creds, retry=FAST, **kwargs)
            return await fn(client)

    return asyncio.run(main())


async def chunked(data: bytes, size: int = 100_000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def fetch(
    client: RegistryClient, host: str, repo: str, digest: str, offset: int = 0
) -> bytes:
    out = bytearray()
    await client.get_blob(host, repo, digest, out.extend, offset)
    return bytes(out)


@dataclass
class Image:
    """A two-layer image, its config, a schema2 manifest and an OCI index over it."""

    layers: list[bytes]
    config: bytes
    manifest: bytes
    oci_manifest: bytes
    index: bytes
    blobs: dict[str, bytes] = field(default_factory=dict)

    @classmethod
    def make(cls) -> Image:
        layers = [os.urandom(300_000), os.urandom(70_000)]
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [sha(x) for x in layers]},
            }
        ).encode()

        def manifest(media: str, config_media: str, layer_media: str) -> bytes:
            doc = {
                "schemaVersion": 2,
                "mediaType": media,
                "config": {"mediaType": config_media, "size": len(config), "digest": sha(config)},
                "layers": [
                    {"mediaType": layer_media, "size": len(x), "digest": sha(x)} for x in layers
                ],
            }
            return json.dumps(doc, indent=3).encode()

        m = manifest(
            MEDIA_DOCKER_MANIFEST,
            "application/vnd.docker.container.image.v1+json",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        )
        oci = manifest(
            MEDIA_OCI_MANIFEST,
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar",
        )
        index = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": MEDIA_OCI_INDEX,
                "manifests": [
                    {
                        "mediaType": MEDIA_DOCKER_MANIFEST,
                        "size": len(m),
                        "digest": sha(m),
                        "platform": {"os": "linux", "architecture": "amd64"},
                    },
                    {
                        "mediaType": MEDIA_OCI_MANIFEST,
                        "size": len(oci),
                        "digest": sha(oci),
                        "platform": {"os": "linux", "architecture": "arm64"},
                    },
                ],
            }
        ).encode()
        img = cls(layers, config, m, oci, index)
        img.blobs = {sha(b): b for b in [*layers, config]}
        return img

    async def push(self, client: RegistryClient, host: str, repo: str) -> None:
        for digest, data in self.blobs.items():
            got = await client.push_blob(host, repo, digest, len(data), chunked(data))
            assert got is BlobPush.UPLOADED
        await client.put_manifest(host, repo, "v1", MEDIA_DOCKER_MANIFEST, self.manifest)
        await client.put_manifest(
            host, repo, sha(self.oci_manifest), MEDIA_OCI_MANIFEST, self.oci_manifest
        )
        await client.put_manifest(host, repo, "multi", MEDIA_OCI_INDEX, self.index)


# -- the anonymous registry -------------------------------------------------------------


def test_push_then_pull_by_tag_and_digest(registry: Registry) -> None:
    img = Image.make()
    host, repo = registry.host, "pallet/test"

    async def scenario(client: RegistryClient) -> None:
        assert not await client.blob_exists(host, repo, sha(img.config))
        await img.push(client, host, repo)
        for digest in img.blobs:
            assert await client.blob_exists(host, repo, digest)

        media, body, digest = await client.get_manifest(host, repo, "v1")
        # Accept headers keep registry 2.8 from converting to signed schema1.
        assert (media, body, digest) == (MEDIA_DOCKER_MANIFEST, img.manifest, sha(img.manifest))
        assert await client.get_manifest(host, repo, digest) == (media, body, digest)

        head = await client.head_manifest(host, repo, "v1")
        assert head is not None
        assert (head.media_type, head.digest, head.size) == (media, digest, len(img.manifest))
        assert await client.head_manifest(host, repo, "nope") is None

        media, body, digest = await client.get_manifest(host, repo, "multi")
        assert (media, body, digest) == (MEDIA_OCI_INDEX, img.index, sha(img.index))
        entries = json.loads(body)["manifests"]
        for entry in entries:
            m_media, m_body, _ = await client.get_manifest(host, repo, entry["digest"])
            assert m_media == entry["mediaType"] and sha(m_body) == entry["digest"]

        for digest, data in img.blobs.items():
            assert await fetch(client, host, repo, digest) == data
        assert sorted(await client.list_tags(host, repo)) == ["multi", "v1"]

    run(scenario)


def test_missing_things_are_not_found(registry: Registry) -> None:
    host = registry.host

    async def scenario(client: RegistryClient) -> None:
        with pytest.raises(
            NotFound,
            match=r"manifest for .*pallet/none:nope not found: "
            r"manifest unknown",
        ):
            await client.get_manifest(host, "pallet/none", "nope")
        with pytest.raises(NotFound, match="blob unknown"):
            await fetch(client, host, "pallet/none", sha(b"nothing"))
        with pytest.raises(NotFound, match="name unknown"):
            await client.list_tags(host, "pallet/none")
        assert not await client.blob_exists(host, "pallet/none", sha(b"nothing"))

    run(scenario)


def test_delete_manifest(registry: Registry) -> None:
    img = Image.make()
    host, repo = registry.host, "pallet/del"

    async def scenario(client: RegistryClient) -> None:
        await img.push(client, host, repo)
        await client.delete_manifest(host, repo, sha(img.manifest))
        with pytest.raises(NotFound):
            await client.get_manifest(host, repo, sha(img.manifest))
        with pytest.raises(NotFound):
            await client.get_manifest(host, repo, "v1")
        # the index was not deleted
        assert (await client.get_manifest(host, repo, "multi"))[1] == img.index

    run(scenario)


def test_manifest_put_by_wrong_digest_is_refused_before_sending(registry: Registry) -> None:
    async def scenario(client: RegistryClient) -> None:
        with pytest.raises(InvalidArgument, match="digest mismatch"):
            await client.put_manifest(
                registry.host, "pallet/x", sha(b"other"), MEDIA_OCI_INDEX, b"{}"
            )

    run(scenario)


def test_push_with_wrong_digest_is_refused_by_the_registry(registry: Registry) -> None:
    data = os.urandom(1000)

    async def scenario(client: RegistryClient) -> None:
        with pytest.raises(InvalidArgument, match="digest invalid"):
            await client.push_blob(
                registry.host, "pallet/x", sha(b"other"), len(data), chunked(data)
            )
        assert not await client.blob_exists(registry.host, "pallet/x", sha(b"other"))

    run(scenario)


def test_upload_in_several_patches(registry: Registry) -> None:
    data = os.urandom(250_000)
    host, repo = registry.host, "pallet/chunks"

    async def scenario(client: RegistryClient) -> None:
        # 250 kB in 64 kB PATCHes: four of them, the last short
        await client.push_blob(host, repo, sha(data), len(data), chunked(data, 10_000))
        assert await fetch(client, host, repo, sha(data)) == data
        empty = b""
        await client.push_blob(host, repo, sha(empty), 0, chunked(empty))
        assert await fetch(client, host, repo, sha(empty)) == empty

    run(scenario, upload_chunk=64 * 1024)


def test_resume_a_blob_from_an_offset(registry: Registry, tmp_path: Any) -> None:
    data = os.urandom(1_000_000)
    host, repo = registry.host, "pallet/resume"
    half = len(data) // 2

    class Cut(Exception):
        pass

    async def scenario(client: RegistryClient) -> None:
        await client.push_blob(host, repo, sha(data), len(data), chunked(data))
        # The server honours Range itself (the client would also cope if it did not).
        async with (
            aiohttp.ClientSession() as s,
            s.get(
                f"{registry.url}/v2/{repo}/blobs/{sha(data)}", headers={"Range": f"bytes={half}-"}
            ) as resp,
        ):
            assert resp.status == 206
            assert resp.headers["Content-Range"] == f"bytes {half}-{len(data) - 1}/{len(data)}"

        # A pull that stops half way, into the content store, then resumes from its bytes.
        store = ContentStore(str(tmp_path / "store"))
        digest = Digest.parse(sha(data))

        def stop_at_half(ingest: Any) -> Callable[[bytes], None]:
            def write(chunk: bytes) -> None:
                room = half - ingest.offset
                ingest.write(chunk[:room])
                if len(chunk) >= room:
                    raise Cut()

            return write

        with store.ingest(digest, len(data)) as ingest, pytest.raises(Cut):
            await client.get_blob(host, repo, sha(data), stop_at_half(ingest))
        with store.ingest(digest, len(data)) as ingest:
            assert ingest.offset == half
            written = await client.get_blob(host, repo, sha(data), ingest.write, ingest.offset)
            assert written == len(data) - half
            ingest.commit()
        assert store.read(digest) == data

    run(scenario)


def test_cross_repository_mount(registry: Registry) -> None:
    data = os.urandom(50_000)
    host = registry.host
    consumed = []

    async def watched(data: bytes) -> AsyncIterator[bytes]:
        consumed.append(True)
        yield data

    async def scenario(client: RegistryClient) -> None:
        await client.push_blob(host, "pallet/a", sha(data), len(data), chunked(data))
        got = await client.push_blob(
            host, "pallet/b", sha(data), len(data), watched(data), mount_from="pallet/a"
        )
        assert got is BlobPush.MOUNTED
        assert consumed == []  # nothing was read, nothing sent
        assert await fetch(client, host, "pallet/b", sha(data)) == data
        # a mount the registry cannot make (no such blob there) falls back to an upload
        other = os.urandom(1000)
        got = await client.push_blob(
            host, "pallet/c", sha(other), len(other), chunked(other), mount_from="pallet/a"
        )
        assert got is BlobPush.UPLOADED
        assert await fetch(client, host, "pallet/c", sha(other)) == other

    run(scenario)


# -- auth -------------------------------------------------------------------------------


def store_with(tmp_path: Any, host: str, user: str, password: str) -> CredentialStore:
    store = CredentialStore(str(tmp_path / "config.json"))
    store.store(host, Credentials(user, password))
    return store


def test_htpasswd_wrong_password_is_unauthorized(
    registry_htpasswd: Registry, tmp_path: Any
) -> None:
    host = registry_htpasswd.host
    wrong = store_with(tmp_path, host, USER, "not-" + PASSWORD)

    async def scenario(client: RegistryClient) -> None:
        with pytest.raises(Unauthorized, match="unauthorized: authentication required"):
            await client.get_manifest(host, "pallet/private", "v1")
        with pytest.raises(Unauthorized):
            await client.push_blob(host, "pallet/private", sha(b"x"), 1, chunked(b"x"))
        with pytest.raises(Unauthorized):
            await client.ping(host)

    run(scenario, wrong)
    run(scenario, None)  # no credentials at all


def test_htpasswd_right_password_works(registry_htpasswd: Registry, tmp_path: Any) -> None:
    img = Image.make()
    host, repo = registry_htpasswd.host, "pallet/private"
    right = store_with(tmp_path, host, USER, PASSWORD)

    async def scenario(client: RegistryClient) -> None:
        await client.ping(host)
        await img.push(client, host, repo)
        assert (await client.get_manifest(host, repo, "v1"))[1] == img.manifest
        assert await fetch(client, host, repo, sha(img.layers[0])) == img.layers[0]

    run(scenario, right)


def test_token_auth_end_to_end(registry_token: Registry, tmp_path: Any) -> None:
    img = Image.make()
    host, repo = registry_token.host, "pallet/tokened"
    tokens = registry_token.token_server
    assert tokens is not None
    right = store_with(tmp_path, host, USER, PASSWORD)

    async def push_and_pull(client: RegistryClient) -> None:
        await client.ping(host)
        await img.push(client, host, repo)
        assert (await client.get_manifest(host, repo, "multi"))[1] == img.index
        for digest, data in img.blobs.items():
            assert await fetch(client, host, repo, digest) == data

    run(push_and_pull, right)
    users = {user for user, _ in tokens.requests}
    assert users == {USER}
    # Tokens are cached per scope: one fetch for the ping (no scope), one for push+pull,
    # one for the pull-only calls — not one per request.
    scopes = [tuple(s) for _, s in tokens.requests]
    assert len(scopes) == len(set(scopes)), scopes
    assert (f"repository:{repo}:pull",) in scopes
    assert (f"repository:{repo}:pull,push",) in scopes

    async def pull_only(client: RegistryClient) -> None:
        assert (await client.get_manifest(host, repo, "v1"))[1] == img.manifest
        with pytest.raises(Unauthorized):
            await client.push_blob(host, repo, sha(b"x"), 1, chunked(b"x"))

    tokens.requests.clear()
    run(pull_only, None)  # anonymous: the token server grants pull only
    assert {user for user, _ in tokens.requests} == {""}

    async def parallel(client: RegistryClient) -> None:
        got = await asyncio.gather(*(fetch(client, host, repo, d) for d in img.blobs))
        assert got == list(img.blobs.values())

    tokens.requests.clear()
    run(parallel, right)
    # Three downloads met the same 401 at once; one token was fetched for all of them.
    assert tokens.requests == [(USER, [f"repository:{repo}:pull"])]

    wrong = store_with(tmp_path / "wrong", host, USER, "nope")

    async def refused(client: RegistryClient) -> None:
        with pytest.raises(Unauthorized, match="incorrect username or password"):
            await client.get_manifest(host, repo, "v1")

    run(refused, wrong)


# -- fakes: what a real registry will not do on demand -----------------------------------


@dataclass
class Fake:
    """An aiohttp app on 127.0.0.1 for the length of one ``async with``."""

    routes: list[web.RouteDef]
    host: str = ""
    hits: list[str] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    async def __aenter__(self) -> Fake:
        @web.middleware
        async def count(request: web.Request, handler: Any) -> web.StreamResponse:
            self.hits.append(f"{request.method} {request.path_qs}")
            resp: web.StreamResponse = await handler(request)
            return resp

        app = web.Application(middlewares=[count])
        app.add_routes(self.routes)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.host = f"127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def run_fake(
    routes: list[web.RouteDef], fn: Callable[[RegistryClient, Fake], Awaitable[Any]], **kw: Any
) -> Fake:
    async def main() -> Fake:
        async with Fake(routes) as fake, aiohttp.ClientSession() as session:
            await fn(RegistryClient(session, None, retry=FAST, **kw), fake)
            return fake

    return asyncio.run(main())


def test_a_lying_registry_is_caught(tmp_path: Any) -> None:
    real = os.urandom(10_000)
    lie = os.urandom(10_000)
    manifest = b'{"schemaVersion": 2}'

    async def blob(request: web.Request) -> web.Response:
        return web.Response(body=lie)

    async def manifest_by_digest(request: web.Request) -> web.Response:
        return web.Response(
            body=b'{"schemaVersion": 2, "lie": true}',
            content_type="application/vnd.oci.image.manifest.v1+json",
        )

    async def manifest_by_tag(request: web.Request) -> web.Response:
        return web.Response(
            body=manifest,
            headers={"Docker-Content-Digest": sha(b"else"), "Content-Type": MEDIA_OCI_MANIFEST},
        )

    store = ContentStore(str(tmp_path / "store"))
    digest = Digest.parse(sha(real))

    async def scenario(client: RegistryClient, fake: Fake) -> None:
        # Blobs: the store's commit checks what the client streamed into it.
        with store.ingest(digest, len(real)) as ingest:
            await client.get_blob(fake.host, "x", sha(real), ingest.write)
            with pytest.raises(InvalidArgument, match="digest mismatch"):
                ingest.commit()
        assert not store.exists(digest)
        # Manifests: the client checks them itself.
        with pytest.raises(InvalidArgument, match="digest mismatch"):
            await client.get_manifest(fake.host, "x", sha(manifest))
        with pytest.raises(InvalidArgument, match="digest mismatch"):
            await client.get_manifest(fake.host, "x", "latest")

    run_fake(
        [
            web.get("/v2/x/blobs/{digest}", blob),
            web.get("/v2/x/manifests/sha256:{hex}", manifest_by_digest),
            web.get("/v2/x/manifests/latest", manifest_by_tag),
        ],
        scenario,
    )


def test_a_cut_download_resumes_by_itself() -> None:
    data = os.urandom(600_000)
    ranges: list[str] = []

    async def blob(request: web.Request) -> web.StreamResponse:
        ranges.append(request.headers.get("Range", ""))
        start = int(request.headers.get("Range", "bytes=0-")[6:].rstrip("-"))
        resp = web.StreamResponse(status=206 if start else 200)
        resp.content_length = len(data) - start
        if start:
            resp.headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        await resp.prepare(request)
        if len(ranges) == 1:
            await resp.write(data[:250_000])
            assert request.transport is not None
            request.transport.close()  # cut: the client sees a short body
            return resp
        await resp.write(data[start:])
        return resp

    async def scenario(client: RegistryClient, fake: Fake) -> None:
        assert await fetch(client, fake.host, "x", sha(data)) == data

    run_fake([web.get("/v2/x/blobs/{digest}", blob)], scenario)
    assert ranges[0] == ""
    assert ranges[1].startswith("bytes=") and int(ranges[1][6:-1]) > 0
    assert len(ranges) == 2


def test_a_registry_ignoring_range_still_resumes_right() -> None:
    data = os.urandom(300_000)

    async def blob(request: web.Request) -> web.Response:
        return web.Response(body=data)  # 200 with everything, Range or not

    async def scenario(client: RegistryClient, fake: Fake) -> None:
        assert await fetch(client, fake.host, "x", sha(data), 123_457) == data[123_457:]
        with pytest.raises(InvalidArgument, match="past the end"):
            await fetch(client, fake.host, "x", sha(data), len(data) + 1)

    run_fake([web.get("/v2/x/blobs/{digest}", blob)], scenario)


def test_a_disconnect_and_a_5xx_are_retried_then_succeed() -> None:
    calls = []

    async def flaky(request: web.Request) -> web.Response:
        calls.append(1)
        if len(calls) <= 2:
            # No answer at all. Twice: aiohttp itself resends an idempotent request once.
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        if len(calls) == 3:
            return web.json_response(
                {"errors": [{"code": "UNAVAILABLE", "message": "busy"}]}, status=503
            )
        return web.json_response({"name": "x", "tags": ["a"]})

    async def scenario(client: RegistryClient, fake: Fake) -> None:
        assert await client.list_tags(fake.host, "x") == ["a"]

    run_fake([web.get("/v2/x/tags/list", flaky)], scenario)
    assert len(calls) == 4


def test_5xx_gives_up_after_the_budget() -> None:
    async def down(request: web.Request) -> web.Response:
        return web.Response(status=500)

    async def scenario(client: RegistryClient, fake: Fake) -> None:
        with pytest.raises(SystemFailure, match="HTTP 500"):
            await client.list_tags(fake.host, "x")

    fake = run_fake([web.get("/v2/x/tags/list", down)], scenario)
    assert len(fake.hits) == FAST.attempts


def test_4xx_is_never_retried() -> None:
    async def bad(request: web.Request) -> web.Response:
        body = {"errors": [{"code": "NAME_INVALID", "message": "invalid repository name"}]}
        return web.json_response(body, status=400)

    async def scenario(client: RegistryClient, fake: Fake) -> None:
        with pytest.raises(InvalidArgument, match="name invalid: invalid repository name"):
            await client.list_tags(fake.host, "x")

    fake = run_fake([web.get("/v2/x/tags/list", bad)], scenario)
    assert len(fake.hits) == 1


def test_connection_refused_names_the_registry() -> None:
    host = f"127.0.0.1:{free_port()}"  # nothing listens there

    async def scenario(client: RegistryClient) -> None:
        with pytest.raises(
            SystemFailure, match=f"cannot reach registry {host}.*connection refused"
        ) as info:
            await client.get_manifest(host, "x", "latest")
        assert info.value.errno == 111

    run(scenario)


def test_mirror_serves_first_and_the_registry_is_the_fallback(registry: Registry) -> None:
    img = Image.make()
    dead = f"127.0.0.1:{free_port()}"
    repo = "pallet/mirrored"

    async def seed(client: RegistryClient) -> None:
        await img.push(client, registry.host, repo)

    run(seed)

    # The image only on the mirror; the registry itself unreachable.
    async def from_mirror(client: RegistryClient) -> None:
        assert (await client.get_manifest(dead, repo, "v1"))[1] == img.manifest
        assert await fetch(client, dead, repo, sha(img.config)) == img.config

    run(from_mirror, mirrors={dead: [f"http://{registry.host}"]})

    # A mirror that lacks the image: the registry answers.
    async def mirror_lacks(client: RegistryClient, fake: Fake) -> None:
        mirrors = {registry.host: [fake.host]}
        async with aiohttp.ClientSession() as session:
            c = RegistryClient(session, None, mirrors=mirrors, retry=FAST)
            assert (await c.get_manifest(registry.host, repo, "v1"))[1] == img.manifest

    async def not_here(request: web.Request) -> web.Response:
        return web.json_response({"errors": [{"code": "MANIFEST_UNKNOWN"}]}, status=404)

    fake = run_fake([web.get("/v2/{tail:.*}", not_here)], mirror_lacks)
    assert fake.hits == [f"GET /v2/{repo}/manifests/v1"]


@pytest.fixture
def no_leftover_dirs() -> Iterator[None]:
    import glob

    before = set(glob.glob("/tmp/pallet-test-registry-*"))
    yield
    assert set(glob.glob("/tmp/pallet-test-registry-*")) <= before


def test_fixture_cleans_up(no_leftover_dirs: None) -> None:
    from tests.support.registry import start_registry

    reg = start_registry("none")
    assert os.path.isdir(reg.dir)
    reg.stop()
    assert reg.process.poll() is not None
    assert not os.path.exists(reg.dir)


def test_big_manifests_are_read_whole_and_huge_ones_refused() -> None:
    big = b'{"schemaVersion": 2, "pad": "' + b"x" * 3_000_000 + b'"}'
    huge = b'{"schemaVersion": 2, "pad": "' + b"x" * 5_000_000 + b'"}'

    async def manifest(request: web.Request) -> web.Response:
        body = big if request.match_info["ref"] == "big" else huge
        return web.Response(body=body, content_type=MEDIA_OCI_MANIFEST)

    async def scenario(client: RegistryClient, fake: Fake) -> None:
        media, body, digest = await client.get_manifest(fake.host, "x", "big")
        assert (media, body, digest) == (MEDIA_OCI_MANIFEST, big, sha(big))
        with pytest.raises(InvalidArgument, match="larger than"):
            await client.get_manifest(fake.host, "x", "huge")

    run_fake([web.get("/v2/x/manifests/{ref}", manifest)], scenario)


def test_a_failing_writer_stops_the_pull_without_retries_or_fallback() -> None:
    data = os.urandom(100_000)

    async def blob(request: web.Request) -> web.Response:
        return web.Response(body=data)

    def refuse(chunk: bytes) -> None:
        raise InvalidArgument("blob is longer than its size")

    async def scenario(client: RegistryClient, fake: Fake) -> None:
        async with aiohttp.ClientSession() as session:
            # the fake is both a mirror and (by name) the registry: two endpoints to try
            c = RegistryClient(session, None, mirrors={fake.host: [fake.host]}, retry=FAST)
            with pytest.raises(InvalidArgument, match="longer than its size"):
                await c.get_blob(fake.host, "x", sha(data), refuse)

    fake = run_fake([web.get("/v2/x/blobs/{digest}", blob)], scenario)
    assert len(fake.hits) == 1


def test_a_refused_cached_token_is_replaced_once() -> None:
    """A token revoked before it expires: the next request fetches a fresh one."""
    issued: list[str] = []
    revoked: set[str] = set()
    realm: list[str] = []

    async def token(request: web.Request) -> web.Response:
        issued.append(f"t{len(issued) + 1}")
        return web.json_response({"token": issued[-1], "expires_in": 300})

    async def tags(request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] in revoked or auth[7:] not in issued:
            challenge = f'Bearer realm="{realm[0]}",service="fake",scope="repository:x:pull"'
            return web.json_response(
                {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
                status=401,
                headers={"WWW-Authenticate": challenge},
            )
        return web.json_response({"name": "x", "tags": [auth[7:]]})

    async def scenario(client: RegistryClient, fake: Fake) -> None:
        realm.append(f"http://{fake.host}/token")
        assert await client.list_tags(fake.host, "x") == ["t1"]
        assert await client.list_tags(fake.host, "x") == ["t1"]  # cached: no new token
        revoked.add("t1")
        assert await client.list_tags(fake.host, "x") == ["t2"]
        revoked.update({"t2", "t3"})  # and the next token fetched is refused as well
        with pytest.raises(Unauthorized, match="authentication required"):
            await client.list_tags(fake.host, "x")

    fake = run_fake([web.get("/token", token), web.get("/v2/x/tags/list", tags)], scenario)
    tag_hits = [h for h in fake.hits if h.startswith("GET /v2/")]
    # 1st: 401 + retry; 2nd: pre-authorised; 3rd: refused + retry; 4th: refused + retry
    assert len(tag_hits) == 7
