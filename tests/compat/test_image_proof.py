"""Issue 3's remaining proofs: skopeo reads what palletd pushes (same digests), token
auth end to end through palletd, and bad input answered with the right status."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

import pytest

from tests.compat.test_pull_push import Clients, manifest
from tests.support.palletd import Palletd, palletd  # noqa: F401 - the fixture
from tests.support.registry import Registry, registry, registry_token  # noqa: F401

pytestmark = pytest.mark.root


@pytest.fixture
def clients(palletd: Palletd) -> Iterator[Clients]:  # noqa: F811
    cfg = tempfile.mkdtemp(prefix="pallet-test-dockercfg-")
    c = Clients(palletd, cfg)
    before = c.image_ids()
    yield c
    for image_id in c.image_ids() - before:
        c.docker("rmi", "-f", image_id, check=False)
    shutil.rmtree(cfg, ignore_errors=True)


def test_skopeo_pulls_what_palletd_pushed_with_the_same_digests(
        clients: Clients, registry: Registry) -> None:  # noqa: F811
    name = f"{registry.host}/pallet/skopeo"
    image_id = clients.make_image(f"{name}:1")
    clients.docker("push", f"{name}:1")
    digest, doc = manifest(registry, "pallet/skopeo", "1")
    out = tempfile.mkdtemp(prefix="pallet-test-skopeo-")
    try:
        subprocess.run(["skopeo", "copy", "--src-tls-verify=false", f"docker://{name}:1",
                        f"dir:{out}"], check=True, capture_output=True, timeout=120)
        with open(os.path.join(out, "manifest.json"), "rb") as f:
            raw = f.read()
        import hashlib

        assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest  # byte for byte
        assert json.loads(raw)["config"]["digest"] == image_id == doc["config"]["digest"]  # type: ignore[index]
        for layer in json.loads(raw)["layers"]:
            blob = os.path.join(out, layer["digest"].split(":")[1])
            with open(blob, "rb") as f:
                assert "sha256:" + hashlib.sha256(f.read()).hexdigest() == layer["digest"]
    finally:
        shutil.rmtree(out)


def test_token_auth_end_to_end(clients: Clients, registry_token: Registry) -> None:  # noqa: F811
    reg = registry_token
    name = f"{reg.host}/pallet/tok"
    clients.make_image(f"{name}:1")
    denied = clients.docker("push", f"{name}:1", check=False)
    assert denied.returncode != 0 and "unauthorized" in (denied.stdout + denied.stderr).lower()
    clients.docker("login", "-u", reg.username, "--password-stdin", reg.host,
                   stdin=reg.password)
    # The token server handed palletd a refresh token at login: the docker CLI keeps that
    # identity token instead of the password, and every later token is asked for with it.
    with open(os.path.join(clients.config, "config.json")) as f:
        entry = json.load(f)["auths"][reg.host]
    assert entry["identitytoken"] and "password" not in entry
    assert base64.b64decode(entry["auth"]).decode() == f"{reg.username}:"
    server = reg.token_server
    assert server is not None
    server.requests.clear()
    assert "Pushed" in clients.docker("push", f"{name}:1").stdout
    clients.docker("rmi", f"{name}:1")
    assert "Pull complete" in clients.docker("pull", f"{name}:1").stdout
    asked = {who for who, _ in server.requests}
    assert asked == {f"refresh:{reg.username}"}, server.requests
    # the pallet CLI reads that entry the same way, and stores one itself at its login
    clients.docker("rmi", f"{name}:1")
    assert clients.pallet("pull", f"{name}:1").returncode == 0
    clients.docker("logout", reg.host)
    out = clients.pallet("login", "-u", reg.username, "--password-stdin", reg.host,
                         stdin=reg.password)
    assert out.returncode == 0, out.stderr
    with open(os.path.join(clients.config, "config.json")) as f:
        assert json.load(f)["auths"][reg.host]["identitytoken"]
    server.refresh_tokens.clear()  # revoked: the stored identity token opens nothing now
    server.requests.clear()
    clients.docker("rmi", f"{name}:1")
    denied = clients.docker("pull", f"{name}:1", check=False)
    assert denied.returncode != 0
    clients.docker("logout", reg.host)


@pytest.mark.parametrize("ref, message", [
    ("Bad/Name:1", "invalid reference format"),
    ("busybox:in valid", "invalid reference format"),
    ("a" * 300, "invalid reference format"),
])
def test_malformed_references(clients: Clients, ref: str, message: str) -> None:
    from urllib.parse import quote

    before = clients.image_ids()
    assert clients.docker("pull", ref, check=False).returncode != 0  # (the CLI checks too)
    status, _, body = clients.d.request("POST", f"/images/create?fromImage={quote(ref)}")
    assert status == 400 and message in json.loads(body)["message"]
    assert clients.image_ids() == before


def test_bodies_of_the_wrong_shape(clients: Clients) -> None:
    for path, body in (("/auth", b"not json"), ("/auth", b"[1, 2]"),
                       ("/images/load", b"not a tar")):
        status, headers, answer = clients.d.request("POST", path, body=body)
        assert status == 400, (path, status, answer)
        assert headers["Content-Type"] == "application/json"
        assert json.loads(answer)["message"]
    status, _, _ = clients.d.request("POST", "/images/nosuch/tag?repo=x")
    assert status == 404
    status, _, answer = clients.d.request("GET", "/images/json?filters=notjson")
    assert status == 400
