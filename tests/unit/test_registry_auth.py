"""The pure parts of the registry client: challenges, tokens, endpoints, credentials, errors.

No network: what needs a server is in tests/integration/test_registry_client.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import stat
from pathlib import Path

import aiohttp
import pytest

from pallet.errors import (
    Conflict,
    InvalidArgument,
    NotFound,
    NotSupported,
    SystemFailure,
)
from pallet.image.registry import Credentials, CredentialStore, RetryPolicy, Unauthorized
from pallet.image.registry.auth import (
    MIN_TOKEN_LIFETIME,
    Authenticator,
    Challenge,
    TokenCache,
    basic_authorization,
    parse_token_response,
    parse_www_authenticate,
    repository_scope,
)
from pallet.image.registry.credentials import DOCKER_HUB_KEY, default_path, hostname
from pallet.image.registry.endpoints import (
    is_loopback,
    mirror,
    origin,
    plain_http,
    pull_endpoints,
    split_host,
)
from pallet.image.registry.transport import failure, registry_says

# -- WWW-Authenticate -------------------------------------------------------------------


def test_basic_challenge() -> None:
    assert parse_www_authenticate('Basic realm="Registry Realm"') == [
        Challenge("basic", {"realm": "Registry Realm"})
    ]


def test_bearer_challenge_as_docker_hub_sends_it() -> None:
    value = (
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/busybox:pull,push"'
    )
    [c] = parse_www_authenticate(value)
    assert c.scheme == "bearer"
    assert c.realm == "https://auth.docker.io/token"
    assert c.service == "registry.docker.io"
    # the comma inside the quoted scope does not split it
    assert c.scopes == ["repository:library/busybox:pull,push"]


def test_bearer_challenge_with_error_and_several_scopes() -> None:
    [c] = parse_www_authenticate(
        'Bearer realm="http://127.0.0.1:1/token",service="s",'
        'scope="repository:a:pull repository:b:pull,push",error="insufficient_scope"'
    )
    assert c.scopes == ["repository:a:pull", "repository:b:pull,push"]
    assert c.params["error"] == "insufficient_scope"


def test_two_challenges_in_one_header_and_odd_spacing() -> None:
    got = parse_www_authenticate(
        'Newauth realm="apps", type=1, title="Login to \\"apps\\"", Basic realm="simple"'
    )
    assert got == [
        Challenge("newauth", {"realm": "apps", "type": "1", "title": 'Login to "apps"'}),
        Challenge("basic", {"realm": "simple"}),
    ]


def test_scheme_and_param_names_are_case_insensitive() -> None:
    [c] = parse_www_authenticate('BEARER Realm="r", SERVICE=svc')
    assert (c.scheme, c.realm, c.service) == ("bearer", "r", "svc")


@pytest.mark.parametrize("value", ["", ",,,", '="x"', 'Bearer realm="unterminated', "Bearer ="])
def test_malformed_headers_do_not_raise(value: str) -> None:
    for c in parse_www_authenticate(value):
        assert isinstance(c.params, dict)


def test_repository_scope() -> None:
    assert repository_scope("library/busybox", "pull") == "repository:library/busybox:pull"
    assert repository_scope("a/b", "pull", "push") == "repository:a/b:pull,push"


def test_basic_authorization() -> None:
    header = basic_authorization(Credentials("alice", "p:ss"))
    assert header == "Basic " + base64.b64encode(b"alice:p:ss").decode()


# -- tokens -----------------------------------------------------------------------------


def test_token_response_either_field_and_lifetime() -> None:
    assert parse_token_response(b'{"token": "t", "expires_in": 300}') == ("t", 300.0)
    assert parse_token_response(b'{"access_token": "a"}') == ("a", MIN_TOKEN_LIFETIME)
    # the spec's floor: a shorter lifetime is taken as 60 s
    assert parse_token_response(b'{"token": "t", "expires_in": 5}')[1] == MIN_TOKEN_LIFETIME


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"token": ""}', b"{}"])
def test_bad_token_responses(body: bytes) -> None:
    with pytest.raises(SystemFailure):
        parse_token_response(body)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_cache_keys_and_expiry() -> None:
    clock = Clock()
    cache = TokenCache(clock)
    cache.put("h:5000", ["repository:a:pull", "repository:b:pull"], "T", 300)
    # scope order and duplicates do not matter; host and scope set do
    assert cache.get("h:5000", ["repository:b:pull", "repository:a:pull", "repository:a:pull"])
    assert cache.get("h:5000", ["repository:a:pull"]) is None
    assert cache.get("other:5000", ["repository:a:pull", "repository:b:pull"]) is None
    clock.now += 300 - 11
    assert cache.get("h:5000", ["repository:a:pull", "repository:b:pull"]) == "T"
    clock.now += 2  # within the safety margin before expiry: refetch
    assert cache.get("h:5000", ["repository:a:pull", "repository:b:pull"]) is None


def test_token_cache_drop() -> None:
    cache = TokenCache(Clock())
    cache.put("h", ["s"], "T", 300)
    cache.drop("h", ["s"])
    assert cache.get("h", ["s"]) is None


class NoCreds:
    def get(self, registry: str) -> Credentials | None:
        return None


def test_basic_challenge_without_credentials_is_unauthorized() -> None:
    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            auth = Authenticator(session, NoCreds())
            with pytest.raises(Unauthorized, match="no basic auth credentials for reg:5000"):
                await auth.challenged("reg:5000", "reg:5000", ['Basic realm="r"'], [], False)

    asyncio.run(main())


def test_unsupported_challenge_is_unauthorized() -> None:
    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            auth = Authenticator(session, None)
            with pytest.raises(Unauthorized, match="no supported challenge"):
                await auth.challenged("r", "r", ["Negotiate abc"], [], False)
            assert await auth.authorization("r", "r", []) is None

    asyncio.run(main())


# -- endpoints --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hostport", "parts"),
    [
        ("127.0.0.1:5000", ("127.0.0.1", "5000")),
        ("localhost", ("localhost", "")),
        ("[::1]:5000", ("::1", "5000")),
        ("::1", ("::1", "")),
        ("registry.example.com", ("registry.example.com", "")),
    ],
)
def test_split_host(hostport: str, parts: tuple[str, str]) -> None:
    assert split_host(hostport) == parts


@pytest.mark.parametrize(
    ("hostport", "loop"),
    [
        ("127.0.0.1:5000", True),
        ("127.1.2.3", True),
        ("localhost:5000", True),
        ("[::1]:5000", True),
        ("::1", True),
        ("10.0.0.1:5000", False),
        ("128.0.0.1", False),
        ("localhost.example.com", False),
        ("docker.io", False),
    ],
)
def test_loopback(hostport: str, loop: bool) -> None:
    assert is_loopback(hostport) is loop


def test_plain_http_only_for_loopback_and_insecure() -> None:
    assert plain_http("127.0.0.1:5000", ())
    assert not plain_http("10.1.2.3:5000", ())
    assert plain_http("10.1.2.3:5000", {"10.1.2.3:5000"})
    assert plain_http("10.1.2.3:5000", {"10.1.2.3"})  # a host without port covers all ports
    assert not plain_http("10.1.2.3:5000", {"10.1.2.3:5001"})
    assert plain_http("10.1.2.3:5000", {"10.0.0.0/8"})
    assert not plain_http("11.1.2.3:5000", {"10.0.0.0/8"})
    assert not plain_http("reg.example.com", {"10.0.0.0/8", "not/a/cidr"})
    assert plain_http("reg.example.com", {"reg.example.com"})


def test_docker_hub_is_served_at_registry_1() -> None:
    for name in ("docker.io", "index.docker.io", "registry-1.docker.io"):
        ep = origin(name, ())
        assert (ep.host, ep.scheme, ep.registry) == ("registry-1.docker.io", "https", "docker.io")
    assert str(origin("docker.io", ()).url("library/busybox/manifests/latest")) == (
        "https://registry-1.docker.io/v2/library/busybox/manifests/latest"
    )


def test_origin_schemes() -> None:
    assert str(origin("127.0.0.1:5000", ()).url("")) == "http://127.0.0.1:5000/v2/"
    assert origin("quay.io", ()).scheme == "https"
    assert origin("quay.io", {"quay.io"}).scheme == "http"
    with pytest.raises(InvalidArgument):
        origin("", ())


def test_mirrors() -> None:
    assert mirror("https://mirror.example.com", ()).host == "mirror.example.com"
    m = mirror("http://10.0.0.5:5000/", ())
    assert (m.host, m.scheme, m.registry, m.mirror) == (
        "10.0.0.5:5000",
        "http",
        "10.0.0.5:5000",
        True,
    )
    assert mirror("127.0.0.1:5001", ()).scheme == "http"
    assert mirror("mirror.example.com", ()).scheme == "https"
    for bad in ("ftp://m.example.com", "https://m.example.com/some/path", "https://"):
        with pytest.raises(InvalidArgument):
            mirror(bad, ())


def test_pull_endpoints_put_mirrors_first_for_their_registry_only() -> None:
    mirrors = {"docker.io": ["https://m1.example.com", "127.0.0.1:5001"]}
    eps = pull_endpoints("index.docker.io", (), mirrors)
    assert [(e.host, e.mirror) for e in eps] == [
        ("m1.example.com", True),
        ("127.0.0.1:5001", True),
        ("registry-1.docker.io", False),
    ]
    assert [e.host for e in pull_endpoints("quay.io", (), mirrors)] == ["quay.io"]


def test_retry_policy_is_bounded_in_tries_and_time() -> None:
    policy = RetryPolicy(attempts=4, first_delay=0.5, max_delay=2.0, deadline=100.0)
    delays = [policy.next_delay(n, 0.0) for n in range(1, 5)]
    assert delays[3] is None  # the fourth failure was the last try
    for delay, base in zip(delays[:3], [0.5, 1.0, 2.0], strict=True):
        assert delay is not None and base * 0.75 <= delay <= base
    assert policy.next_delay(10, 0.0) is None
    # no retry that would start after the deadline
    assert policy.next_delay(1, 99.8) is None
    capped = RetryPolicy(attempts=100, first_delay=1.0, max_delay=3.0, deadline=1e9)
    delay = capped.next_delay(20, 0.0)
    assert delay is not None and delay <= 3.0


# -- error translation ------------------------------------------------------------------


def body(code: str, message: str) -> bytes:
    return json.dumps({"errors": [{"code": code, "message": message, "detail": {}}]}).encode()


def test_registry_error_text_is_dockers() -> None:
    assert registry_says(body("MANIFEST_UNKNOWN", "manifest unknown")) == (
        "manifest unknown: manifest unknown"
    )
    assert registry_says(b"<html>oops</html>") == ""
    assert registry_says(b'{"errors": []}') == ""


def test_failure_classes() -> None:
    def f(status: int, b: bytes = b"") -> Exception:
        return failure(status, b, op="pull", obj="r/x:1", missing="manifest for r/x:1")

    e = f(404, body("MANIFEST_UNKNOWN", "manifest unknown"))
    assert isinstance(e, NotFound)
    assert str(e) == "manifest for r/x:1 not found: manifest unknown: manifest unknown"
    assert str(f(404)) == "manifest for r/x:1 not found"
    e = f(401, body("UNAUTHORIZED", "authentication required"))
    assert isinstance(e, Unauthorized)
    assert str(e) == "unauthorized: authentication required (r/x:1)"
    assert isinstance(
        f(403, body("DENIED", "requested access to the resource is denied")), Unauthorized
    )
    assert str(f(401)).startswith("unauthorized: authentication required")
    assert isinstance(f(400, body("MANIFEST_INVALID", "manifest invalid")), InvalidArgument)
    assert isinstance(f(405, body("UNSUPPORTED", "The operation is unsupported.")), NotSupported)
    assert isinstance(f(409), Conflict)
    assert isinstance(f(429), SystemFailure)
    e = f(503)
    assert isinstance(e, SystemFailure) and "HTTP 503" in str(e)


# -- credentials ------------------------------------------------------------------------


def test_store_get_erase_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "docker" / "config.json"
    store = CredentialStore(str(path))
    assert store.get("127.0.0.1:5000") is None  # no file yet
    store.store("127.0.0.1:5000", Credentials("alice", "s3cr:t"))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    doc = json.loads(path.read_text())
    assert doc == {
        "auths": {"127.0.0.1:5000": {"auth": base64.b64encode(b"alice:s3cr:t").decode()}}
    }
    assert store.get("127.0.0.1:5000") == Credentials("alice", "s3cr:t")
    assert store.get("http://127.0.0.1:5000/v2/") == Credentials("alice", "s3cr:t")
    assert store.get("127.0.0.1:5001") is None
    assert store.erase("127.0.0.1:5000") is True
    assert store.erase("127.0.0.1:5000") is False
    assert store.get("127.0.0.1:5000") is None
    assert sorted(os.listdir(path.parent)) == ["config.json"]  # no temp files left


def test_docker_hub_key_and_aliases(tmp_path: Path) -> None:
    store = CredentialStore(str(tmp_path / "config.json"))
    store.store("docker.io", Credentials("bob", "pw"))
    assert list(json.loads((tmp_path / "config.json").read_text())["auths"]) == [DOCKER_HUB_KEY]
    for alias in ("docker.io", "index.docker.io", "registry-1.docker.io", DOCKER_HUB_KEY):
        assert store.get(alias) == Credentials("bob", "pw")
    # storing again under another alias replaces, not duplicates
    store.store("index.docker.io", Credentials("bob", "new"))
    auths = json.loads((tmp_path / "config.json").read_text())["auths"]
    assert list(auths) == [DOCKER_HUB_KEY]
    assert store.get("docker.io") == Credentials("bob", "new")


def test_other_keys_survive_a_write(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps(
            {
                "auths": {"https://quay.io": {"auth": base64.b64encode(b"q:w").decode()}},
                "credsStore": "pass",
                "proxies": {"default": {"httpProxy": "http://p:3128"}},
            }
        )
    )
    store = CredentialStore(str(path))
    assert store.get("quay.io") == Credentials("q", "w")  # a key with a scheme still matches
    store.store("127.0.0.1:5000", Credentials("a", "b"))
    doc = json.loads(path.read_text())
    assert doc["credsStore"] == "pass"
    assert doc["proxies"] == {"default": {"httpProxy": "http://p:3128"}}
    assert set(doc["auths"]) == {"https://quay.io", "127.0.0.1:5000"}


def test_legacy_username_password_fields(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": {"reg": {"username": "u", "password": "p"}}}))
    assert CredentialStore(str(path)).get("reg") == Credentials("u", "p")


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[]",
        '{"auths": []}',
        '{"auths": {"reg": {"auth": "!!!not base64"}}}',
        json.dumps({"auths": {"reg": {"auth": base64.b64encode(b"no-colon").decode()}}}),
    ],
)
def test_malformed_config_is_invalid_argument(tmp_path: Path, content: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(content)
    with pytest.raises(InvalidArgument, match=str(path)):
        CredentialStore(str(path)).get("reg")


def test_empty_file_and_null_auths(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("")
    store = CredentialStore(str(path))
    assert store.get("reg") is None
    path.write_text('{"auths": null}')
    store.store("reg", Credentials("u", "p"))
    assert store.get("reg") == Credentials("u", "p")


def test_symlinked_config_is_written_through(tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "config.json"
    real.parent.mkdir()
    real.write_text("{}")
    link = tmp_path / "config.json"
    link.symlink_to(real)
    CredentialStore(str(link)).store("reg", Credentials("u", "p"))
    assert link.is_symlink()
    assert "auths" in json.loads(real.read_text())


def test_unwritable_directory_is_a_system_failure(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    with pytest.raises(SystemFailure, match="write"):
        CredentialStore(str(ro / "config.json")).store("reg", Credentials("u", "p"))


def test_default_path_follows_docker_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", "/etc/somewhere")
    assert default_path() == "/etc/somewhere/config.json"
    monkeypatch.delenv("DOCKER_CONFIG")
    monkeypatch.setenv("HOME", "/home/u")
    assert default_path() == "/home/u/.docker/config.json"
    assert CredentialStore().path == "/home/u/.docker/config.json"


def test_credentials_repr_hides_the_password() -> None:
    assert "hunter2" not in repr(Credentials("u", "hunter2"))


def test_hostname_folds_keys() -> None:
    assert hostname("https://index.docker.io/v1/") == "docker.io"
    assert hostname("http://reg:5000/v2/") == "reg:5000"
    assert hostname("reg:5000") == "reg:5000"


def test_credentials_module_is_light_for_the_cli() -> None:
    """``pallet login`` imports it: no aiohttp (nor asyncio) may come along."""
    import subprocess
    import sys

    code = (
        "import sys, pallet.image.registry.credentials; "
        "print(sorted(m for m in ('aiohttp', 'asyncio', 'yarl') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
