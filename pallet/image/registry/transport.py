"""Sending one registry request: authentication, retries, mirrors, error translation.

Request flow (challenges and tokens in auth.py, hosts and backoff in endpoints.py)::

    for endpoint in mirrors + [registry]            (pulls only; pushes go to the registry)
      send (with a cached token / basic auth if this host challenged before)
        401                       -> answer the challenge, resend once
        connection error or 5xx   -> back off, resend (bounded in tries and time)
      translate the status        (4xx is never retried)

``failure`` is the one place that turns a registry's answer into a pallet error:
404 -> NotFound, 401/403 (after authenticating) -> Unauthorized, 405 -> NotSupported,
409 -> Conflict, 429 and 5xx -> SystemFailure, other 4xx -> InvalidArgument; an
unreachable registry -> SystemFailure naming it.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from typing import TypeVar

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from pallet.errors import (
    Conflict,
    InvalidArgument,
    NotFound,
    NotSupported,
    PalletError,
    SystemFailure,
)
from pallet.image.registry.auth import Authenticator, Unauthorized, read_limited
from pallet.image.registry.endpoints import Endpoint, RetryPolicy, origin, pull_endpoints

MAX_ERROR_BODY = 64 << 10
USER_AGENT = "pallet/0.1"
# Whole-request limits for small exchanges; blob transfers only limit silence.
SMALL_TIMEOUT = aiohttp.ClientTimeout(total=120, sock_connect=15, sock_read=60)
STREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=15, sock_read=120)

# What a retry may cure. TLS failures are not among them (caught first): a bad
# certificate stays bad.
TRANSIENT = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError)

T = TypeVar("T")


@dataclass
class Reply:
    """An answer read whole."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    url: URL  # after redirects: what a relative Location resolves against

    def location(self, name: str) -> URL:
        value = self.headers.get("Location")
        if not value:
            raise SystemFailure(f"push {name}: registry sent no upload location", obj=name)
        return self.url.join(URL(value))


class Tries:
    """The retry budget of one logical request, shared by its resends and re-reads."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.started = time.monotonic()
        self.failures = 0

    def next_delay(self) -> float | None:
        """Count a failure; the wait before the next try, or None when the budget is spent."""
        self.failures += 1
        return self.policy.next_delay(self.failures, time.monotonic() - self.started)

    async def again(self) -> bool:
        delay = self.next_delay()
        if delay is None:
            return False
        await asyncio.sleep(delay)
        return True


def registry_says(body: bytes) -> str:
    """The registry's first error in Docker's ``code: message`` form, or ""."""
    try:
        doc = json.loads(body)
    except ValueError:
        return ""
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if not isinstance(errors, list) or not errors or not isinstance(errors[0], dict):
        return ""
    code = str(errors[0].get("code", "")).lower().replace("_", " ")
    message = str(errors[0].get("message", ""))
    return f"{code}: {message}" if code else message


def failure(status: int, body: bytes, *, op: str, obj: str, missing: str) -> PalletError:
    """The pallet error for a registry's non-success answer.

    ``missing`` says what a 404 means ("manifest for X", "blob D in X"); the message then
    reads as Docker's: "manifest for X not found: manifest unknown: manifest unknown".
    """
    says = registry_says(body)
    if status in (401, 403):
        return Unauthorized(
            f"{says or 'unauthorized: authentication required'} ({obj})", op=op, obj=obj
        )
    if status == 404:
        return NotFound(f"{missing} not found" + (f": {says}" if says else ""), op=op, obj=obj)
    detail = says or f"registry answered HTTP {status}"
    if status == 405:
        return NotSupported(f"{op} {obj}: {detail}", op=op, obj=obj)
    if status == 409:
        return Conflict(f"{op} {obj}: {detail}", op=op, obj=obj)
    if status == 429 or status >= 500:
        return SystemFailure(f"{op} {obj}: {detail}", op=op, obj=obj)
    return InvalidArgument(f"{op} {obj}: {detail}", op=op, obj=obj)


def unreachable(host: str, method: str, url: URL, exc: BaseException) -> SystemFailure:
    os_error = getattr(exc, "os_error", None)
    errno = getattr(os_error, "errno", None) or 0
    # aiohttp's strerror reads "Connect call failed (...)"; Docker says "connection refused".
    reason = (os.strerror(errno) if errno else "") or str(exc) or type(exc).__name__
    return SystemFailure(
        f"cannot reach registry {host}: {method} {url}: {reason[:1].lower()}{reason[1:]}",
        op=method,
        obj=host,
        errno=errno,
    )


class Transport:
    """Requests to registries, shared by every concurrent pull and push of one client."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        auth: Authenticator,
        insecure: Collection[str],
        mirrors: Mapping[str, list[str]],
        retry: RetryPolicy,
    ) -> None:
        self._session = session
        self._auth = auth
        self._insecure = frozenset(insecure)
        self._mirrors = dict(mirrors)
        self.retry = retry

    def home(self, registry: str) -> Endpoint:
        return origin(registry, self._insecure)

    async def open(
        self,
        ep: Endpoint,
        method: str,
        url: URL,
        scopes: list[str],
        tries: Tries,
        *,
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
        timeout: aiohttp.ClientTimeout = SMALL_TIMEOUT,
    ) -> aiohttp.ClientResponse:
        """Send until an answer worth returning: auth answered once, transient errors retried.

        Bodies are bytes, never streams, so every resend sends the same request. The caller
        owns the response (release or close it).
        """
        authorization = await self._auth.authorization(ep.registry, ep.host, scopes)
        answered = False
        while True:
            sent = {"User-Agent": USER_AGENT, **(headers or {})}
            if authorization:
                sent["Authorization"] = authorization
            try:
                resp = await self._session.request(
                    method, url, headers=sent, data=data, timeout=timeout
                )
            except aiohttp.ClientSSLError as exc:
                raise unreachable(ep.host, method, url, exc) from exc
            except TRANSIENT as exc:
                if await tries.again():
                    continue
                raise unreachable(ep.host, method, url, exc) from exc
            except aiohttp.ClientError as exc:  # invalid URL, too many redirects, …
                raise unreachable(ep.host, method, url, exc) from exc
            if resp.status == 401 and not answered:
                challenges = resp.headers.getall("WWW-Authenticate", [])
                resp.release()
                answered = True
                authorization = await self._auth.challenged(
                    ep.registry, ep.host, challenges, scopes, sent=authorization is not None
                )
                continue
            if resp.status >= 500:
                delay = tries.next_delay()
                if delay is not None:
                    resp.release()
                    await asyncio.sleep(delay)
                    continue
            return resp

    async def call(
        self,
        ep: Endpoint,
        method: str,
        url: URL,
        scopes: list[str],
        *,
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
        limit: int = MAX_ERROR_BODY,
        timeout: aiohttp.ClientTimeout = SMALL_TIMEOUT,
    ) -> Reply:
        """One request whose answer is read whole; an answer over ``limit`` bytes is refused."""
        tries = Tries(self.retry)
        while True:
            resp = await self.open(
                ep, method, url, scopes, tries, headers=headers, data=data, timeout=timeout
            )
            try:
                body = await read_limited(resp, limit)
                if body is None:
                    raise InvalidArgument(
                        f"{method} {url}: answer larger than {limit} bytes", op=method, obj=ep.host
                    )
                return Reply(resp.status, resp.headers, body, resp.url)
            except TRANSIENT as exc:
                if not await tries.again():
                    raise unreachable(ep.host, method, url, exc) from exc
            finally:
                resp.release()

    async def on_pull_endpoints(
        self, registry: str, attempt: Callable[[Endpoint], Awaitable[T]]
    ) -> T:
        """``attempt`` on each mirror in turn, then on the registry: the first answer wins."""
        *mirrors, home = pull_endpoints(registry, self._insecure, self._mirrors)
        for ep in mirrors:
            try:
                return await attempt(ep)
            except PalletError:
                continue  # a mirror may lack the image or be down: the registry decides
        return await attempt(home)
