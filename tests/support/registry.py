"""A real registry for tests: Debian's ``docker-registry`` (distribution 2.8) on 127.0.0.1.

Each fixture starts a private registry process with a config of its own — the packaged
``/etc/docker/registry/config.yml`` answers 401 to everything — in a fresh temp dir, and
stops it and removes the dir at teardown. Three flavours, as the issue asks:

- ``registry``: anonymous, read-write;
- ``registry_htpasswd``: basic auth from an htpasswd file (bcrypt, the only hash
  distribution accepts);
- ``registry_token``: bearer tokens from a small token server started beside it. The
  registry trusts a self-signed certificate (``auth.token.rootcertbundle``); the server
  signs RS256 JWTs with that certificate's key and names it in the ``x5c`` header, which
  distribution verifies against the bundle.

What the fixtures need from the host: ``docker-registry`` (apt), ``openssl`` (apt; key,
certificate and every token signature — no Python crypto package is required), and a
bcrypt implementation for the htpasswd file: the ``bcrypt`` package when installed, else
Python's ``crypt`` module over libxcrypt (Debian's libc crypt does ``$2b$``; the module
exists up to Python 3.12). Whatever is missing skips the tests that need it.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

REGISTRY_BIN = "docker-registry"
# Names every temp dir (and so every registry's cwd) so the run-wide leftover checks,
# which look for "pallet-test" in process cwds, catch a registry that outlived its test.
DIR_PREFIX = "pallet-test-registry-"
SERVICE = "pallet-test-registry"
ISSUER = "pallet-test-token-issuer"
USER = "alice"
PASSWORD = "wonderland"
READY_TIMEOUT = 15.0


@dataclass
class TokenServer:
    """An OAuth2-ish token endpoint as Docker Hub's auth.docker.io behaves.

    ``GET /token?service=…&scope=…`` with optional basic auth: known users get every
    action they ask for, anonymous callers get ``pull`` only (or nothing when
    ``anonymous_pull`` is False), a wrong password gets 401. ``requests`` records each
    call as (user or "", [scopes]) so tests can see the client's token caching.

    With ``offline_token=true`` a known user also gets a ``refresh_token``, which
    ``POST /token`` (grant_type=refresh_token, OAuth2's form) takes instead of the
    password, as Docker Hub's identity tokens; those calls record ("refresh:" + user).
    """

    key_path: str
    cert_path: str
    users: dict[str, str]
    anonymous_pull: bool = True
    expires_in: int = 300
    requests: list[tuple[str, list[str]]] = field(default_factory=list)
    refresh_tokens: dict[str, str] = field(default_factory=dict)  # token -> user
    port: int = 0
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def start(self) -> None:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _token_handler(self))
        server.daemon_threads = True
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def issue(self, user: str, scopes: list[str]) -> str:
        access = []
        for scope in scopes:
            parts = scope.split(":")
            if len(parts) < 3:
                continue
            kind, name, actions = parts[0], ":".join(parts[1:-1]), parts[-1].split(",")
            if not user:
                actions = [a for a in actions if a == "pull" and self.anonymous_pull]
            if actions:
                access.append({"type": kind, "name": name, "actions": actions})
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": user,
            "aud": SERVICE,
            "exp": now + self.expires_in,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        header = {"typ": "JWT", "alg": "RS256", "x5c": [_cert_der_b64(self.cert_path)]}
        signing_input = (
            f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        )
        signature = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", self.key_path],
            input=signing_input.encode(),
            capture_output=True,
            check=True,
        ).stdout
        return f"{signing_input}.{_b64url(signature)}"


def _token_handler(server: TokenServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            scopes = [s for value in query.get("scope", []) for s in value.split(" ") if s]
            user = ""
            header = self.headers.get("Authorization", "")
            if header.lower().startswith("basic "):
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
                if server.users.get(user) != password:
                    server.requests.append((user, scopes))
                    self._reply(401, {"details": "incorrect username or password"})
                    return
            server.requests.append((user, scopes))
            if query.get("service") != [SERVICE]:
                self._reply(400, {"details": "unknown service"})
                return
            token = server.issue(user, scopes)
            body: dict[str, Any] = {
                "token": token,
                "access_token": token,
                "expires_in": server.expires_in,
                "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            if user and query.get("offline_token") == ["true"]:
                refresh = uuid.uuid4().hex
                server.refresh_tokens[refresh] = user
                body["refresh_token"] = refresh
            self._reply(200, body)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode())
            scopes = [s for value in form.get("scope", []) for s in value.split(" ") if s]
            user = server.refresh_tokens.get((form.get("refresh_token") or [""])[0], "")
            server.requests.append(("refresh:" + user, scopes))
            if form.get("grant_type") != ["refresh_token"] or not user:
                self._reply(401, {"error": "invalid_grant"})
                return
            if form.get("service") != [SERVICE]:
                self._reply(400, {"details": "unknown service"})
                return
            token = server.issue(user, scopes)
            self._reply(200, {"access_token": token, "expires_in": server.expires_in,
                              "scope": " ".join(scopes)})

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep pytest's output to what the tests print

    return Handler


@dataclass
class Registry:
    """One running registry. ``host`` is what a reference names ("127.0.0.1:PORT")."""

    host: str
    url: str
    dir: str
    log_path: str
    process: subprocess.Popen[bytes]
    username: str | None = None
    password: str | None = None
    token_server: TokenServer | None = None

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.token_server is not None:
            self.token_server.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def require(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")


def bcrypt_hash(password: str) -> str:
    """A bcrypt hash of ``password`` — distribution's htpasswd reads nothing else."""
    try:
        import bcrypt  # type: ignore[import-not-found]

        hashed: bytes = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4))
        return hashed.decode()
    except ImportError:
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt
        except ImportError:
            pytest.skip("no bcrypt: install the bcrypt package (Python >= 3.13 has no crypt)")
    # The lowest cost bcrypt allows: the tests hash and verify on every request.
    hashed_str = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
    if not hashed_str or not hashed_str.startswith("$2"):
        pytest.skip("this libc's crypt() cannot make bcrypt hashes")
    return hashed_str


def make_token_keys(directory: str) -> tuple[str, str]:
    """A fresh RSA key and self-signed certificate: (key path, certificate path)."""
    key = os.path.join(directory, "token.key")
    cert = os.path.join(directory, "token.crt")
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
            "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN={ISSUER}",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return key, cert


def _cert_der_b64(cert_path: str) -> str:
    # A PEM body is the standard base64 of the DER certificate: exactly what x5c holds.
    with open(cert_path) as f:
        lines = [line.strip() for line in f if line.strip() and not line.startswith("-----")]
    return "".join(lines)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _config(port: int, root: str, auth: dict[str, Any] | None) -> str:
    # JSON is YAML, so the config needs no YAML library.
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": root},
            "delete": {"enabled": True},
            "cache": {"blobdescriptor": "inmemory"},
        },
        "http": {"addr": f"127.0.0.1:{port}", "secret": uuid.uuid4().hex},
    }
    if auth:
        config["auth"] = auth
    return json.dumps(config, indent=1)


def _wait_ready(reg: Registry) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if reg.process.poll() is not None:
            raise RuntimeError(f"docker-registry exited {reg.process.returncode}:\n{reg.log()}")
        try:
            with urllib.request.urlopen(f"{reg.url}/v2/", timeout=1):
                return
        except urllib.error.HTTPError:
            return  # 401 from an auth-enabled registry: it is serving
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"docker-registry not ready after {READY_TIMEOUT}s:\n{reg.log()}")


def start_registry(auth: str = "none", *, anonymous_pull: bool = True) -> Registry:
    """Start a registry with ``auth`` one of "none", "htpasswd", "token"."""
    require(REGISTRY_BIN)
    directory = tempfile.mkdtemp(prefix=DIR_PREFIX)
    try:
        return _start(directory, auth, anonymous_pull)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise


def _start(directory: str, auth: str, anonymous_pull: bool) -> Registry:
    auth_config: dict[str, Any] | None = None
    username = password = None
    token_server = None
    if auth == "htpasswd":
        htpasswd = os.path.join(directory, "htpasswd")
        with open(htpasswd, "w") as f:
            f.write(f"{USER}:{bcrypt_hash(PASSWORD)}\n")
        auth_config = {"htpasswd": {"realm": "pallet-test", "path": htpasswd}}
        username, password = USER, PASSWORD
    elif auth == "token":
        require("openssl")
        key, cert = make_token_keys(directory)
        token_server = TokenServer(key, cert, {USER: PASSWORD}, anonymous_pull=anonymous_pull)
        token_server.start()
        auth_config = {
            "token": {
                "realm": token_server.realm,
                "service": SERVICE,
                "issuer": ISSUER,
                "rootcertbundle": cert,
            }
        }
        username, password = USER, PASSWORD
    elif auth != "none":
        raise ValueError(f"unknown registry auth {auth!r}")
    try:
        # A port picked here may be taken before the registry binds it: try a few.
        for _attempt in range(3):
            port = free_port()
            config_path = os.path.join(directory, "config.yml")
            with open(config_path, "w") as f:
                f.write(_config(port, os.path.join(directory, "data"), auth_config))
            log_path = os.path.join(directory, "registry.log")
            with open(log_path, "wb") as log:
                process = subprocess.Popen(
                    [REGISTRY_BIN, "serve", config_path],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=directory,
                )
            reg = Registry(
                host=f"127.0.0.1:{port}",
                url=f"http://127.0.0.1:{port}",
                dir=directory,
                log_path=log_path,
                process=process,
                username=username,
                password=password,
                token_server=token_server,
            )
            try:
                _wait_ready(reg)
                return reg
            except RuntimeError:
                if process.poll() is None:
                    process.kill()
                process.wait()
                if "address already in use" not in reg.log():
                    raise
        raise RuntimeError("docker-registry: no free port after 3 tries")
    except BaseException:
        if token_server is not None:
            token_server.stop()
        raise


def _serve(auth: str, **kwargs: Any) -> Iterator[Registry]:
    reg = start_registry(auth, **kwargs)
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture
def registry() -> Iterator[Registry]:
    """An anonymous read-write registry."""
    yield from _serve("none")


@pytest.fixture
def registry_htpasswd() -> Iterator[Registry]:
    """A registry behind basic auth: ``USER``/``PASSWORD``."""
    yield from _serve("htpasswd")


@pytest.fixture
def registry_token() -> Iterator[Registry]:
    """A registry behind bearer tokens from ``reg.token_server`` (anonymous pull allowed)."""
    yield from _serve("token")
