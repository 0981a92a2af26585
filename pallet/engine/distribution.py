"""Pull, push and login against registries: what the three share.

A job runs in palletd's event loop and reports progress as Docker's JSON messages through
``emit``; the API layer writes them to the client as they come (pull.py, push.py).

Credentials come with each request (``X-Registry-Auth``, or the body of ``/auth``), as
dockerd takes them: palletd keeps no accounts. So each job gets a RegistryClient (and a
token cache) of its own, and a token fetched with one caller's password is never offered
to another caller.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from pallet.engine.config import DaemonConfig
from pallet.errors import InvalidArgument
from pallet.image.registry import Credentials, RegistryClient, Unauthorized
from pallet.image.registry.endpoints import canonical_registry, origin
from pallet.oci.units import human_size

# A job's progress messages, in Docker's shapes: {"status", "id", "progressDetail", ...}.
Emit = Callable[[dict[str, Any]], None]

# Layers moved at once per pull or push (dockerd: 3 downloads, 5 uploads). More buys
# little against one registry and costs memory and seeks.
CONCURRENCY = 3
# A download or upload reports at most this often per layer (plus its first and last).
PROGRESS_INTERVAL = 0.1

_BAR_WIDTH = 50


class OneRegistry:
    """The caller's credentials, for the registry the job talks to and no other.

    A mirror is a different host with accounts of its own: it gets none.
    """

    def __init__(self, registry: str, creds: Credentials | None) -> None:
        self._registry = canonical_registry(registry)
        self._creds = creds

    def get(self, registry: str) -> Credentials | None:
        return self._creds if canonical_registry(registry) == self._registry else None


def mirror_map(entries: Iterable[str]) -> dict[str, list[str]]:
    """``--registry-mirror`` values as RegistryClient wants them.

    As in Docker a mirror serves Docker Hub; ``registry=mirror`` (pallet's own form) names
    the registry it mirrors instead.
    """
    out: dict[str, list[str]] = {}
    for entry in entries:
        registry, eq, mirror = entry.partition("=")
        if not eq:
            registry, mirror = "docker.io", entry
        if not registry or not mirror:
            raise InvalidArgument(f"invalid registry mirror: {entry}", obj=entry)
        out.setdefault(canonical_registry(registry), []).append(mirror)
    return out


@asynccontextmanager
async def registry_client(cfg: DaemonConfig, registry: str,
                          creds: Credentials | None) -> AsyncIterator[RegistryClient]:
    """A client for one job, with the daemon's insecure registries and mirrors."""
    async with aiohttp.ClientSession() as session:
        yield RegistryClient(session, OneRegistry(registry, creds), cfg.insecure_registries,
                             mirror_map(cfg.registry_mirrors))


async def login(cfg: DaemonConfig, server: str, creds: Credentials | None) -> str:
    """``POST /auth``: do these credentials open ``server``? (GET /v2/ through the
    challenge: basic auth resent with them, or a token asked for with them.) The
    identity token (OAuth2 refresh token) a token server hands out for them, if any."""
    from pallet.image.registry.credentials import hostname

    registry = hostname(server) if server else "docker.io"
    async with registry_client(cfg, registry, creds) as client:
        client.auth.offline = creds is not None and not creds.identity_token
        try:
            await client.ping(registry)
        except Unauthorized as exc:
            url = origin(registry, cfg.insecure_registries).url("")
            raise Unauthorized(f"login attempt to {url} failed with status: 401 Unauthorized",
                               op="login", obj=registry) from exc
        return client.auth.refresh_token


# --- Docker's progress messages ------------------------------------------------------------

def progress_bar(current: int, total: int) -> str:
    """jsonmessage's JSONProgress.String as dockerd renders it: ``[===>   ] 1.2MB/2.3MB``."""
    if total <= 0:
        return f"{human_size(current):>8}" if current > 0 else ""
    filled = min(int(current / total * 100) // 2, _BAR_WIDTH)
    bar = f"[{'=' * filled}>{' ' * (_BAR_WIDTH - filled)}] "
    numbers = f"{human_size(current):>8}"
    if current <= total:
        numbers += f"/{human_size(total)}"
    return bar + numbers


class Reporter:
    """Sends a job's messages; byte counts are throttled per layer."""

    def __init__(self, emit: Emit) -> None:
        self._emit = emit
        self._last: dict[str, float] = {}

    def status(self, text: str, ident: str = "", layer: bool = True) -> None:
        """A plain line, or (with ``ident``) a layer's new state."""
        if ident and layer:
            # progressDetail marks it a layer line the docker CLI redraws in place.
            self._emit({"status": text, "progressDetail": {}, "id": ident})
        elif ident:
            self._emit({"status": text, "id": ident})  # "latest: Pulling from …"
        else:
            self._emit({"status": text})

    def progress(self, text: str, ident: str, current: int, total: int,
                 force: bool = False) -> None:
        now = time.monotonic()
        if not force and current < total and now - self._last.get(ident, 0.0) < \
                PROGRESS_INTERVAL:
            return
        self._last[ident] = now
        self._emit({"status": text, "progressDetail": {"current": current, "total": total},
                    "progress": progress_bar(current, total), "id": ident})

    def aux(self, doc: dict[str, Any]) -> None:
        self._emit({"progressDetail": {}, "aux": doc})
