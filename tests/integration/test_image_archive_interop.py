"""Archives and layouts pallet writes, read by skopeo, umoci and dockerd 20.10 -- and back.

skopeo and umoci come from Debian (test.sh installs them); they run as plain processes
on files in the test's temp dir. The docker test starts a private dockerd (its own
socket, data root and exec root; no bridge, no firewall rules) and needs root.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from pallet.image.archive import (
    ArchiveImage,
    LoadedImage,
    read_archive,
    read_oci_layout,
    write_docker_archive,
    write_oci_layout,
)
from pallet.image.digest import Digest
from pallet.image.store import ContentStore
from tests.support.dockerd import Dockerd, private_dockerd
from tests.unit.test_image_archive import LAYER_A, LAYER_B, LAYER_C, make_image, tar_of


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (test.sh installs it)")
    return path


def run(*args: str) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, f"{' '.join(args)} exited {proc.returncode}:\n{proc.stderr}"
    return proc.stdout


def skopeo(*args: str) -> str:
    return run(tool("skopeo"), "--insecure-policy", *args)


def umoci(*args: str) -> str:
    rootless = () if os.geteuid() == 0 else ("--rootless",)
    return run(tool("umoci"), *args, *(rootless if args[0] == "unpack" else ()))


@pytest.fixture
def store(tmp_path: Any) -> ContentStore:
    return ContentStore(str(tmp_path / "store"))


@pytest.fixture
def dest(tmp_path: Any) -> ContentStore:
    return ContentStore(str(tmp_path / "dest"))


@pytest.fixture
def image(store: ContentStore) -> ArchiveImage:
    """Two layers, one of them gzip in the store (so saving decompresses it)."""
    return make_image(store, [(LAYER_A, "none"), (LAYER_B, "gzip")], ["busybox:latest"])


def saved(tmp_path: Any, store: ContentStore, images: list[ArchiveImage]) -> str:
    path = str(tmp_path / "saved.tar")
    with open(path, "wb") as out:
        write_docker_archive(out, store, images)
    return path


def diff_ids(config: bytes) -> list[str]:
    return list(json.loads(config)["rootfs"]["diff_ids"])


# --- skopeo reads what we write -----------------------------------------------------------

def test_skopeo_reads_our_docker_archive_by_tag(tmp_path: Any, store: ContentStore,
                                                image: ArchiveImage) -> None:
    other = make_image(store, [(LAYER_C, "zstd")], ["example.com/team/app:2"])
    tar = saved(tmp_path, store, [image, other])
    for img, ref in ((image, "busybox:latest"), (other, "example.com/team/app:2")):
        config = skopeo("inspect", "--raw", "--config", f"docker-archive:{tar}:{ref}")
        assert hashlib.sha256(config.encode()).hexdigest() == img.config.hex
        info = json.loads(skopeo("inspect", f"docker-archive:{tar}:{ref}"))
        assert info["Layers"] == [str(x.diff_id) for x in img.layers]


def test_skopeo_reads_our_docker_archive_as_an_oci_archive(tmp_path: Any, store: ContentStore,
                                                           image: ArchiveImage) -> None:
    """The OCI half of a docker 25 archive stands on its own."""
    tar = saved(tmp_path, store, [image])
    manifest = json.loads(skopeo("inspect", "--raw", f"oci-archive:{tar}:latest"))
    assert manifest["config"]["digest"] == str(image.config)
    assert [x["digest"] for x in manifest["layers"]] == [str(x.diff_id) for x in image.layers]


def test_skopeo_copies_our_archive_into_an_oci_layout_we_read(
        tmp_path: Any, store: ContentStore, dest: ContentStore, image: ArchiveImage) -> None:
    tar = saved(tmp_path, store, [image])
    layout = str(tmp_path / "skopeo-oci")
    skopeo("copy", f"docker-archive:{tar}:busybox:latest", f"oci:{layout}:latest")
    config = skopeo("inspect", "--raw", "--config", f"oci:{layout}:latest")
    assert diff_ids(config.encode()) == [str(x.diff_id) for x in image.layers]
    (got,) = read_oci_layout(layout, dest)
    assert got.ref_names == ["latest"] and got.repo_tags == []
    assert got.config == Digest.of_bytes(config.encode())
    assert [x.diff_id for x in got.layers] == [x.diff_id for x in image.layers]
    # skopeo compressed the layers on the way: their diff_ids were computed, not copied.
    assert all(x.digest != x.diff_id for x in got.layers)


def test_skopeo_reads_our_oci_layout(tmp_path: Any, store: ContentStore,
                                     image: ArchiveImage) -> None:
    layout = str(tmp_path / "layout")
    write_oci_layout(layout, store, [image])
    with open(os.path.join(layout, "index.json")) as f:
        (entry,) = json.load(f)["manifests"]
    info = json.loads(skopeo("inspect", f"oci:{layout}:latest"))
    assert info["Digest"] == entry["digest"]
    assert info["Layers"] == [str(x.digest) for x in image.layers]  # stored forms, as they are
    copied = str(tmp_path / "copy")
    skopeo("copy", f"oci:{layout}:latest", f"dir:{copied}")
    assert os.path.exists(os.path.join(copied, image.config.hex))


# --- we read what skopeo writes -----------------------------------------------------------

def test_we_load_a_docker_archive_skopeo_writes(tmp_path: Any, store: ContentStore,
                                                dest: ContentStore, image: ArchiveImage) -> None:
    layout = str(tmp_path / "layout")
    write_oci_layout(layout, store, [image])
    tar = str(tmp_path / "skopeo.tar")
    skopeo("copy", f"oci:{layout}:latest", f"docker-archive:{tar}:example.com/app:1.5")
    with open(tar, "rb") as f:
        (got,) = read_archive(f, dest)
    assert got.repo_tags == ["example.com/app:1.5"]
    assert [x.diff_id for x in got.layers] == [x.diff_id for x in image.layers]
    assert diff_ids(dest.read(got.config)) == [str(x.diff_id) for x in image.layers]


# --- umoci --------------------------------------------------------------------------------

def test_umoci_unpacks_our_layout(tmp_path: Any, store: ContentStore,
                                  image: ArchiveImage) -> None:
    layout = str(tmp_path / "layout")
    write_oci_layout(layout, store, [image])
    bundle = str(tmp_path / "bundle")
    umoci("unpack", "--image", f"{layout}:latest", bundle)
    with open(os.path.join(bundle, "rootfs", "etc", "b"), "rb") as f:
        assert f.read() == b"bravo\n" * 500
    with open(os.path.join(bundle, "config.json")) as f:
        assert "A=1" in json.load(f)["process"]["env"]


def test_we_read_a_layout_umoci_builds(tmp_path: Any, dest: ContentStore) -> None:
    layout = str(tmp_path / "umoci")
    umoci("init", "--layout", layout)
    umoci("new", "--image", f"{layout}:mytag")
    for i, body in enumerate((b"first\n", b"second\n")):
        src = tmp_path / f"file{i}"
        src.write_bytes(body)
        umoci("insert", "--image", f"{layout}:mytag", str(src), f"/etc/file{i}")
    umoci("config", "--image", f"{layout}:mytag", "--config.env", "FROM_UMOCI=1")
    (got,) = read_oci_layout(layout, dest)
    assert got.ref_names == ["mytag"]
    config = json.loads(dest.read(got.config))
    assert "FROM_UMOCI=1" in config["config"]["Env"]
    assert [str(x.diff_id) for x in got.layers] == config["rootfs"]["diff_ids"]
    assert len(got.layers) == 2
    # Round trip what umoci built through our docker archive and skopeo.
    tar = str(tmp_path / "again.tar")
    with open(tar, "wb") as out:
        write_docker_archive(out, dest, [ArchiveImage(got.config, got.layers, ["umoci:built"])])
    info = json.loads(skopeo("inspect", f"docker-archive:{tar}:umoci:built"))
    assert info["Layers"] == config["rootfs"]["diff_ids"]


# --- docker 20.10 -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def docker() -> Iterator[Dockerd]:
    if os.geteuid() != 0:
        pytest.skip("a private dockerd needs root")
    with private_dockerd() as d:
        yield d


@pytest.mark.root
def test_docker_2010_loads_what_we_save_and_we_load_what_it_saves(
        docker: Dockerd, tmp_path: Any, store: ContentStore, dest: ContentStore,
        image: ArchiveImage) -> None:
    tar = saved(tmp_path, store, [image])
    assert "Loaded image: busybox:latest" in docker("load", "-i", tar).stdout
    inspect = json.loads(docker("image", "inspect", "busybox:latest").stdout)[0]
    assert inspect["Id"] == str(image.config)
    assert inspect["RootFS"]["Layers"] == [str(x.diff_id) for x in image.layers]

    rootfs = tar_of({"imported": b"from docker import\n"})
    imported = tmp_path / "rootfs.tar"
    imported.write_bytes(rootfs)
    docker("import", str(imported), "example.com/imported:3")
    out = str(tmp_path / "docker-save.tar")
    docker("save", "-o", out, "busybox:latest", "example.com/imported:3")
    with open(out, "rb") as f:
        got: list[LoadedImage] = read_archive(f, dest)
    by_tag = {t: x for x in got for t in x.repo_tags}
    assert set(by_tag) == {"busybox:latest", "example.com/imported:3"}
    assert by_tag["busybox:latest"].config == image.config
    assert [x.diff_id for x in by_tag["example.com/imported:3"].layers] == \
        [Digest.of_bytes(rootfs)]
