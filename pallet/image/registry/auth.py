"""Registry authentication: the ``WWW-Authenticate`` challenge flow Docker Hub uses.

A registry answers an unauthenticated request with 401 and a challenge::

    Basic realm="Registry Realm"
    Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"

For Basic the client resends with the user's credentials. For Bearer it asks the realm for
a token (``GET realm?service=…&scope=…``, with basic credentials when it has some, anonymously
otherwise), then resends with ``Authorization: Bearer <token>``. The parsing and the token
cache are pure and unit-tested; ``Authenticator`` does the one HTTP call (the token fetch).

Tokens are cached per (registry host, scopes) until shortly before they expire, and a host's
last challenge is remembered so later requests authenticate up front instead of paying a 401
round trip each.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp

from pallet.errors import PalletError, SystemFailure
from pallet.image.registry.credentials import Credentials, CredentialSource

# The distribution token spec: a token without expires_in lives 60 s, and no less.
MIN_TOKEN_LIFETIME = 60
# Refresh this long before expiry so a token does not die between lookup and use.
EXPIRY_MARGIN = 10.0
TOKEN_TIMEOUT = aiohttp.ClientTimeout(total=60, sock_connect=15)
MAX_TOKEN_RESPONSE = 1 << 20
# Who asks, in OAuth2 requests (docker sends "docker").
CLIENT_ID = "pallet"

Clock = Callable[[], float]


class Unauthorized(PalletError):
    """The registry refused our credentials (or we had none): 401/403 after authenticating."""


@dataclass(frozen=True)
class Challenge:
    """One challenge from a ``WWW-Authenticate`` header; ``scheme`` is lower-case."""

    scheme: str
    params: dict[str, str]

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")

    @property
    def service(self) -> str:
        return self.params.get("service", "")

    @property
    def scopes(self) -> list[str]:
        return self.params.get("scope", "").split()


def _skip_space(s: str, i: int) -> int:
    while i < len(s) and s[i] in " \t":
        i += 1
    return i


def _token(s: str, i: int) -> tuple[str, int]:
    start = i
    while i < len(s) and s[i] not in ' \t,="':
        i += 1
    return s[start:i], i


def _quoted(s: str, i: int) -> tuple[str, int]:
    """The quoted-string starting at s[i] == '"' (RFC 7230: backslash escapes one char)."""
    out = []
    i += 1
    while i < len(s) and s[i] != '"':
        if s[i] == "\\" and i + 1 < len(s):
            i += 1
        out.append(s[i])
        i += 1
    return "".join(out), i + 1


def parse_www_authenticate(value: str) -> list[Challenge]:
    """Every challenge in one header value (RFC 7235), in order.

    ``auth-param``s are ``name=token`` or ``name="quoted, string"``; a comma separates
    params and challenges alike, so a new challenge starts at a token not followed by '='.
    Malformed input yields what could be read, never an exception: a registry's odd header
    must fail as "no usable challenge", not as a crash.
    """
    challenges: list[Challenge] = []
    current: Challenge | None = None
    i = 0
    while i < len(value):
        i = _skip_space(value, i)
        if i < len(value) and value[i] == ",":
            i += 1
            continue
        word, j = _token(value, i)
        if not word:
            i = j + 1  # a stray '=' or '"': step over it
            continue
        k = _skip_space(value, j)
        if k < len(value) and value[k] == "=" and current is not None:
            k = _skip_space(value, k + 1)
            if k < len(value) and value[k] == '"':
                param, i = _quoted(value, k)
            else:
                param, i = _token(value, k)
            current.params[word.lower()] = param
            continue
        current = Challenge(word.lower(), {})
        challenges.append(current)
        i = j
    return challenges


def repository_scope(repo: str, *actions: str) -> str:
    """``repository:<repo>:pull,push`` — the scope a token must carry for ``actions``."""
    return f"repository:{repo}:{','.join(actions)}"


def basic_authorization(creds: Credentials) -> str:
    raw = f"{creds.username}:{creds.password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def parse_token_response(body: bytes) -> tuple[str, float]:
    """(token, lifetime in seconds) from a token endpoint's JSON answer.

    Docker Hub answers both ``token`` and ``access_token`` (OAuth2's name); either will do.
    """
    doc = _token_doc(body)
    token = doc.get("token") or doc.get("access_token")
    if not isinstance(token, str) or not token:
        raise SystemFailure("token server answered without a token")
    lifetime = doc.get("expires_in")
    if not isinstance(lifetime, int | float) or lifetime < MIN_TOKEN_LIFETIME:
        lifetime = MIN_TOKEN_LIFETIME
    return token, float(lifetime)


def refresh_token_of(body: bytes) -> str:
    """The OAuth2 refresh token a login's token answer carries ("" when none)."""
    token = _token_doc(body).get("refresh_token")
    return token if isinstance(token, str) else ""


def _token_doc(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise SystemFailure(f"token server answered non-JSON: {body[:80]!r}") from exc
    if not isinstance(doc, dict):
        raise SystemFailure("token server answered JSON that is not an object")
    return doc


async def read_limited(resp: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The whole body, or None when it is longer than ``limit`` bytes.

    ``StreamReader.read(n)`` returns what has arrived, not n bytes: loop to the end.
    """
    body = bytearray()
    while len(body) <= limit:
        chunk = await resp.content.read(limit + 1 - len(body))
        if not chunk:
            return bytes(body)
        body += chunk
    return None


def _scope_key(scopes: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set(scopes)))


class TokenCache:
    """Bearer tokens by (registry host, scopes), each kept until just before it expires."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._tokens: dict[tuple[str, tuple[str, ...]], tuple[str, float]] = {}

    def get(self, host: str, scopes: Iterable[str]) -> str | None:
        key = (host, _scope_key(scopes))
        entry = self._tokens.get(key)
        if entry is None:
            return None
        token, expires = entry
        if self._clock() >= expires:
            del self._tokens[key]
            return None
        return token

    def put(self, host: str, scopes: Iterable[str], token: str, lifetime: float) -> None:
        expires = self._clock() + max(lifetime - EXPIRY_MARGIN, 0.0)
        self._tokens[(host, _scope_key(scopes))] = (token, expires)

    def drop(self, host: str, scopes: Iterable[str]) -> None:
        self._tokens.pop((host, _scope_key(scopes)), None)


def _auth_failure_text(body: bytes) -> str:
    """What a token server or registry said on 401, in Docker's ``code: message`` form."""
    try:
        doc = json.loads(body)
    except ValueError:
        return ""
    if not isinstance(doc, dict):
        return ""
    errors = doc.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        code = str(errors[0].get("code", "")).lower().replace("_", " ")
        return f"{code}: {errors[0].get('message', '')}" if code else ""
    details = doc.get("details")
    return f"unauthorized: {details}" if isinstance(details, str) and details else ""


class Authenticator:
    """Answers challenges for one RegistryClient; shared by all its concurrent requests.

    ``registry`` (the name a user logs in to, e.g. "docker.io") picks the credentials;
    ``host`` (the endpoint actually spoken to, e.g. "registry-1.docker.io") keys the
    remembered challenge and the token cache.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        credentials: CredentialSource | None,
        clock: Clock = time.monotonic,
    ) -> None:
        self._session = session
        self._credentials = credentials
        self.tokens = TokenCache(clock)
        self._challenges: dict[str, Challenge] = {}
        self._locks: dict[tuple[str, tuple[str, ...]], asyncio.Lock] = {}
        # login asks for a refresh token (docker's offline_token) and keeps it here
        self.offline = False
        self.refresh_token = ""

    def _creds(self, registry: str) -> Credentials | None:
        return self._credentials.get(registry) if self._credentials is not None else None

    async def authorization(self, registry: str, host: str, scopes: list[str]) -> str | None:
        """The Authorization header to send up front, if ``host`` challenged us before."""
        challenge = self._challenges.get(host)
        if challenge is None:
            return None
        return await self._answer(registry, host, challenge, scopes, fresh=False)

    async def challenged(
        self, registry: str, host: str, headers: list[str], scopes: list[str], sent: bool
    ) -> str:
        """The header to retry with after a 401 carrying ``headers`` (WWW-Authenticate).

        ``sent`` says the refused request carried our authorization already: a cached token
        may have been revoked, so fetch a new one rather than resend the refused one.
        """
        challenges = [c for h in headers for c in parse_www_authenticate(h)]
        usable = [c for c in challenges if c.scheme in ("bearer", "basic")]
        if not usable:
            raise Unauthorized(
                f"unauthorized: authentication required ({host}: no supported challenge)",
                op="authenticate",
                obj=host,
            )
        # Prefer Bearer: it is what Docker Hub and token-auth registries mean.
        challenge = next((c for c in usable if c.scheme == "bearer"), usable[0])
        self._challenges[host] = challenge
        wanted = sorted(set(scopes) | set(challenge.scopes))
        if challenge.scheme == "bearer" and sent:
            self.tokens.drop(host, wanted)
        return await self._answer(registry, host, challenge, wanted, fresh=sent)

    async def _answer(
        self, registry: str, host: str, challenge: Challenge, scopes: list[str], fresh: bool
    ) -> str:
        creds = self._creds(registry)
        if challenge.scheme == "basic":
            if creds is None:
                raise Unauthorized(
                    f"unauthorized: authentication required (no basic auth credentials "
                    f"for {registry})",
                    op="authenticate",
                    obj=registry,
                )
            return basic_authorization(creds)
        key = (host, _scope_key(scopes))
        # One fetch per key: parallel layer downloads all hit the same 401 at once.
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            token = None if fresh else self.tokens.get(host, scopes)
            if token is None:
                token, lifetime = await self._fetch_token(registry, challenge, scopes, creds)
                self.tokens.put(host, scopes, token, lifetime)
        return f"Bearer {token}"

    async def _fetch_token(
        self,
        registry: str,
        challenge: Challenge,
        scopes: list[str],
        creds: Credentials | None,
    ) -> tuple[str, float]:
        if not challenge.realm:
            raise Unauthorized(
                f"unauthorized: bearer challenge from {registry} names no realm",
                op="authenticate",
                obj=registry,
            )
        params = [("scope", s) for s in scopes]
        if challenge.service:
            params.insert(0, ("service", challenge.service))
        headers = {}
        if creds is not None and not creds.identity_token:
            headers["Authorization"] = basic_authorization(creds)
        if self.offline:
            params += [("offline_token", "true"), ("client_id", CLIENT_ID)]
        try:
            if creds is not None and creds.identity_token:
                # OAuth2's refresh grant, as docker sends an identity token
                form = {"grant_type": "refresh_token", "refresh_token": creds.identity_token,
                        "client_id": CLIENT_ID, "scope": " ".join(scopes)}
                if challenge.service:
                    form["service"] = challenge.service
                request = self._session.post(challenge.realm, data=form,
                                             timeout=TOKEN_TIMEOUT)
            else:
                request = self._session.get(challenge.realm, params=params, headers=headers,
                                            timeout=TOKEN_TIMEOUT)
            async with request as resp:
                body = await read_limited(resp, MAX_TOKEN_RESPONSE)
                status = resp.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise SystemFailure(
                f"cannot reach token server {challenge.realm} for {registry}: {exc}",
                op="authenticate",
                obj=registry,
            ) from exc
        if body is None:
            raise SystemFailure(
                f"token server {challenge.realm} for {registry} answered more than "
                f"{MAX_TOKEN_RESPONSE} bytes",
                op="authenticate",
                obj=registry,
            )
        if status in (401, 403):
            said = _auth_failure_text(body) or "unauthorized: authentication required"
            if creds is None:
                said += f" (no credentials for {registry})"
            raise Unauthorized(f"{said} ({registry})", op="authenticate", obj=registry)
        if status != 200:
            raise SystemFailure(
                f"token server {challenge.realm} for {registry} answered {status}",
                op="authenticate",
                obj=registry,
            )
        if self.offline:
            self.refresh_token = refresh_token_of(body) or self.refresh_token
        return parse_token_response(body)
