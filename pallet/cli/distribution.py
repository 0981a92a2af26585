"""pallet pull, push, login, logout.

Credentials live in docker's ``config.json`` ($DOCKER_CONFIG or ~/.docker), so either
tool reads what the other stored; pull and push send them to palletd in
``X-Registry-Auth`` as the docker CLI does. Progress is drawn as docker draws it: on a
terminal one line per layer, redrawn in place; otherwise each state change on a line of
its own and no bars.
"""

from __future__ import annotations

import base64
import json
import shutil
import sys
from typing import Any, TextIO

from pallet.cli.flags import STR, Flag, UsageError, parse
from pallet.client.transport import Response, Transport
from pallet.errors import PalletError
from pallet.image import reference
from pallet.image.registry.credentials import (
    DOCKER_HUB_KEY,
    Credentials,
    CredentialStore,
    config_key,
)

# Below this many columns docker drops the bar and keeps the byte counts.
_BAR_MIN_WIDTH = 110


class StreamError(Exception):
    """The daemon's stream ended with an error message."""


def registry_auth(registry: str, store: CredentialStore | None = None) -> str:
    """The ``X-Registry-Auth`` value for ``registry``: stored credentials, or ``{}``."""
    creds = (store or CredentialStore()).get(registry)
    doc: dict[str, str] = {}
    if creds is not None:
        doc = auth_doc(creds, config_key(registry))
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode()


class Progress:
    """Draws a pull's or push's messages as the docker CLI does (jsonmessage)."""

    def __init__(self, out: TextIO | None, tty: bool, width: int = 0) -> None:
        self.out = out  # None: quiet, only errors (raised) and aux are kept
        self.tty = tty
        self.width = width or shutil.get_terminal_size().columns
        self.lines: dict[str, int] = {}  # layer id -> its line, counted from the first
        self.aux: dict[str, Any] | None = None

    def show(self, msg: dict[str, Any]) -> None:
        error = msg.get("errorDetail") or msg.get("error")
        if error:
            text = error.get("message") if isinstance(error, dict) else error
            raise StreamError(str(text or msg.get("error") or "unknown error"))
        if isinstance(msg.get("aux"), dict):
            self.aux = msg["aux"]
            return
        if "status" not in msg or self.out is None:
            return
        ident = str(msg.get("id") or "")
        detail = msg.get("progressDetail")
        counted = isinstance(detail, dict) and bool(detail.get("current") or detail.get("total"))
        text = f"{ident}: {msg['status']}" if ident else str(msg["status"])
        if not self.tty:
            if not counted:  # docker shows no byte counts off a terminal
                self.out.write(text + "\n")
            return
        bar = str(msg.get("progress") or "") if counted else ""
        if bar and self.width <= _BAR_MIN_WIDTH and "] " in bar:
            bar = bar.partition("] ")[2].strip()
        if bar:
            text = f"{text} {bar}"
        if not ident or detail is None:
            self.lines = {}  # a plain line ends the block of layer lines above it
            self.out.write(text + "\n")
            return
        if ident not in self.lines:
            self.lines[ident] = len(self.lines)
            self.out.write("\n")
        up = len(self.lines) - self.lines[ident]
        # up to the layer's line, clear it, draw, and back down below the block
        self.out.write(f"\x1b[{up}A\x1b[2K\r{text[:self.width - 1]}\r\x1b[{up}B")
        self.out.flush()


def _follow(resp: Response, quiet: bool) -> Progress:
    progress = Progress(None if quiet else sys.stdout, tty=sys.stdout.isatty())
    try:
        for line in resp.lines():
            progress.show(json.loads(line))
    finally:
        resp.close()
        sys.stdout.flush()
    return progress


def pull(host: str | None, argv: list[str]) -> int:
    a = parse(argv, [Flag("-q,--quiet"), Flag("--platform", STR), Flag("-a,--all-tags"),
                     Flag("--disable-content-trust")])
    if len(a.args) != 1:
        raise UsageError('"pallet pull" requires exactly 1 argument.')
    try:
        ref = reference.parse(a.args[0], default_tag=False)
    except PalletError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    if a.all_tags and (ref.tag is not None or ref.digest is not None):
        sys.stderr.write("tag can't be used with --all-tags/-a\n")
        return 1
    if ref.tag is None and ref.digest is None and not a.all_tags:
        if not a.quiet:
            sys.stdout.write("Using default tag: latest\n")
        ref = ref.with_tag("latest")
    query: dict[str, object] = {"fromImage": ref.name,
                                "tag": str(ref.digest) if ref.digest else ref.tag,
                                "platform": a.platform or None}
    resp = Transport(host).request("POST", "/images/create", query,
                                   headers={"X-Registry-Auth": registry_auth(ref.domain)})
    try:
        _follow(resp, bool(a.quiet))
    except StreamError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    sys.stdout.write(f"{ref}\n")
    return 0


def push(host: str | None, argv: list[str]) -> int:
    a = parse(argv, [Flag("-a,--all-tags"), Flag("-q,--quiet"), Flag("--platform", STR),
                     Flag("--disable-content-trust")])
    if len(a.args) != 1:
        raise UsageError('"pallet push" requires exactly 1 argument.')
    try:
        ref = reference.parse(a.args[0], default_tag=False)
    except PalletError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    if ref.digest is not None:
        sys.stderr.write("cannot push a digest reference\n")
        return 1
    if a.all_tags and ref.tag is not None:
        sys.stderr.write("tag can't be used with --all-tags/-a\n")
        return 1
    if ref.tag is None and not a.all_tags:
        if not a.quiet:
            sys.stdout.write("Using default tag: latest\n")
        ref = ref.with_tag("latest")
    name = ref.without_tag_or_digest().familiar()
    resp = Transport(host).request("POST", f"/images/{name}/push", {"tag": ref.tag},
                                   headers={"X-Registry-Auth": registry_auth(ref.domain)})
    try:
        _follow(resp, bool(a.quiet))
    except StreamError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    return 0


def login(host: str | None, argv: list[str]) -> int:
    a = parse(argv, [Flag("-u,--username", STR), Flag("-p,--password", STR),
                     Flag("--password-stdin")])
    if len(a.args) > 1:
        raise UsageError('"pallet login" requires at most 1 argument.')
    server = a.args[0] if a.args else DOCKER_HUB_KEY
    user = a.username if isinstance(a.username, str) else ""
    password = a.password if isinstance(a.password, str) else ""
    if a.password_stdin:
        if password:
            raise UsageError("--password and --password-stdin are mutually exclusive")
        if not user:
            raise UsageError("Must provide --username with --password-stdin")
        password = sys.stdin.read().removesuffix("\n").removesuffix("\r")
    elif password:
        sys.stderr.write("WARNING! Using --password via the CLI is insecure. "
                         "Use --password-stdin.\n")
    store = CredentialStore()
    t = Transport(host)
    try:
        stored = store.get(server) if not user and not password else None
        if stored is not None:
            sys.stdout.write("Authenticating with existing credentials...\n")
            _check(t, server, stored)
            sys.stdout.write("Login Succeeded\n")
            return 0
        creds = _check(t, server, _ask(user, password))
        store.store(server, creds)
    except PalletError as exc:
        sys.stderr.write(f"Error: {exc}\n")
        return 1
    sys.stderr.write(f"WARNING! Your credentials are stored unencrypted in '{store.path}'.\n")
    sys.stdout.write("Login Succeeded\n")
    return 0


def _ask(user: str, password: str) -> Credentials:
    """Prompt for what the flags did not give, as docker does (on a terminal only)."""
    if not (user and password) and not sys.stdin.isatty():
        raise PalletError("Cannot perform an interactive login from a non TTY device")
    if not user:
        user = input("Username: ").strip()
    if not password:
        import getpass

        password = getpass.getpass("Password: ")
    if not user:
        raise PalletError("Username is required")
    if not password:
        raise PalletError("Password is required")
    return Credentials(user, password)


def _check(t: Transport, server: str, creds: Credentials) -> Credentials:
    """What to keep: the credentials, or (when the registry's token server hands one
    out, as the docker CLI keeps it) the user and an identity token instead of the
    password."""
    body = json.dumps(auth_doc(creds, server)).encode()
    resp = t.request("POST", "/auth", body=body)
    try:
        reply = json.loads(resp.read() or b"{}")
    finally:
        resp.close()
    identity = reply.get("IdentityToken") if isinstance(reply, dict) else None
    if isinstance(identity, str) and identity:
        return Credentials(creds.username, "", identity)
    return creds


def auth_doc(creds: Credentials, server: str) -> dict[str, str]:
    """Docker's AuthConfig for ``creds``: an identity token goes instead of a password."""
    if creds.identity_token:
        return {"username": creds.username, "identitytoken": creds.identity_token,
                "serveraddress": server}
    return {"username": creds.username, "password": creds.password,
            "serveraddress": server}


def logout(host: str | None, argv: list[str]) -> int:
    a = parse(argv, [])
    if len(a.args) > 1:
        raise UsageError('"pallet logout" requires at most 1 argument.')
    server = a.args[0] if a.args else DOCKER_HUB_KEY
    try:
        erased = CredentialStore().erase(server)
    except PalletError as exc:
        sys.stderr.write(f"Error: {exc}\n")
        return 1
    word = "Removing login credentials for" if erased else "Not logged in to"
    sys.stdout.write(f"{word} {config_key(server)}\n")
    return 0
