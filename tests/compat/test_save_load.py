"""docker save / docker load against palletd: round trips, a real dockerd 20.10 both
ways, skopeo, bad archives (with the store checked after each), and the pallet CLI."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pty
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.conftest import REPO
from tests.support.dockerd import Dockerd, private_dockerd
from tests.support.palletd import Palletd, palletd  # noqa: F401 - the fixture
from tests.support.runtime import busybox_template

pytestmark = pytest.mark.root


# --- helpers ----------------------------------------------------------------------------------

def busybox_tar() -> bytes:
    return subprocess.run(["tar", "-C", busybox_template(), "-c", "."], capture_output=True,
                          check=True).stdout


def unique_tar(size: int = 0) -> bytes:
    """A one-file rootfs no other image has: its layer is new to the store."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        data = uuid.uuid4().hex.encode() + os.urandom(size)
        info = tarfile.TarInfo("id")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def docker_import(env: dict[str, str], tar: bytes, name: str, *changes: str) -> str:
    args = ["docker", "import"]
    for c in changes:
        args += ["-c", c]
    out = subprocess.run([*args, "-", name], input=tar, env=env, capture_output=True,
                         check=True, timeout=60)
    return out.stdout.decode().strip()


def image_id(d: Palletd, name: str) -> str:
    return d.docker("image", "inspect", "-f", "{{.Id}}", name).stdout.strip()


def store_state(d: Palletd) -> tuple[list[str], list[str]]:
    """What a user sees (every image with its names) and the unpacked layers on disk."""
    images = d.docker("images", "-a", "--no-trunc", "--format",
                      "{{.Repository}}:{{.Tag}} {{.ID}}").stdout.splitlines()
    layers = [n for n in os.listdir(os.path.join(d.data_root, "layers"))
              if not n.startswith("tmp-")]
    return sorted(images), sorted(layers)


def manifest_of(path: Path) -> list[dict[str, object]]:
    with tarfile.open(path) as tf:
        f = tf.extractfile("manifest.json")
        assert f is not None
        doc: list[dict[str, object]] = json.loads(f.read())
        return doc


def rewrite(src: Path, dst: Path, change: dict[str, bytes]) -> None:
    """Copy a tar, replacing the content of the members named in ``change``."""
    with tarfile.open(src) as tin, tarfile.open(dst, "w") as tout:
        for m in tin.getmembers():
            data = tin.extractfile(m).read() if m.isfile() else None  # type: ignore[union-attr]
            if m.name in change:
                data = change[m.name]
                m.size = len(data)
            tout.addfile(m, io.BytesIO(data) if data is not None else None)


def pallet(d: Palletd, *args: str,
           stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "pallet.cli.main", *args], cwd=REPO,
                          env={**os.environ, "DOCKER_HOST": d.host}, input=stdin,
                          capture_output=True, timeout=60, check=False)


def pallet_on_a_terminal(d: Palletd, stream: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    """The pallet CLI with its stdout (or stdin) a pseudo-terminal, as a user's shell has."""
    primary, secondary = pty.openpty()
    try:
        where = ({"stdout": secondary} if stream == "stdout"
                 else {"stdin": secondary, "stdout": subprocess.PIPE})
        return subprocess.run([sys.executable, "-m", "pallet.cli.main", *args], cwd=REPO,
                              env={**os.environ, "DOCKER_HOST": d.host}, stderr=subprocess.PIPE,
                              timeout=60, check=False, **where)  # type: ignore[call-overload]
    finally:
        os.close(primary)
        os.close(secondary)


def rmi(d: Palletd, *names: str) -> None:
    d.docker("rmi", "-f", *names, check=False)


# --- a private dockerd 20.10 (no containers: no runtime, bridge or firewall rules) -----------

@pytest.fixture(scope="module")
def dockerd() -> Iterator[Dockerd]:
    with private_dockerd() as d:
        yield d


# --- tests --------------------------------------------------------------------------------------

def test_round_trip_of_a_bootstrapped_image(palletd: Palletd, tmp_path: Path) -> None:  # noqa: F811
    name = "busybox:pallet-test-save"
    status, _, body = palletd.request("POST", "/images/bootstrap?fromImage=busybox"
                                              "&tag=pallet-test-save")
    assert status == 200, body
    made = json.loads(body)["status"]
    since = str(int(time.time()) - 1)
    try:
        tar = tmp_path / "busybox.tar"
        palletd.docker("save", "-o", str(tar), name)
        assert manifest_of(tar)[0]["RepoTags"] == [name]
        assert palletd.docker("rmi", name).stdout.splitlines()[-1].startswith("Deleted: ")
        out = palletd.docker("load", "-i", str(tar))
        assert out.stdout == f"Loaded image: {name}\n"
        info = json.loads(palletd.docker("image", "inspect", name).stdout)[0]
        assert info["Id"] == made and info["RepoTags"] == [name]
        upper = info["GraphDriver"]["Data"]["UpperDir"]
        assert os.path.isfile(os.path.join(upper, "bin", "busybox"))
        # loading what is there already changes nothing and says so the same way
        assert palletd.docker("load", "-i", str(tar)).stdout == f"Loaded image: {name}\n"
        events = palletd.docker("events", "--since", since, "--until", str(int(time.time()) + 1),
                                "--filter", "type=image", "--format", "{{.Action}}").stdout
        assert {"save", "load", "tag"} <= set(events.split())
    finally:
        rmi(palletd, name)


def test_two_images_in_one_archive(palletd: Palletd, tmp_path: Path) -> None:  # noqa: F811
    a = docker_import(palletd.env, busybox_tar(), "pallet-test/two:a", 'CMD ["sh"]')
    b = docker_import(palletd.env, unique_tar(), "pallet-test/two:b")
    palletd.docker("tag", a, "pallet-test/other:1")
    try:
        tar = tmp_path / "two.tar"
        with open(tar, "wb") as f:  # to stdout, as `docker save a b > two.tar`
            subprocess.run(["docker", "save", "pallet-test/two:a", "pallet-test/two:b"],
                           stdout=f, env=palletd.env, check=True, timeout=60)
        assert [m["RepoTags"] for m in manifest_of(tar)] == [["pallet-test/two:a"],
                                                            ["pallet-test/two:b"]]
        # a bare repository name saves every tag of it, and only of it
        whole = tmp_path / "repo.tar"
        palletd.docker("save", "-o", str(whole), "pallet-test/two")
        assert sorted(t for m in manifest_of(whole)
                      for t in m["RepoTags"]) == ["pallet-test/two:a",  # type: ignore[attr-defined]
                                                  "pallet-test/two:b"]
        rmi(palletd, "pallet-test/two:a", "pallet-test/two:b", "pallet-test/other:1")
        assert palletd.docker("load", "-i", str(tar)).stdout.splitlines() == [
            "Loaded image: pallet-test/two:a", "Loaded image: pallet-test/two:b"]
        assert image_id(palletd, "pallet-test/two:a") == a
        assert image_id(palletd, "pallet-test/two:b") == b
        upper = palletd.docker("image", "inspect", "-f", "{{.GraphDriver.Data.UpperDir}}",
                               "pallet-test/two:b").stdout.strip()
        assert os.listdir(upper) == ["id"]
    finally:
        rmi(palletd, "pallet-test/two:a", "pallet-test/two:b", "pallet-test/other:1")


def test_docker_py_save_and_load(palletd: Palletd) -> None:  # noqa: F811
    made = docker_import(palletd.env, unique_tar(), "pallet-test/py:1")
    client = docker.DockerClient(base_url=palletd.host, version="auto")
    try:
        img = client.images.get("pallet-test/py:1")
        named = b"".join(img.save(named=True))  # GET /images/pallet-test/py:1/get
        bare = b"".join(img.save(named=False))  # GET /images/<id>/get: saved with no name
        client.images.remove(made)
        [loaded] = client.images.load(bare)
        assert loaded.id == made and loaded.tags == []
        [loaded] = client.images.load(named)
        assert loaded.id == made and loaded.tags == ["pallet-test/py:1"]
    finally:
        client.close()
        rmi(palletd, made)


def test_load_moves_a_name_as_docker_does(palletd: Palletd, tmp_path: Path) -> None:  # noqa: F811
    first = docker_import(palletd.env, unique_tar(), "pallet-test/moved:1")
    tar = tmp_path / "first.tar"
    palletd.docker("save", "-o", str(tar), "pallet-test/moved:1")
    second = docker_import(palletd.env, unique_tar(), "pallet-test/moved:1")
    try:
        out = palletd.docker("load", "-i", str(tar)).stdout
        assert out == (f"The image pallet-test/moved:1 already exists, renaming the old one "
                       f"with ID {second} to empty string\nLoaded image: pallet-test/moved:1\n")
        assert image_id(palletd, "pallet-test/moved:1") == first
        dangling = palletd.docker("images", "-q", "--no-trunc", "--filter",
                                  "dangling=true").stdout.split()
        assert second in dangling
    finally:
        rmi(palletd, first, second)


def test_dockerd_interop(palletd: Palletd, dockerd: Dockerd,  # noqa: F811
                         tmp_path: Path) -> None:
    # dockerd 20.10's archive (<config>.json, <v1 id>/layer.tar) into palletd
    theirs = docker_import(dockerd.env, busybox_tar(), "pallet-test/from-dockerd:1",
                           'CMD ["sh"]')
    tar = tmp_path / "dockerd.tar"
    dockerd("save", "-o", str(tar), "pallet-test/from-dockerd:1")
    ours = docker_import(palletd.env, unique_tar(), "pallet-test/from-pallet:1", "ENV A=b")
    try:
        assert palletd.docker("load", "-i", str(tar)).stdout == (
            "Loaded image: pallet-test/from-dockerd:1\n")
        assert image_id(palletd, "pallet-test/from-dockerd:1") == theirs
        upper = palletd.docker("image", "inspect", "-f", "{{.GraphDriver.Data.UpperDir}}",
                               theirs).stdout.strip()
        assert os.path.isfile(os.path.join(upper, "bin", "busybox"))
        # palletd's archive (docker 25's layout) into dockerd 20.10
        mine = tmp_path / "pallet.tar"
        palletd.docker("save", "-o", str(mine), "pallet-test/from-pallet:1")
        assert dockerd("load", "-i", str(mine)).stdout == (
            "Loaded image: pallet-test/from-pallet:1\n")
        info = json.loads(dockerd("image", "inspect", "pallet-test/from-pallet:1").stdout)[0]
        assert info["Id"] == ours and info["Config"]["Env"] == ["A=b"]
    finally:
        rmi(palletd, theirs, ours)


def test_skopeo_reads_what_pallet_saves(palletd: Palletd, tmp_path: Path) -> None:  # noqa: F811
    made = [docker_import(palletd.env, unique_tar(), "pallet-test/skopeo:1")]
    try:
        tar = tmp_path / "pallet.tar"
        palletd.docker("save", "-o", str(tar), "pallet-test/skopeo:1")
        layout = tmp_path / "oci"
        subprocess.run(["skopeo", "--insecure-policy", "copy", f"docker-archive:{tar}",
                        f"oci:{layout}:latest"], check=True, capture_output=True, timeout=60)
        index = json.loads((layout / "index.json").read_text())
        [entry] = index["manifests"]
        assert entry["annotations"] == {"org.opencontainers.image.ref.name": "latest"}
        blobs = layout / "blobs" / "sha256"
        manifest = json.loads((blobs / entry["digest"].split(":")[1]).read_text())
        config_digest = manifest["config"]["digest"]
        config = json.loads((blobs / config_digest.split(":")[1]).read_text())
        diff_ids = palletd.docker("image", "inspect", "-f", "{{json .RootFS.Layers}}",
                                  made[0]).stdout
        assert config["rootfs"]["diff_ids"] == json.loads(diff_ids)
        # An OCI layout tar named only by a bare ref.name ("latest") loads untagged, as
        # docker 25 loads it: the name says no repository.
        oci_tar = tmp_path / "oci.tar"
        with tarfile.open(oci_tar, "w") as tf:
            for p in sorted(layout.rglob("*")):
                tf.add(p, str(p.relative_to(layout)), recursive=False)
        made.append(config_digest)
        out = palletd.docker("load", "-i", str(oci_tar)).stdout
        assert out == f"Loaded image ID: {config_digest}\n"
        assert palletd.docker("image", "inspect", "-f", "{{json .RepoTags}}",
                              config_digest).stdout.strip() == "[]"
    finally:
        rmi(palletd, *made)


def test_bad_archives_change_nothing(palletd: Palletd, tmp_path: Path) -> None:  # noqa: F811
    made = docker_import(palletd.env, unique_tar(), "pallet-test/bad:1")
    try:
        good = tmp_path / "good.tar"
        palletd.docker("save", "-o", str(good), "pallet-test/bad:1")
        rmi(palletd, made)
        before = store_state(palletd)

        # a body that is no tar: 400 with the reason, and the CLI says it
        status, headers, body = palletd.request("POST", "/images/load?quiet=1", b"not a tar\n")
        assert status == 400 and headers["Content-Type"] == "application/json"
        assert "archive is not a valid tar" in json.loads(body)["message"]
        bad = tmp_path / "bad.tar"
        bad.write_bytes(b"not a tar\n")
        out = palletd.docker("load", "-i", str(bad), check=False)
        assert out.returncode == 1 and "archive is not a valid tar" in out.stderr

        # a layer whose bytes are not the digest its name claims
        [item] = manifest_of(good)
        layer = str(item["Layers"][0])  # type: ignore[index]
        with tarfile.open(good) as tf:
            data = bytearray(tf.extractfile(layer).read())  # type: ignore[union-attr]
        data[520] ^= 0xFF  # in the one file's content: still a tar, another digest
        tampered = tmp_path / "tampered.tar"
        rewrite(good, tampered, {layer: bytes(data)})
        out = palletd.docker("load", "-i", str(tampered), check=False)
        assert out.returncode == 1 and "digest mismatch" in out.stderr, out.stderr

        # cut short half way
        cut = tmp_path / "cut.tar"
        cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
        out = palletd.docker("load", "-i", str(cut), check=False)
        assert out.returncode == 1 and "unexpected end of data" in out.stderr, out.stderr

        # layers that verify but cannot be unpacked: the first is made, then dropped again
        hostile = tmp_path / "hostile.tar"
        hostile.write_bytes(_hostile_archive())
        out = palletd.docker("load", "-i", str(hostile), check=False)
        assert out.returncode == 1 and "'../escape' contains '..'" in out.stderr, out.stderr

        assert store_state(palletd) == before
        # and the good archive still loads
        out = palletd.docker("load", "-i", str(good))
        assert out.stdout == "Loaded image: pallet-test/bad:1\n"
    finally:
        rmi(palletd, made)

    missing = palletd.docker("save", "-o", str(tmp_path / "x.tar"), "pallet-test/nosuch",
                             check=False)
    assert missing.returncode == 1 and "No such image: pallet-test/nosuch" in missing.stderr
    assert not (tmp_path / "x.tar").exists()


def _hostile_archive() -> bytes:
    """A docker 20.10-style archive by hand: a fresh layer, then one with ``../`` in it."""
    def layer(name: str, data: bytes) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    layers = [layer("fresh", uuid.uuid4().hex.encode()),
              layer("../escape", b"x")]
    diff_ids = ["sha256:" + hashlib.sha256(x).hexdigest() for x in layers]
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    files = {config_name: config,
             "manifest.json": json.dumps([{"Config": config_name,
                                           "RepoTags": ["pallet-test/hostile:1"],
                                           "Layers": ["l0/layer.tar", "l1/layer.tar"]}]).encode(),
             "l0/layer.tar": layers[0], "l1/layer.tar": layers[1]}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_a_blob_rotten_in_the_store_fails_the_save(palletd: Palletd,  # noqa: F811
                                                    tmp_path: Path) -> None:
    small = docker_import(palletd.env, unique_tar(), "pallet-test/rot:small")
    big = docker_import(palletd.env, unique_tar(3 << 20), "pallet-test/rot:big")
    blobs = []
    for image in (small, big):
        layer = palletd.docker("image", "inspect", "-f", "{{index .RootFS.Layers 0}}",
                               image).stdout.strip()
        path = Path(palletd.data_root, "blobs", "sha256", layer.split(":")[1])
        blobs.append((path, path.read_bytes()))
    try:
        for path, data in blobs:
            path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
        # found before the first chunk went out: a plain error
        out = palletd.docker("save", "-o", str(tmp_path / "small.tar"), "pallet-test/rot:small",
                             check=False)
        assert out.returncode == 1 and "in the store is corrupt" in out.stderr, out.stderr
        # found half way: the stream is cut, and the client knows it has no archive
        out = palletd.docker("save", "-o", str(tmp_path / "big.tar"), "pallet-test/rot:big",
                             check=False)
        assert out.returncode == 1 and "unexpected EOF" in out.stderr, out.stderr
        assert palletd.docker("images", "-q").returncode == 0  # palletd stays up and well
    finally:
        for path, data in blobs:
            path.write_bytes(data)
        rmi(palletd, small, big)


def test_pallet_cli_save_and_load(palletd: Palletd, tmp_path: Path) -> None:  # noqa: F811
    made = docker_import(palletd.env, unique_tar(), "pallet-test/cli-save:1")
    try:
        tar = tmp_path / "cli.tar"
        out = pallet(palletd, "save", "-o", str(tar), "pallet-test/cli-save:1")
        assert out.returncode == 0 and out.stdout == b"", out.stderr
        assert manifest_of(tar)[0]["RepoTags"] == ["pallet-test/cli-save:1"]
        streamed = pallet(palletd, "image", "save", "pallet-test/cli-save:1")
        assert streamed.returncode == 0 and streamed.stdout == tar.read_bytes()
        rmi(palletd, made)
        out = pallet(palletd, "load", "-i", str(tar))
        assert (out.returncode, out.stdout) == (0, b"Loaded image: pallet-test/cli-save:1\n")
        rmi(palletd, made)
        out = pallet(palletd, "load", "-q", stdin=streamed.stdout)
        assert (out.returncode, out.stdout) == (0, b"Loaded image: pallet-test/cli-save:1\n")
        assert image_id(palletd, "pallet-test/cli-save:1") == made

        # docker's refusals: a tar onto a terminal, a load from one
        out = pallet_on_a_terminal(palletd, "stdout", "save", "pallet-test/cli-save:1")
        assert out.returncode == 1
        assert out.stderr == (b"cowardly refusing to save to a terminal. Use the -o flag "
                              b"or redirect\n")
        out = pallet_on_a_terminal(palletd, "stdin", "load")
        assert out.returncode == 1
        assert out.stderr == b"requested load from stdin, but stdin is empty\n"

        bad = pallet(palletd, "load", stdin=b"not a tar")
        assert bad.returncode == 1 and b"archive is not a valid tar" in bad.stderr
        missing = pallet(palletd, "save", "-o", str(tmp_path / "no" / "x.tar"), made)
        assert missing.returncode == 1 and b"invalid output path" in missing.stderr
    finally:
        rmi(palletd, made)


def test_pallet_cli_knows_a_cut_save(palletd: Palletd, tmp_path: Path) -> None:  # noqa: F811
    made = docker_import(palletd.env, unique_tar(3 << 20), "pallet-test/cut:1")
    layer = palletd.docker("image", "inspect", "-f", "{{index .RootFS.Layers 0}}",
                           made).stdout.strip()
    blob = Path(palletd.data_root, "blobs", "sha256", layer.split(":")[1])
    data = blob.read_bytes()
    try:
        blob.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
        out = pallet(palletd, "save", "-o", str(tmp_path / "cut.tar"), "pallet-test/cut:1")
        assert out.returncode == 1 and not (tmp_path / "cut.tar").exists()
    finally:
        blob.write_bytes(data)
        rmi(palletd, made)


def test_oci_layout_directories(palletd: Palletd, tmp_path: Path) -> None:  # noqa: F811
    """`save --format oci-dir` writes a layout skopeo reads by the image's name, and
    `load -i DIR` takes a layout directory skopeo wrote."""
    made = [docker_import(palletd.env, unique_tar(), "pallet-test/ocidir:1")]
    try:
        layout = tmp_path / "saved"
        out = pallet(palletd, "save", "--format", "oci-dir", "-o", str(layout),
                     "pallet-test/ocidir:1")
        assert out.returncode == 0, out.stderr
        assert sorted(p.name for p in layout.iterdir()) == ["blobs", "index.json",
                                                            "oci-layout"]
        config = json.loads(subprocess.run(
            ["skopeo", "--insecure-policy", "inspect", "--raw", "--config",
             f"oci:{layout}:1"],  # docker writes the tag as the ref name
            check=True, capture_output=True, timeout=60).stdout)
        diff_ids = palletd.docker("image", "inspect", "-f", "{{json .RootFS.Layers}}",
                                  made[0]).stdout
        assert config["rootfs"]["diff_ids"] == json.loads(diff_ids)
        again = pallet(palletd, "save", "--format", "oci-dir", "-o", str(layout), made[0])
        assert again.returncode == 1 and b"not an empty directory" in again.stderr

        copied = tmp_path / "skopeo-copy"
        subprocess.run(["skopeo", "--insecure-policy", "copy", f"oci:{layout}:1",
                        f"oci:{copied}:latest"],
                       check=True, capture_output=True, timeout=60)
        rmi(palletd, *made)
        out = pallet(palletd, "load", "-i", str(copied))
        assert out.returncode == 0, out.stderr
        assert out.stdout == f"Loaded image ID: {made[0]}\n".encode()  # a bare tag: no name
        assert image_id(palletd, made[0]) == made[0]
        bad = pallet(palletd, "load", "-i", str(tmp_path))
        assert bad.returncode == 1 and b"not an oci image layout" in bad.stderr
    finally:
        rmi(palletd, *made)
