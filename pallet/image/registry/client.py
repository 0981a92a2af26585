"""An OCI distribution (Docker registry v2) client over aiohttp.

Every call takes the registry (``127.0.0.1:5000``, ``docker.io``), the repository path as a
normalised reference gives it (``library/busybox``) and, for manifests, a tag or a digest.

Who checks what:

- Manifests are small and read whole: the client checks their digest itself (against the
  digest asked for, and against the registry's ``Docker-Content-Digest``) and returns the
  verified digest.
- Blobs stream to the caller's ``write`` callback; their digest is checked by the writer
  (``ContentStore.ingest(...).commit()``), which also knows how many bytes a resumed
  download already holds — so ``get_blob`` takes that as ``offset`` and sends a ``Range``.

Authentication, retries, mirrors and the translation of failures into pallet errors are
transport.py's; this module knows the distribution API's paths and verbs.
"""

from __future__ import annotations

import enum
import json
from collections.abc import AsyncIterable, Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass

import aiohttp
from yarl import URL

from pallet.errors import InvalidArgument, NotFound, PalletError, SystemFailure
from pallet.image.digest import Digest, digest_error
from pallet.image.registry.auth import Authenticator, read_limited, repository_scope
from pallet.image.registry.credentials import CredentialSource
from pallet.image.registry.endpoints import Endpoint, RetryPolicy
from pallet.image.registry.transport import (
    MAX_ERROR_BODY,
    STREAM_TIMEOUT,
    TRANSIENT,
    Reply,
    Transport,
    Tries,
    failure,
)

MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
# Without these a registry 2.8 answers a schema2 tag with a converted, signed schema1
# manifest (see shared/reference/registry-2.8-responses.txt).
MANIFEST_ACCEPT = ", ".join(
    (MEDIA_DOCKER_MANIFEST, MEDIA_DOCKER_LIST, MEDIA_OCI_MANIFEST, MEDIA_OCI_INDEX)
)
# containerd's limit: a manifest bigger than this is an attack, not an image.
MAX_MANIFEST = 4 << 20
READ_CHUNK = 1 << 20
UPLOAD_CHUNK = 16 << 20

Write = Callable[[bytes], Awaitable[None] | None]


class BlobPush(enum.Enum):
    MOUNTED = "mounted"  # the registry linked it from another repository: no bytes sent
    UPLOADED = "uploaded"


@dataclass(frozen=True)
class ManifestHead:
    media_type: str
    digest: str  # "" when the registry sent no Docker-Content-Digest
    size: int


class _WriteFailed(Exception):
    """The caller's ``write`` raised: not a registry failure, so no retry and no mirror
    fallback may swallow it. ``get_blob`` re-raises the original."""

    def __init__(self, exc: Exception) -> None:
        super().__init__(str(exc))
        self.exc = exc


@dataclass
class _Upload:
    location: URL  # each answer names the next: registry 2.8 signs the offset into it
    sent: int = 0


def _ref_name(registry: str, repo: str, reference: str) -> str:
    sep = "@" if ":" in reference else ":"
    return f"{registry}/{repo}{sep}{reference}"


def _media_type(content_type: str | None, body: bytes) -> str:
    media = (content_type or "").split(";", 1)[0].strip()
    if media and media not in ("application/json", "application/octet-stream", "text/plain"):
        return media
    # Some registries answer a generic type; the manifest names its own.
    try:
        doc = json.loads(body)
    except ValueError:
        return media
    found = doc.get("mediaType") if isinstance(doc, dict) else None
    return found if isinstance(found, str) and found else media


def _mismatch(what: str, expected: str, actual: str) -> InvalidArgument:
    return InvalidArgument(
        f"digest mismatch for {what}: expected {expected} got {actual}", op="verify", obj=what
    )


def _check_digest(what: str, body: bytes, expected: str) -> str:
    """Raise unless ``body`` hashes to ``expected``; returns ``expected``."""
    err = digest_error(expected)
    if err:
        raise InvalidArgument(f"{err}: {expected}", op="verify", obj=what)
    want = Digest.parse(expected)
    actual = Digest.of_bytes(body, want.algorithm)
    if actual != want:
        raise _mismatch(what, expected, str(actual))
    return expected


def _content_range_start(value: str | None) -> int:
    # "bytes 100-199/200"
    try:
        return int((value or "").split()[1].split("-", 1)[0])
    except (IndexError, ValueError):
        return -1


class RegistryClient:
    """Talks to registries for palletd: manifests, blobs, tags; pull and push.

    One client per palletd; its token cache and remembered challenges are shared by every
    concurrent pull and push. The session belongs to the caller.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        credentials: CredentialSource | None,
        insecure: Collection[str] = (),
        mirrors: Mapping[str, list[str]] | None = None,
        *,
        retry: RetryPolicy | None = None,
        upload_chunk: int = UPLOAD_CHUNK,
    ) -> None:
        auth = Authenticator(session, credentials)
        self.auth = auth
        self._t = Transport(session, auth, insecure, mirrors or {}, retry or RetryPolicy())
        self._upload_chunk = upload_chunk

    # -- manifests ----------------------------------------------------------------------

    async def get_manifest(
        self, registry: str, repo: str, reference: str
    ) -> tuple[str, bytes, str]:
        """(media type, bytes, digest) of a manifest or index, by tag or digest; verified."""
        name = _ref_name(registry, repo, reference)
        scopes = [repository_scope(repo, "pull")]

        async def attempt(ep: Endpoint) -> tuple[str, bytes, str]:
            reply = await self._t.call(
                ep,
                "GET",
                ep.url(f"{repo}/manifests/{reference}"),
                scopes,
                headers={"Accept": MANIFEST_ACCEPT},
                limit=MAX_MANIFEST,
            )
            if reply.status != 200:
                raise failure(
                    reply.status, reply.body, op="pull", obj=name, missing=f"manifest for {name}"
                )
            body = reply.body
            media_type = _media_type(reply.headers.get("Content-Type"), body)
            if ":" in reference:
                return media_type, body, _check_digest(name, body, reference)
            digest = str(Digest.of_bytes(body))
            said = reply.headers.get("Docker-Content-Digest", "")
            if said and not digest_error(said):
                _check_digest(name, body, said)
            return media_type, body, digest

        return await self._t.on_pull_endpoints(registry, attempt)

    async def head_manifest(self, registry: str, repo: str, reference: str) -> ManifestHead | None:
        """What a tag or digest points at, without the body; None when it does not exist."""
        name = _ref_name(registry, repo, reference)
        scopes = [repository_scope(repo, "pull")]

        async def attempt(ep: Endpoint) -> ManifestHead | None:
            reply = await self._t.call(
                ep,
                "HEAD",
                ep.url(f"{repo}/manifests/{reference}"),
                scopes,
                headers={"Accept": MANIFEST_ACCEPT},
            )
            if reply.status == 404:
                if ep.mirror:
                    raise NotFound(f"manifest for {name} not found", obj=name)  # ask the next
                return None
            if reply.status != 200:
                raise failure(reply.status, b"", op="pull", obj=name, missing=name)
            media = (reply.headers.get("Content-Type") or "").split(";", 1)[0].strip()
            return ManifestHead(
                media,
                reply.headers.get("Docker-Content-Digest", ""),
                int(reply.headers.get("Content-Length") or 0),
            )

        return await self._t.on_pull_endpoints(registry, attempt)

    async def put_manifest(
        self, registry: str, repo: str, reference: str, media_type: str, data: bytes
    ) -> str:
        """Store a manifest under a tag (or its own digest); returns its digest."""
        name = _ref_name(registry, repo, reference)
        digest = (
            _check_digest(name, data, reference) if ":" in reference else str(Digest.of_bytes(data))
        )
        ep = self._t.home(registry)
        reply = await self._t.call(
            ep,
            "PUT",
            ep.url(f"{repo}/manifests/{reference}"),
            [repository_scope(repo, "pull", "push")],
            headers={"Content-Type": media_type},
            data=data,
        )
        if reply.status not in (200, 201):
            raise failure(reply.status, reply.body, op="push", obj=name, missing=name)
        said = reply.headers.get("Docker-Content-Digest", "")
        if said and said.split(":", 1)[0] == digest.split(":", 1)[0] and said != digest:
            raise _mismatch(name, digest, said)
        return digest

    async def delete_manifest(self, registry: str, repo: str, digest: str) -> None:
        """Delete a manifest by digest (registries refuse deleting by tag)."""
        name = _ref_name(registry, repo, digest)
        ep = self._t.home(registry)
        reply = await self._t.call(
            ep,
            "DELETE",
            ep.url(f"{repo}/manifests/{digest}"),
            [repository_scope(repo, "delete")],
        )
        if reply.status not in (200, 202):
            raise failure(
                reply.status, reply.body, op="delete", obj=name, missing=f"manifest {name}"
            )

    async def list_tags(self, registry: str, repo: str) -> list[str]:
        """Every tag of ``repo``, following the registry's pagination."""
        name = f"{registry}/{repo}"
        ep = self._t.home(registry)
        url: URL | None = ep.url(f"{repo}/tags/list")
        tags: list[str] = []
        pages = 0
        while url is not None and pages < 10_000:
            pages += 1
            reply = await self._t.call(
                ep, "GET", url, [repository_scope(repo, "pull")], limit=MAX_MANIFEST
            )
            if reply.status != 200:
                raise failure(
                    reply.status,
                    reply.body,
                    op="list tags",
                    obj=name,
                    missing=f"repository {name}",
                )
            try:
                found = json.loads(reply.body).get("tags") or []
            except (ValueError, AttributeError) as exc:
                raise SystemFailure(f"list tags {name}: malformed answer", obj=name) from exc
            tags.extend(str(t) for t in found)
            url = _next_link(reply)
        return tags

    async def ping(self, registry: str) -> None:
        """``GET /v2/`` with credentials: what ``login`` checks. Raises Unauthorized."""
        ep = self._t.home(registry)
        reply = await self._t.call(ep, "GET", ep.url(""), [])
        if reply.status != 200:
            raise failure(reply.status, reply.body, op="login", obj=registry, missing=registry)

    # -- blobs --------------------------------------------------------------------------

    async def blob_exists(self, registry: str, repo: str, digest: str) -> bool:
        ep = self._t.home(registry)
        name = f"{registry}/{repo}@{digest}"
        reply = await self._t.call(
            ep, "HEAD", ep.url(f"{repo}/blobs/{digest}"), [repository_scope(repo, "pull")]
        )
        if reply.status == 200:
            return True
        if reply.status == 404:
            return False
        raise failure(reply.status, b"", op="check blob", obj=name, missing=name)

    async def get_blob(
        self, registry: str, repo: str, digest: str, write: Write, offset: int = 0
    ) -> int:
        """Stream blob bytes from ``offset`` on into ``write``; returns how many were written.

        A cut connection resumes where it stopped (``Range``) within the retry budget, on
        the same endpoint, then on the next (a mirror's partial is continued from the
        registry). A registry that ignores ``Range`` is handled by dropping the bytes the
        caller already holds. ``write`` may be sync or async; its exceptions propagate
        untouched (no retry, no fallback). ``offset`` must be below the blob's size: a
        caller holding every byte commits instead (a registry answers 416 past the end,
        raised as InvalidArgument). The digest is the writer's to check.
        """
        if offset < 0:
            raise InvalidArgument(f"negative blob offset {offset}", obj=digest)
        done = [0]

        async def attempt(ep: Endpoint) -> int:
            await self._stream_blob(ep, registry, repo, digest, write, offset, done)
            return done[0]

        try:
            return await self._t.on_pull_endpoints(registry, attempt)
        except _WriteFailed as failed:
            raise failed.exc from None

    async def _stream_blob(
        self,
        ep: Endpoint,
        registry: str,
        repo: str,
        digest: str,
        write: Write,
        offset: int,
        done: list[int],
    ) -> None:
        name = f"{registry}/{repo}@{digest}"
        url = ep.url(f"{repo}/blobs/{digest}")
        scopes = [repository_scope(repo, "pull")]
        tries = Tries(self._t.retry)
        while True:
            pos = offset + done[0]
            headers = {"Range": f"bytes={pos}-"} if pos else {}
            resp = await self._t.open(
                ep, "GET", url, scopes, tries, headers=headers, timeout=STREAM_TIMEOUT
            )
            finished = False
            try:
                if resp.status not in (200, 206):
                    body = await read_limited(resp, MAX_ERROR_BODY) or b""
                    if resp.status == 416:
                        raise InvalidArgument(
                            f"pull {name}: offset {pos} is past the end of the blob", obj=name
                        )
                    raise failure(
                        resp.status,
                        body,
                        op="pull",
                        obj=name,
                        missing=f"blob {digest} in {registry}/{repo}",
                    )
                skip = pos if resp.status == 200 else 0
                if (
                    resp.status == 206
                    and _content_range_start(resp.headers.get("Content-Range")) != pos
                ):
                    raise SystemFailure(
                        f"pull {name}: asked for bytes from {pos}, registry sent "
                        f"{resp.headers.get('Content-Range')!r}",
                        obj=name,
                    )
                async for chunk in resp.content.iter_chunked(READ_CHUNK):
                    if skip:
                        if len(chunk) <= skip:
                            skip -= len(chunk)
                            continue
                        chunk = chunk[skip:]
                        skip = 0
                    try:
                        pending = write(chunk)
                        if pending is not None:
                            await pending
                    except Exception as exc:
                        raise _WriteFailed(exc) from exc
                    done[0] += len(chunk)
                if skip:
                    raise InvalidArgument(
                        f"pull {name}: offset {pos} is past the end of the blob", obj=name
                    )
                finished = True
                return
            except TRANSIENT as exc:
                if not await tries.again():
                    raise SystemFailure(
                        f"pull {name}: download from {ep.host} failed after {done[0]} bytes: "
                        f"{exc or type(exc).__name__}",
                        op="pull",
                        obj=name,
                    ) from exc
            finally:
                if finished:
                    resp.release()
                else:
                    resp.close()  # a half-read body: the connection cannot be reused

    async def push_blob(
        self,
        registry: str,
        repo: str,
        digest: str,
        size: int,
        chunks: AsyncIterable[bytes],
        mount_from: str | None = None,
    ) -> BlobPush:
        """Upload a blob: mounted from ``mount_from`` when the registry can, else sent.

        The bytes go in PATCHes of up to ``upload_chunk`` bytes and the upload is closed with
        ``PUT ?digest=``, where the registry checks the digest. ``chunks`` is not read when
        the mount succeeds. A failed upload is cancelled; it is not resumable (registry 2.8
        invalidates an upload whose PATCH was cut), so the caller retries from the start.
        """
        name = f"{registry}/{repo}@{digest}"
        err = digest_error(digest)
        if err:
            raise InvalidArgument(f"{err}: {digest}", op="push", obj=name)
        ep = self._t.home(registry)
        scopes = [repository_scope(repo, "pull", "push")]
        url = ep.url(f"{repo}/blobs/uploads/")
        if mount_from and mount_from != repo:
            scopes.append(repository_scope(mount_from, "pull"))
            url = url.with_query({"mount": digest, "from": mount_from})
        reply = await self._t.call(ep, "POST", url, scopes, data=b"")
        if reply.status == 201 and mount_from:
            return BlobPush.MOUNTED
        if reply.status != 202:
            raise failure(reply.status, reply.body, op="push", obj=name, missing=name)
        upload = _Upload(reply.location(name))
        try:
            await self._send_chunks(ep, upload, chunks, scopes, name)
            if upload.sent != size:
                raise InvalidArgument(
                    f"push {name}: {upload.sent} bytes read, descriptor says {size}", obj=name
                )
            reply = await self._t.call(
                ep,
                "PUT",
                upload.location.update_query(digest=digest),
                scopes,
                headers={"Content-Type": "application/octet-stream"},
                data=b"",
            )
            if reply.status not in (201, 204):
                raise failure(reply.status, reply.body, op="push", obj=name, missing=name)
        except Exception:
            # Not on cancellation: awaiting more there would delay it; the registry expires
            # abandoned uploads by itself.
            await self._cancel_upload(ep, upload.location, scopes)
            raise
        return BlobPush.UPLOADED

    async def _send_chunks(
        self,
        ep: Endpoint,
        upload: _Upload,
        chunks: AsyncIterable[bytes],
        scopes: list[str],
        name: str,
    ) -> None:
        """PATCH the bytes of ``chunks`` in pieces of ``upload_chunk``, each with its range."""
        buf = bytearray()

        async def flush(data: bytes) -> None:
            reply = await self._t.call(
                ep,
                "PATCH",
                upload.location,
                scopes,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{upload.sent}-{upload.sent + len(data) - 1}",
                },
                data=data,
                timeout=STREAM_TIMEOUT,
            )
            if reply.status != 202:
                raise failure(reply.status, reply.body, op="push", obj=name, missing=name)
            upload.location = reply.location(name)
            upload.sent += len(data)

        async for chunk in chunks:
            buf += chunk
            while len(buf) >= self._upload_chunk:
                data = bytes(buf[: self._upload_chunk])
                del buf[: self._upload_chunk]
                await flush(data)
        if buf:
            await flush(bytes(buf))

    async def _cancel_upload(self, ep: Endpoint, location: URL, scopes: list[str]) -> None:
        # Best effort: the registry expires abandoned uploads anyway, and the error that
        # brought us here is the one worth reporting.
        try:
            await self._t.call(ep, "DELETE", location, scopes)
        except (TimeoutError, PalletError, aiohttp.ClientError):
            return


def _next_link(reply: Reply) -> URL | None:
    """The ``rel="next"`` target of a Link header (tag list pagination), resolved."""
    for link in reply.headers.getall("Link", []):
        for part in link.split(","):
            target, _, params = part.partition(";")
            if 'rel="next"' in params.replace(" ", "") or "rel=next" in params.replace(" ", ""):
                return reply.url.join(URL(target.strip().strip("<>")))
    return None
