"""docker pull/push/login/logout against palletd and real registries; docker-py; pallet CLI.

The registries are Debian's docker-registry on 127.0.0.1 (tests/support/registry.py);
credentials go to a private DOCKER_CONFIG, never to the user's ~/.docker. Images are
imported with a file of their own, so each test's layer is new to palletd and a pull
really downloads it.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import aiohttp
import docker
import pytest
from aiohttp import web

from pallet.image.manifest import host_platform
from pallet.image.registry import MEDIA_OCI_INDEX, RegistryClient
from tests.conftest import REPO
from tests.support.palletd import Palletd, palletd
from tests.support.proxy import ThreadedProxy
from tests.support.registry import (
    PASSWORD,
    USER,
    Registry,
    registry,
    registry_htpasswd,
    start_registry,
)
from tests.support.runtime import busybox_template

__all__ = ["palletd", "registry", "registry_htpasswd"]  # fixtures, used by name
pytestmark = pytest.mark.root

DIGEST_LINE = re.compile(r"^(\S+): digest: (sha256:[0-9a-f]{64}) size: (\d+)$", re.M)


@dataclass
class Clients:
    """The docker CLI, the pallet CLI and docker-py, all at one palletd and one config dir."""

    d: Palletd
    config: str

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.d.host, "DOCKER_CONFIG": self.config}

    def docker(self, *args: str, stdin: str | None = None,
               check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["docker", *args], env=self.env, input=stdin, text=True,
                              capture_output=True, timeout=60, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} exited {proc.returncode}\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc

    def pallet(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pallet.cli.main", *args], cwd=REPO,
                              env=self.env, input=stdin, text=True, capture_output=True,
                              timeout=60, check=False)

    def inspect(self, name: str) -> dict[str, object]:
        info: dict[str, object] = json.loads(self.docker("image", "inspect", name).stdout)[0]
        return info

    def image_ids(self) -> set[str]:
        return set(self.docker("images", "-a", "-q", "--no-trunc").stdout.split())

    def make_image(self, name: str) -> str:
        """``docker import`` of busybox plus a file no other image has: a new layer."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.add(busybox_template(), arcname=".")
            marker = uuid.uuid4().hex.encode()
            info = tarfile.TarInfo("pallet-test-marker")
            info.size = len(marker)
            tar.addfile(info, io.BytesIO(marker))
        out = subprocess.run(["docker", "import", "-", name], input=buf.getvalue(),
                             env=self.env, capture_output=True, check=True, timeout=60)
        return out.stdout.decode().strip()


@pytest.fixture(scope="module")
def config_dir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="pallet-test-dockercfg-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def clients(palletd: Palletd, config_dir: str) -> Iterator[Clients]:
    c = Clients(palletd, config_dir)
    before = c.image_ids()
    yield c
    for image_id in c.image_ids() - before:  # whatever the test left
        c.docker("rmi", "-f", image_id, check=False)
    with open(palletd.log) as f:
        assert "Traceback" not in f.read()  # a failed transfer is an answer, not a crash


def manifest(reg: Registry, repo: str, ref: str) -> tuple[str, dict[str, object]]:
    """(digest, document) of a manifest, straight from the registry."""
    req = urllib.request.Request(f"{reg.url}/v2/{repo}/manifests/{ref}", headers={
        "Accept": "application/vnd.oci.image.manifest.v1+json, "
                  "application/vnd.docker.distribution.manifest.v2+json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.headers["Docker-Content-Digest"], json.loads(resp.read())


# --- push and pull ---------------------------------------------------------------------


def test_push_then_pull_by_tag_and_by_digest(clients: Clients, registry: Registry) -> None:
    name = f"{registry.host}/pallet/bb"
    image_id = clients.make_image(f"{name}:1")

    pushed = clients.docker("push", f"{name}:1").stdout
    assert f"The push refers to repository [{name}]" in pushed
    assert "Pushed" in pushed
    found = DIGEST_LINE.search(pushed)
    assert found is not None, pushed
    tag, digest, _size = found.groups()
    assert tag == "1"
    on_registry, doc = manifest(registry, "pallet/bb", "1")
    assert on_registry == digest and doc["config"]["digest"] == image_id  # type: ignore[index]
    assert f"{name}@{digest}" in clients.inspect(f"{name}:1")["RepoDigests"]  # type: ignore[operator]
    assert "Layer already exists" in clients.docker("push", f"{name}:1").stdout

    clients.docker("rmi", f"{name}:1")
    assert image_id not in clients.image_ids()
    pulled = clients.docker("pull", f"{name}:1").stdout.splitlines()
    assert pulled[0] == "1: Pulling from pallet/bb"
    assert any(line.endswith(": Pull complete") for line in pulled), pulled
    assert pulled[-3:] == [f"Digest: {digest}", f"Status: Downloaded newer image for {name}:1",
                           f"{name}:1"]
    info = clients.inspect(f"{name}:1")
    assert info["Id"] == image_id
    assert info["RepoTags"] == [f"{name}:1"] and info["RepoDigests"] == [f"{name}@{digest}"]
    upper = info["GraphDriver"]["Data"]["UpperDir"]  # type: ignore[index]
    assert os.path.isfile(os.path.join(upper, "pallet-test-marker"))
    again = clients.docker("pull", f"{name}:1").stdout
    assert f"Status: Image is up to date for {name}:1" in again

    clients.docker("rmi", f"{name}:1")
    by_digest = clients.docker("pull", f"{name}@{digest}").stdout
    assert f"Status: Downloaded newer image for {name}@{digest}" in by_digest
    info = clients.inspect(f"{name}@{digest}")
    assert info["Id"] == image_id and info["RepoTags"] == []
    assert info["RepoDigests"] == [f"{name}@{digest}"]


def test_pull_all_tags(clients: Clients, registry: Registry) -> None:
    name = f"{registry.host}/pallet/alltags"
    image_id = clients.make_image(f"{name}:1")
    clients.docker("tag", f"{name}:1", f"{name}:2")
    clients.docker("push", "-a", name)
    clients.docker("rmi", f"{name}:1", f"{name}:2")
    out = clients.docker("pull", "-a", name).stdout
    assert "Status: Downloaded newer image" in out or "Status: Image is up to date" in out
    assert {clients.inspect(f"{name}:{t}")["Id"] for t in ("1", "2")} == {image_id}
    clients.docker("rmi", f"{name}:1", f"{name}:2")
    out = clients.pallet("pull", "-a", name)
    assert out.returncode == 0, out.stderr
    assert clients.inspect(f"{name}:2")["Id"] == image_id
    out = clients.pallet("pull", "-a", f"{name}:1")
    assert out.returncode == 1 and "tag can't be used with --all-tags" in out.stderr


def test_push_to_another_repository_mounts_the_layer(clients: Clients,
                                                     registry: Registry) -> None:
    first, second = f"{registry.host}/pallet/one", f"{registry.host}/pallet/two"
    clients.make_image(f"{first}:1")
    clients.docker("push", f"{first}:1")
    clients.docker("tag", f"{first}:1", f"{second}:1")
    assert "Mounted from pallet/one" in clients.docker("push", f"{second}:1").stdout


def test_pull_of_an_index_picks_this_platform(clients: Clients, registry: Registry) -> None:
    if host_platform().architecture != "amd64":
        pytest.skip("the index's entries are amd64 and arm64; this host is neither")
    repo = "pallet/multi"
    name = f"{registry.host}/{repo}"
    amd64 = clients.make_image(f"{name}:amd64")
    clients.docker("push", f"{name}:amd64")
    arm64, index = asyncio.run(_add_arm64_and_index(registry.host, repo))

    out = clients.docker("pull", f"{name}:multi").stdout
    assert f"Digest: {index}" in out
    info = clients.inspect(f"{name}:multi")
    assert info["Id"] == amd64 and info["Architecture"] == "amd64"
    assert f"{name}@{index}" in info["RepoDigests"]  # type: ignore[operator]

    clients.docker("pull", "--platform", "linux/arm64", f"{name}:multi")
    info = clients.inspect(f"{name}:multi")
    assert info["Id"] == arm64 and info["Architecture"] == "arm64"

    none = clients.docker("pull", "--platform", "linux/s390x", f"{name}:multi", check=False)
    assert none.returncode != 0
    assert "no matching manifest for linux/s390x in the manifest list entries" in none.stderr


async def _add_arm64_and_index(host: str, repo: str) -> tuple[str, str]:
    """An arm64 twin of tag "amd64" (same layers, another config) and tag "multi": an
    index listing arm64 first, so picking amd64 is a choice. Returns their digests."""
    async with aiohttp.ClientSession() as session:
        client = RegistryClient(session, None)
        media, body, amd_digest = await client.get_manifest(host, repo, "amd64")
        doc = json.loads(body)
        config = bytearray()
        await client.get_blob(host, repo, doc["config"]["digest"], config.extend)
        arm_config = json.dumps({**json.loads(config), "architecture": "arm64",
                                 "variant": "v8"}).encode()
        await client.push_blob(host, repo, _sha(arm_config), len(arm_config),
                               _once(arm_config))
        doc["config"] = {**doc["config"], "digest": _sha(arm_config), "size": len(arm_config)}
        arm = json.dumps(doc).encode()
        await client.put_manifest(host, repo, _sha(arm), media, arm)
        index = json.dumps({"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": [
            {"mediaType": media, "digest": _sha(arm), "size": len(arm),
             "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
            {"mediaType": media, "digest": amd_digest, "size": len(body),
             "platform": {"architecture": "amd64", "os": "linux"}},
        ]}).encode()
        await client.put_manifest(host, repo, "multi", MEDIA_OCI_INDEX, index)
        return _sha(arm_config), _sha(index)


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _tar(entries: list[tuple[str, bytes | None]]) -> bytes:
    """A layer tar: (name, content) files, None for a directory."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, content in entries:
            info = tarfile.TarInfo(path)
            info.mtime = 1_700_000_000
            if content is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(content), 0o644
                tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


async def _push_layers(host: str, repo: str, tars: list[bytes]) -> tuple[str, list[str]]:
    """A Docker schema 2 image of gzip ``tars`` under tag 1, written by pallet's own
    manifest writer: (manifest digest, layer blob digests)."""
    from pallet.image import manifest as mf
    from pallet.image.digest import Digest

    blobs = [gzip.compress(t, mtime=0) for t in tars]
    plat = host_platform()
    config = json.dumps({"architecture": plat.architecture, "os": "linux",
                         "config": {"Cmd": ["sh"]},
                         "rootfs": {"type": "layers", "diff_ids": [_sha(t) for t in tars]}
                         }).encode()
    doc = mf.Manifest(mf.DOCKER_MANIFEST,
                      mf.Descriptor(mf.DOCKER_CONFIG, Digest.parse(_sha(config)), len(config)),
                      [mf.Descriptor(mf.DOCKER_LAYER_GZIP, Digest.parse(_sha(b)), len(b))
                       for b in blobs])
    data = mf.to_json(doc)
    async with aiohttp.ClientSession() as session:
        client = RegistryClient(session, None)
        for blob in [*blobs, config]:
            await client.push_blob(host, repo, _sha(blob), len(blob), _once(blob))
        await client.put_manifest(host, repo, "1", mf.DOCKER_MANIFEST, data)
    return _sha(data), [_sha(b) for b in blobs]


def test_layers_pull_in_order_and_push_back_unchanged(clients: Clients,
                                                      registry: Registry) -> None:
    from pallet.storage.diff import diff_upper

    top = tempfile.mkdtemp(prefix="pallet-test-layer-")
    try:
        with open(os.path.join(top, "three"), "wb") as f:
            f.write(os.urandom(400_000))
        made_here = b"".join(diff_upper(top))  # as a build makes layers: reproducible
    finally:
        shutil.rmtree(top)
    tars = [_tar([("a", None), ("a/one", b"1"), ("gone", b"x")]),
            _tar([("a", None), ("a/two", b"2"), (".wh.gone", b"")]),
            made_here]
    repo = "pallet/layers"
    name = f"{registry.host}/{repo}:1"
    digest, blobs = asyncio.run(_push_layers(registry.host, repo, tars))

    out = clients.docker("pull", name).stdout
    assert out.count(": Pull complete") == 3, out
    info = clients.inspect(name)
    assert info["RootFS"]["Layers"] == [_sha(t) for t in tars]  # type: ignore[index]
    dirs = info["GraphDriver"]["Data"]  # type: ignore[index]
    lower = dirs["LowerDir"].split(":")
    assert os.path.isfile(os.path.join(dirs["UpperDir"], "three"))
    assert os.path.isfile(os.path.join(lower[0], "a", "two"))
    assert stat.S_ISCHR(os.lstat(os.path.join(lower[0], "gone")).st_mode)  # a whiteout
    assert os.path.isfile(os.path.join(lower[1], "a", "one"))

    # The same blobs, the same manifest bytes: the digest survives the round trip.
    copy = f"{registry.host}/pallet/copy:1"
    clients.docker("tag", name, copy)
    pushed = clients.docker("push", copy).stdout
    assert pushed.count("Mounted from pallet/layers") == 3, pushed
    assert f"1: digest: {digest} " in pushed

    # A layer whose blob is gone is pushed from its directory, as a build's would be.
    os.unlink(os.path.join(clients.d.data_root, "blobs", "sha256", blobs[2].partition(":")[2]))
    other = start_registry("none")
    try:
        elsewhere = f"{other.host}/pallet/rebuilt:1"
        clients.docker("tag", name, elsewhere)
        pushed = clients.docker("push", elsewhere).stdout
        assert pushed.count(": Pushed") == 3, pushed
        _, doc = manifest(other, "pallet/rebuilt", "1")
        rebuilt = doc["layers"][2]["digest"]  # type: ignore[index]
        assert rebuilt != blobs[2]
        assert os.path.exists(os.path.join(clients.d.data_root, "blobs", "sha256",
                                           rebuilt.partition(":")[2]))
        clients.docker("rmi", copy, elsewhere)
        again = clients.docker("pull", elsewhere).stdout
        assert "Status: Downloaded newer image" in again  # a new manifest, the same image
        assert clients.inspect(elsewhere)["Id"] == info["Id"]
    finally:
        other.stop()


def test_pull_of_an_unknown_tag_is_manifest_unknown(clients: Clients,
                                                    registry: Registry) -> None:
    name = f"{registry.host}/pallet/none"
    before = clients.image_ids()
    out = clients.docker("pull", f"{name}:nope", check=False)
    assert out.returncode == 1
    assert (f"Error response from daemon: manifest for {name}:nope not found: "
            "manifest unknown") in out.stderr
    api = docker.DockerClient(base_url=clients.d.host)
    with pytest.raises(docker.errors.NotFound, match="manifest unknown"):
        api.images.pull(name, tag="nope")
    assert clients.image_ids() == before


# --- authentication --------------------------------------------------------------------


def test_login_push_logout_with_basic_auth(clients: Clients,
                                           registry_htpasswd: Registry) -> None:
    reg = registry_htpasswd
    name = f"{reg.host}/pallet/private"
    clients.make_image(f"{name}:1")

    denied = clients.docker("push", f"{name}:1", check=False)
    assert denied.returncode != 0 and "unauthorized" in denied.stdout + denied.stderr
    wrong = clients.docker("login", "-u", USER, "--password-stdin", reg.host,
                           stdin="not-it\n", check=False)
    assert wrong.returncode == 1 and "401 Unauthorized" in wrong.stderr
    login = clients.docker("login", "-u", USER, "--password-stdin", reg.host,
                           stdin=PASSWORD + "\n")
    assert "Login Succeeded" in login.stdout
    with open(os.path.join(clients.config, "config.json")) as f:
        assert reg.host in json.load(f)["auths"]

    assert DIGEST_LINE.search(clients.docker("push", f"{name}:1").stdout)
    clients.docker("rmi", f"{name}:1")
    assert "Pull complete" in clients.docker("pull", f"{name}:1").stdout

    # a build's FROM pulls with the logins the CLI sends along (X-Registry-Config)
    clients.docker("rmi", f"{name}:1")
    with tempfile.TemporaryDirectory() as ctx:
        with open(os.path.join(ctx, "Dockerfile"), "w") as f:
            f.write(f"FROM {name}:1\nRUN echo built > /built\n")
        out = clients.docker("build", "-t", "pallet/built-on-private:1", ctx).stdout
        assert "Successfully tagged pallet/built-on-private:1" in out, out
    clients.docker("rmi", "pallet/built-on-private:1")

    out = clients.docker("logout", reg.host).stdout
    assert f"Removing login credentials for {reg.host}" in out
    clients.docker("rmi", f"{name}:1")
    anonymous = clients.docker("pull", f"{name}:1", check=False)
    assert anonymous.returncode == 1 and "unauthorized" in anonymous.stderr
    assert f"pull access denied for {name}, repository does not exist or may require " \
        "'docker login'" in anonymous.stderr  # a 404, as dockerd answers
    status, _, _ = clients.d.request("POST", f"/images/create?fromImage={name}&tag=1")
    assert status == 404


def test_docker_py_login_push_pull(clients: Clients, registry_htpasswd: Registry,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", clients.config)
    reg = registry_htpasswd
    name = f"{reg.host}/pallet/py"
    image_id = clients.make_image(f"{name}:2")
    api = docker.DockerClient(base_url=clients.d.host)
    with pytest.raises(docker.errors.APIError, match="401 Unauthorized"):
        api.login(username=USER, password="not-it", registry=reg.host, reauth=True)
    assert api.login(username=USER, password=PASSWORD, registry=reg.host,
                     reauth=True)["Status"] == "Login Succeeded"
    messages = list(api.images.push(name, tag="2", stream=True, decode=True))
    assert not [m for m in messages if "error" in m], messages
    aux = [m["aux"] for m in messages if "aux" in m]
    assert aux and aux[0]["Tag"] == "2" and aux[0]["Digest"].startswith("sha256:")
    api.images.remove(f"{name}:2")
    assert api.images.pull(name, tag="2").id == image_id


def test_pallet_cli_login_push_pull_logout(clients: Clients,
                                           registry_htpasswd: Registry) -> None:
    reg = registry_htpasswd
    name = f"{reg.host}/pallet/cli"
    image_id = clients.make_image(f"{name}:3")
    login = clients.pallet("login", "-u", USER, "--password-stdin", reg.host,
                           stdin=PASSWORD + "\n")
    assert login.returncode == 0 and login.stdout == "Login Succeeded\n", login.stderr
    pushed = clients.pallet("push", f"{name}:3")
    assert pushed.returncode == 0, pushed.stderr
    assert f"The push refers to repository [{name}]" in pushed.stdout
    assert DIGEST_LINE.search(pushed.stdout) and ": Pushed\n" in pushed.stdout
    assert clients.pallet("rmi", f"{name}:3").returncode == 0
    quiet = clients.pallet("pull", "-q", f"{name}:3")
    assert (quiet.returncode, quiet.stdout) == (0, f"{name}:3\n"), quiet.stderr
    assert clients.inspect(f"{name}:3")["Id"] == image_id
    again = clients.pallet("pull", f"{name}:3").stdout
    assert f"Status: Image is up to date for {name}:3" in again
    assert clients.pallet("pull", f"{name}:nope").stderr.startswith(
        f"Error response from daemon: manifest for {name}:nope not found")
    out = clients.pallet("logout", reg.host).stdout
    assert out == f"Removing login credentials for {reg.host}\n"
    assert clients.pallet("logout", reg.host).stdout == f"Not logged in to {reg.host}\n"


# --- failures: a lying registry, a cut connection --------------------------------------


def test_corrupted_blob_fails_the_pull_and_leaves_nothing(clients: Clients,
                                                          registry: Registry) -> None:
    repo = "pallet/corrupt"
    name = f"{registry.host}/{repo}"
    clients.make_image(f"{name}:1")
    clients.docker("push", f"{name}:1")
    _, doc = manifest(registry, repo, "1")
    layer = doc["layers"][0]["digest"]  # type: ignore[index]
    hexpart = layer.partition(":")[2]
    data = os.path.join(registry.dir, "data", "docker", "registry", "v2", "blobs", "sha256",
                        hexpart[:2], hexpart, "data")
    size = os.path.getsize(data)
    with open(data, "wb") as f:
        f.write(os.urandom(size))  # the same length: only the digest can tell
    clients.docker("rmi", f"{name}:1")
    before = clients.image_ids()

    out = clients.docker("pull", f"{name}:1", check=False)
    assert out.returncode == 1
    assert f"filesystem layer verification failed for digest {layer}" in out.stderr
    assert "digest mismatch" in out.stderr
    assert clients.image_ids() == before
    assert "No such image" in clients.docker("image", "inspect", f"{name}:1",
                                             check=False).stderr
    data_root = clients.d.data_root
    assert not os.path.exists(os.path.join(data_root, "blobs", "sha256", hexpart))
    assert not os.path.exists(os.path.join(data_root, "ingest", hexpart))


@dataclass
class CuttingProxy(ThreadedProxy):
    """A registry's front that cuts the first GET of one blob half way and refuses the
    second (so the pull fails), then forwards faithfully. ``ranges`` records each GET of
    that blob's Range header."""

    upstream: str
    blob: str
    ranges: list[str | None] = field(default_factory=list)
    sent: int = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        attempt = -1
        if request.path.endswith(f"/blobs/{self.blob}"):
            attempt = len(self.ranges)
            self.ranges.append(request.headers.get("Range"))
            if attempt == 1:
                return web.json_response({"errors": [{"code": "BLOB_UNKNOWN",
                                                      "message": "blob unknown to registry"}]},
                                         status=404)
        status, body, keep = await self.fetch(self.upstream, request)
        if attempt != 0:
            return web.Response(status=status, body=body, headers=keep)
        resp = web.StreamResponse(status=status, headers=keep)
        resp.content_length = len(body)
        await resp.prepare(request)
        self.sent = len(body) // 2
        await resp.write(body[:self.sent])
        await asyncio.sleep(0.2)  # let the half reach the client, then hang up
        assert request.transport is not None
        request.transport.close()
        return resp


def test_interrupted_pull_resumes_from_its_partial(clients: Clients,
                                                   registry: Registry) -> None:
    repo = "pallet/resume"
    image_id = clients.make_image(f"{registry.host}/{repo}:1")
    clients.docker("push", f"{registry.host}/{repo}:1")
    _, doc = manifest(registry, repo, "1")
    layer = doc["layers"][0]["digest"]  # type: ignore[index]
    clients.docker("rmi", f"{registry.host}/{repo}:1")
    proxy = CuttingProxy(registry.url, layer)
    proxy.start()
    try:
        name = f"127.0.0.1:{proxy.port}/{repo}:1"
        first = clients.docker("pull", name, check=False)
        assert first.returncode == 1 and "blob unknown" in first.stderr
        # the retry inside that pull asked for the rest; so does the next pull
        assert proxy.ranges[0] is None and proxy.ranges[1] is not None
        held = int(proxy.ranges[1].removeprefix("bytes=").removesuffix("-"))
        assert 0 < held <= proxy.sent
        second = clients.docker("pull", name)
        assert "Pull complete" in second.stdout
        assert proxy.ranges[2:] == [f"bytes={held}-"]
        assert clients.inspect(name)["Id"] == image_id
    finally:
        proxy.stop()
