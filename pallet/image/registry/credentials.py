"""Registry credentials in a docker-compatible ``config.json``.

The file is the one ``docker login`` writes, so either tool reads what the other stored::

    {"auths": {"https://index.docker.io/v1/": {"auth": "<base64 user:password>"},
               "127.0.0.1:5000": {"auth": "…"}}}

Docker Hub's key is its v1 index URL, for every alias of the Hub; other registries are keyed
by ``host[:port]``, though older files carry a scheme or a path (``https://host/v1/``), so a
lookup compares host names only, as the docker CLI does. Every other key of the file
(``credsStore``, ``proxies``, a plugin's settings) is kept as found when we write.

Stdlib only: the CLI's ``pallet login``/``logout`` use this module too.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import tempfile
from dataclasses import dataclass
from typing import Any, Protocol

from pallet.errors import InvalidArgument, SystemFailure

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    # An OAuth2 refresh token a token server handed out at login instead of keeping the
    # password (docker's "identitytoken"): tokens are asked for with it, no password.
    identity_token: str = ""

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=<hidden>)"


class CredentialSource(Protocol):
    """Where a registry client gets credentials: a CredentialStore, or (for ``login``,
    which checks credentials before storing them) any object with this ``get``."""

    def get(self, registry: str) -> Credentials | None: ...


def default_path() -> str:
    """``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json`` — as the docker CLI."""
    directory = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(directory, "config.json")


def hostname(key: str) -> str:
    """The registry host a config key names: scheme and path stripped, Hub aliases folded."""
    for scheme in ("https://", "http://"):
        if key.startswith(scheme):
            key = key[len(scheme) :]
            break
    host = key.split("/", 1)[0]
    return "docker.io" if host in DOCKER_HUB_ALIASES else host


def config_key(registry: str) -> str:
    """The key ``docker login <registry>`` would store under."""
    host = hostname(registry)
    return DOCKER_HUB_KEY if host == "docker.io" else host


class CredentialStore:
    """Load, store and erase credentials in one ``config.json``.

    Reads the file on every lookup: ``pallet login`` may change it while palletd runs.
    """

    def __init__(self, path: str | None = None) -> None:
        self.path = path if path is not None else default_path()

    def _load(self) -> dict[str, Any]:
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise SystemFailure(
                f"read {self.path}: {exc.strerror}",
                op="read",
                obj=self.path,
                errno=exc.errno or 0,
                path=self.path,
            ) from exc
        if not raw.strip():
            return {}
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            raise InvalidArgument(f"{self.path}: invalid JSON: {exc}", obj=self.path) from exc
        if not isinstance(doc, dict):
            raise InvalidArgument(f"{self.path}: not a JSON object", obj=self.path)
        auths = doc.get("auths")
        if auths is not None and not isinstance(auths, dict):
            raise InvalidArgument(f'{self.path}: "auths" is not an object', obj=self.path)
        return doc

    def get(self, registry: str) -> Credentials | None:
        """The credentials stored for ``registry`` (any alias or key form), or None."""
        host = hostname(registry)
        auths: dict[str, Any] = self._load().get("auths") or {}
        # An exact key wins over an alias (a file may hold both "host" and "https://host").
        keys = sorted(auths, key=lambda k: k != config_key(registry))
        for key in keys:
            if hostname(key) == host and isinstance(auths[key], dict):
                creds = self._decode(key, auths[key])
                if creds is not None:
                    return creds
        return None

    def all(self) -> dict[str, Credentials]:
        """Every stored login, by its key (what X-Registry-Config sends)."""
        auths: dict[str, Any] = self._load().get("auths") or {}
        out = {}
        for key, entry in auths.items():
            creds = self._decode(key, entry) if isinstance(entry, dict) else None
            if creds is not None:
                out[key] = creds
        return out

    def _decode(self, key: str, entry: dict[str, Any]) -> Credentials | None:
        identity = entry.get("identitytoken")
        if isinstance(identity, str) and identity:
            user = ""
            auth = entry.get("auth")
            if isinstance(auth, str) and auth:
                try:
                    user = base64.b64decode(auth).decode().partition(":")[0]
                except (binascii.Error, UnicodeDecodeError):
                    user = ""
            return Credentials(user, "", identity)
        auth = entry.get("auth")
        if isinstance(auth, str) and auth:
            try:
                user, sep, password = base64.b64decode(auth, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise InvalidArgument(
                    f"{self.path}: invalid auth for {key}", obj=self.path
                ) from exc
            if not sep:
                raise InvalidArgument(
                    f"{self.path}: invalid auth for {key}: no ':' between user and password",
                    obj=self.path,
                )
            return Credentials(user, password)
        # The pre-1.7 docker layout kept the two apart.
        old_user, old_password = entry.get("username"), entry.get("password")
        if isinstance(old_user, str) and isinstance(old_password, str) and old_user:
            return Credentials(old_user, old_password)
        return None

    def store(self, registry: str, creds: Credentials) -> None:
        """Save ``creds`` for ``registry``, replacing any entry for the same host."""
        doc = self._load()
        auths = doc["auths"] = doc.get("auths") or {}
        host = hostname(registry)
        for key in [k for k in auths if hostname(k) == host]:
            del auths[key]
        raw = f"{creds.username}:{creds.password}".encode()
        entry = {"auth": base64.b64encode(raw).decode("ascii")}
        if creds.identity_token:  # as the docker CLI keeps one: the user, no password
            entry["identitytoken"] = creds.identity_token
        auths[config_key(registry)] = entry
        self._write(doc)

    def erase(self, registry: str) -> bool:
        """Forget ``registry``'s credentials; False when there were none."""
        doc = self._load()
        auths = doc.get("auths") or {}
        host = hostname(registry)
        keys = [k for k in auths if hostname(k) == host]
        if not keys:
            return False
        for key in keys:
            del auths[key]
        self._write(doc)
        return True

    def _write(self, doc: dict[str, Any]) -> None:
        """Replace the file atomically, mode 0600: a crash leaves the old file or the new.

        A symlinked config.json (dotfile managers do that) is written through, as docker does.
        """
        target = os.path.realpath(self.path)
        directory = os.path.dirname(target)
        data = (json.dumps(doc, indent="\t") + "\n").encode()
        tmp = ""
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".config.json.", dir=directory)  # mode 0600
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, target)
            tmp = ""
            dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError as exc:
            raise SystemFailure(
                f"write {self.path}: {exc.strerror}",
                op="write",
                obj=self.path,
                errno=exc.errno or 0,
                path=self.path,
            ) from exc
        finally:
            if tmp:
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass
