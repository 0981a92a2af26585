"""docker save/load archives and OCI layouts, on real tars and a real content store."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest
import zstandard

from pallet.errors import InvalidArgument, InvalidState, NotFound, NotSupported
from pallet.image import archive
from pallet.image.archive import (
    ArchiveImage,
    Layer,
    LoadedImage,
    read_archive,
    read_oci_layout,
    write_docker_archive,
    write_oci_layout,
)
from pallet.image.digest import Digest
from pallet.image.manifest import (
    DOCKER_LAYER_GZIP,
    DOCKER_LAYER_TAR,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
    Platform,
    go_json,
    host_platform,
)
from pallet.image.store import ContentStore

HOST = host_platform()
OTHER_ARCH = "s390x" if HOST.architecture != "s390x" else "amd64"


# --- building images --------------------------------------------------------------------

def tar_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def compress(data: bytes, how: str) -> bytes:
    if how == "gzip":
        return gzip.compress(data, mtime=0)
    if how == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    return data


MEDIA = {"none": OCI_LAYER, "gzip": OCI_LAYER_GZIP, "zstd": OCI_LAYER_ZSTD}


def config_of(diff_ids: list[Digest], arch: str = HOST.architecture, env: str = "A=1") -> bytes:
    # Go's field order and compact form, as docker and skopeo write a config.
    return go_json({
        "architecture": arch, "os": "linux",
        "config": {"Env": [env], "Cmd": ["/bin/sh"]},
        "created": "2024-05-06T07:08:09.123456789Z",
        "rootfs": {"type": "layers", "diff_ids": [str(d) for d in diff_ids]},
    })


def make_image(store: ContentStore, layers: list[tuple[bytes, str]], tags: list[str],
               arch: str = HOST.architecture, env: str = "A=1") -> ArchiveImage:
    out = []
    for plain, how in layers:
        blob = compress(plain, how)
        d = store.write_bytes(blob)
        out.append(Layer(d, MEDIA[how], len(blob), Digest.of_bytes(plain)))
    cfg = store.write_bytes(config_of([x.diff_id for x in out], arch, env))
    return ArchiveImage(cfg, out, tags)


LAYER_A = tar_of({"etc/a": b"alpha\n", "bin/tool": b"\x7fELF" + bytes(3000)})
LAYER_B = tar_of({"etc/b": b"bravo\n" * 500})
LAYER_C = tar_of({"usr/c": b"charlie\n" * 2000})


@pytest.fixture
def store(tmp_path: Any) -> ContentStore:
    return ContentStore(str(tmp_path / "store"))


@pytest.fixture
def dest(tmp_path: Any) -> ContentStore:
    return ContentStore(str(tmp_path / "dest"))


def save(store: ContentStore, images: list[ArchiveImage]) -> bytes:
    out = io.BytesIO()
    write_docker_archive(out, store, images)
    return out.getvalue()


def members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        return {m.name: m for m in t.getmembers()}


def contents(data: bytes) -> dict[str, bytes]:
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        for m in t.getmembers():
            f = t.extractfile(m)
            if f is not None:
                out[m.name] = f.read()
    return out


def assert_clean(store: ContentStore) -> None:
    """Every blob is whole and true to its name, and no partial is left behind."""
    for d in store.list():
        assert store.verify(d), f"corrupt blob {d}"
    assert os.listdir(store.ingest_dir) == []


# (name, data) is a file; (TarInfo, None) a link or device; (TarInfo, data) a crafted file.
Entry = tuple[str | tarfile.TarInfo, bytes | None]


def build_tar(entries: list[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for what, data in entries:
            info = what if isinstance(what, tarfile.TarInfo) else tarfile.TarInfo(what)
            if data is None:
                t.addfile(info)
            else:
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def link(name: str, target: str, hard: bool = False) -> Entry:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname = target
    return info, None


def load(data: bytes, store: ContentStore, **kw: Any) -> list[LoadedImage]:
    return read_archive(io.BytesIO(data), store, **kw)


# --- save -> load -----------------------------------------------------------------------

def test_save_load_round_trip_keeps_config_and_diff_ids(store: ContentStore,
                                                         dest: ContentStore) -> None:
    one = make_image(store, [(LAYER_A, "none"), (LAYER_B, "gzip")], ["busybox:latest"])
    two = make_image(store, [(LAYER_A, "none"), (LAYER_C, "zstd")],
                     ["example.com:5000/team/app:v2", "app"], env="B=2")
    loaded = load(save(store, [one, two]), dest)
    assert [x.config for x in loaded] == [one.config, two.config]
    assert loaded[0].repo_tags == ["busybox:latest"]
    assert loaded[1].repo_tags == ["example.com:5000/team/app:v2", "app:latest"]
    for img, src in zip(loaded, (one, two), strict=True):
        assert [x.diff_id for x in img.layers] == [x.diff_id for x in src.layers]
        for layer in img.layers:
            # Archived layers are plain tars: their blob is their diff_id.
            assert layer.digest == layer.diff_id
            assert layer.media_type == DOCKER_LAYER_TAR
            assert dest.size(layer.digest) == layer.size
        assert dest.read(img.config) == store.read(img.config)
    assert dest.read(loaded[0].layers[1].digest) == LAYER_B
    assert dest.read(loaded[1].layers[1].digest) == LAYER_C
    assert_clean(dest)


def test_saved_archive_is_docker_25_layout(store: ContentStore) -> None:
    img = make_image(store, [(LAYER_A, "gzip"), (LAYER_B, "none")], ["busybox:latest"])
    data = save(store, [img])
    files = contents(data)
    names = list(members(data))
    assert names[:2] == ["blobs", "blobs/sha256"]
    assert {"index.json", "manifest.json", "oci-layout", "repositories"} <= set(files)
    # Every blob is named by the digest of its bytes, and there is nothing else.
    for name, body in files.items():
        if name.startswith("blobs/"):
            assert name == "blobs/sha256/" + hashlib.sha256(body).hexdigest()
    assert len([n for n in files if n.startswith("blobs/")]) == 4  # config, 2 layers, manifest

    (item,) = json.loads(files["manifest.json"])
    assert item["Config"] == f"blobs/sha256/{img.config.hex}"
    assert item["RepoTags"] == ["busybox:latest"]
    diff_ids = [x.diff_id for x in img.layers]
    assert item["Layers"] == [f"blobs/sha256/{d.hex}" for d in diff_ids]
    assert files[item["Layers"][0]] == LAYER_A  # the gzip layer went in decompressed
    assert item["LayerSources"][str(diff_ids[0])] == {
        "mediaType": OCI_LAYER, "size": len(LAYER_A), "digest": str(diff_ids[0])}
    assert json.loads(files["repositories"]) == {"busybox": {"latest": diff_ids[1].hex}}
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}

    index = json.loads(files["index.json"])
    assert index["mediaType"] == OCI_INDEX
    (entry,) = index["manifests"]
    assert entry["annotations"] == {
        "io.containerd.image.name": "docker.io/library/busybox:latest",
        "org.opencontainers.image.ref.name": "latest"}
    assert entry["platform"] == {"architecture": HOST.architecture, "os": "linux"}
    raw = files[f"blobs/sha256/{entry['digest'].split(':')[1]}"]
    assert entry["size"] == len(raw)
    manifest = json.loads(raw)
    assert manifest["mediaType"] == OCI_MANIFEST
    assert manifest["config"]["mediaType"] == OCI_CONFIG
    assert manifest["config"]["digest"] == str(img.config)
    assert manifest["layers"] == [
        {"mediaType": OCI_LAYER, "digest": str(d), "size": len(files[f"blobs/sha256/{d.hex}"])}
        for d in diff_ids]
    # Layer blobs carry the image's creation time, as docker's do.
    assert members(data)[item["Layers"][0]].mtime == 1714979289


def test_shared_layers_and_repeated_images_are_written_once(store: ContentStore) -> None:
    one = make_image(store, [(LAYER_A, "gzip")], ["a:1"])
    two = make_image(store, [(LAYER_A, "none"), (LAYER_B, "none")], ["b:1"])
    again = ArchiveImage(one.config, one.layers, ["a:2", "a:1"])
    data = save(store, [one, two, again])
    names = [m for m in members(data) if m.startswith("blobs/sha256/")]
    assert len(names) == len(set(names)) == 6  # 2 configs, 2 layers, 2 manifests
    items = json.loads(contents(data)["manifest.json"])
    assert [x["RepoTags"] for x in items] == [["a:1", "a:2"], ["b:1"]]


def test_untagged_image_gets_an_unnamed_index_entry(store: ContentStore,
                                                    dest: ContentStore) -> None:
    img = make_image(store, [(LAYER_A, "none")], [])
    data = save(store, [img])
    files = contents(data)
    assert "repositories" not in files
    assert json.loads(files["manifest.json"])[0]["RepoTags"] is None
    (entry,) = json.loads(files["index.json"])["manifests"]
    assert "annotations" not in entry
    (loaded,) = load(data, dest)
    assert loaded.config == img.config and loaded.repo_tags == []


def test_save_refuses_inconsistent_images_before_writing(store: ContentStore) -> None:
    img = make_image(store, [(LAYER_A, "none"), (LAYER_B, "gzip")], ["x:1"])
    out = io.BytesIO()
    swapped = ArchiveImage(img.config, img.layers[::-1], img.repo_tags)
    with pytest.raises(InvalidArgument, match="diff_ids"):
        write_docker_archive(out, store, [swapped])
    with pytest.raises(InvalidArgument, match="not a tag"):
        write_docker_archive(out, store, [ArchiveImage(img.config, img.layers,
                                                       [f"x@{img.config}"])])
    store.delete(img.layers[1].digest)
    with pytest.raises(NotFound, match=str(img.layers[1].digest)):
        write_docker_archive(out, store, [img])
    assert out.getvalue() == b""


def test_save_notices_a_compressed_layer_that_is_not_its_diff_id(store: ContentStore) -> None:
    liar = store.write_bytes(gzip.compress(LAYER_C, mtime=0))
    cfg = store.write_bytes(config_of([Digest.of_bytes(LAYER_B)]))
    img = ArchiveImage(cfg, [Layer(liar, OCI_LAYER_GZIP, store.size(liar),
                                   Digest.of_bytes(LAYER_B))], ["x:1"])
    with pytest.raises(InvalidState, match="does not decompress to its diff_id"):
        write_docker_archive(io.BytesIO(), store, [img])


# --- load: layouts and orders -----------------------------------------------------------

def reorder(data: bytes, key: Callable[[str], Any]) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        entries = [(m, t.extractfile(m)) for m in t.getmembers()]
        pairs = [(m, f.read() if f else b"") for m, f in entries]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for m, body in sorted(pairs, key=lambda p: key(p[0].name)):
            t.addfile(m, io.BytesIO(body) if m.isfile() else None)
    return buf.getvalue()


@pytest.mark.parametrize("order", ["documents-first", "reversed"])
def test_load_takes_members_in_any_order(store: ContentStore, dest: ContentStore,
                                         order: str) -> None:
    img = make_image(store, [(LAYER_A, "gzip"), (LAYER_B, "none")], ["busybox:1"])
    data = save(store, [img])
    if order == "documents-first":
        shuffled = reorder(data, lambda n: (n.startswith("blobs"), n))
    else:
        shuffled = reorder(data, lambda n: [-ord(c) for c in n])
    assert list(members(shuffled)) != list(members(data))
    (loaded,) = load(shuffled, dest)
    assert loaded.config == img.config
    assert loaded.repo_tags == ["busybox:1"]
    assert [x.diff_id for x in loaded.layers] == [x.diff_id for x in img.layers]


def test_load_gzip_compressed_archive(store: ContentStore, dest: ContentStore) -> None:
    img = make_image(store, [(LAYER_A, "none")], ["busybox:1"])
    (loaded,) = load(gzip.compress(save(store, [img])), dest)
    assert loaded.config == img.config


def docker_2010(store: ContentStore) -> tuple[bytes, ArchiveImage, ArchiveImage]:
    """An archive as docker 20.10 writes it: v1 layer dirs, a symlink for a shared layer."""
    one = make_image(store, [(LAYER_A, "none"), (LAYER_B, "none")], ["busybox:latest"])
    two = make_image(store, [(LAYER_A, "none"), (LAYER_C, "gzip")], ["library/app:1.0"])
    cfg1, cfg2 = (store.read(x.config) for x in (one, two))
    v1 = ["1" * 64, "2" * 64, "3" * 64, "4" * 64]
    entries: list[Entry] = [
        (f"{one.config.hex}.json", cfg1), (f"{two.config.hex}.json", cfg2),
    ]
    for vid, body in ((v1[0], LAYER_A), (v1[1], LAYER_B),
                      (v1[3], gzip.compress(LAYER_C, mtime=0))):
        entries += [(f"{vid}/VERSION", b"1.0"), (f"{vid}/json", b"{}"),
                    (f"{vid}/layer.tar", body)]
    entries += [(f"{v1[2]}/VERSION", b"1.0"),
                link(f"{v1[2]}/layer.tar", f"../{v1[0]}/layer.tar")]
    manifest = [
        {"Config": f"{one.config.hex}.json", "RepoTags": ["busybox:latest"],
         "Layers": [f"{v1[0]}/layer.tar", f"{v1[1]}/layer.tar"]},
        {"Config": f"{two.config.hex}.json", "RepoTags": ["library/app:1.0"],
         "Layers": [f"{v1[2]}/layer.tar", f"./{v1[3]}/layer.tar"]},
    ]
    entries += [("repositories", json.dumps({"busybox": {"latest": v1[1]}}).encode()),
                ("manifest.json", json.dumps(manifest).encode())]
    return build_tar(entries), one, two


def test_load_docker_2010_layout(store: ContentStore, dest: ContentStore) -> None:
    data, one, two = docker_2010(store)
    got = load(data, dest)
    assert [x.config for x in got] == [one.config, two.config]
    assert got[0].repo_tags == ["busybox:latest"] and got[1].repo_tags == ["app:1.0"]
    assert [x.diff_id for x in got[1].layers] == [x.diff_id for x in two.layers]
    # The shared layer came in through the symlink; the gzip layer.tar stays compressed.
    assert got[1].layers[0].digest == got[0].layers[0].digest
    assert got[1].layers[1].media_type == DOCKER_LAYER_GZIP
    assert dest.read(got[1].layers[1].digest) == gzip.compress(LAYER_C, mtime=0)
    assert got[0].manifest is None
    # The v1 leftovers (json, VERSION) are not stored.
    assert dest.exists(Digest.of_bytes(b"{}")) is False
    assert_clean(dest)


def test_load_skopeo_style_layout(store: ContentStore, dest: ContentStore) -> None:
    """containers/image names layers <hex>.tar and links the legacy dirs to them."""
    img = make_image(store, [(LAYER_A, "none")], ["docker.io/library/busybox:2"])
    hexd = img.layers[0].diff_id.hex
    data = build_tar([
        (f"{hexd}.tar", LAYER_A), link(f"{'9' * 64}/layer.tar", f"../{hexd}.tar"),
        (f"{img.config.hex}.json", store.read(img.config)),
        ("manifest.json", json.dumps([{"Config": f"{img.config.hex}.json",
                                       "RepoTags": ["docker.io/library/busybox:2"],
                                       "Layers": [f"{'9' * 64}/layer.tar"]}]).encode()),
    ])
    (got,) = load(data, dest)
    assert got.repo_tags == ["busybox:2"]
    assert got.layers[0].diff_id == img.layers[0].diff_id


def oci_layout_tar(store: ContentStore) -> tuple[bytes, ArchiveImage, ArchiveImage]:
    """A plain OCI layout: a nested two-platform index, gzip layers, three kinds of name."""
    here = make_image(store, [(LAYER_A, "gzip"), (LAYER_B, "zstd")], [])
    there = make_image(store, [(LAYER_C, "gzip")], [], arch=OTHER_ARCH)
    blobs: dict[Digest, bytes] = {}

    def put(data: bytes) -> Digest:
        d = Digest.of_bytes(data)
        blobs[d] = data
        return d

    def manifest(img: ArchiveImage) -> tuple[Digest, int]:
        for d in [img.config, *(x.digest for x in img.layers)]:
            put(store.read(d))
        body = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": str(img.config),
                       "size": store.size(img.config)},
            "layers": [{"mediaType": x.media_type, "digest": str(x.digest), "size": x.size}
                       for x in img.layers]}).encode()
        return put(body), len(body)

    (hd, hs), (td, ts) = manifest(here), manifest(there)
    nested = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": str(td), "size": ts,
         "platform": {"os": "linux", "architecture": OTHER_ARCH}},
        {"mediaType": OCI_MANIFEST, "digest": str(hd), "size": hs,
         "platform": {"os": "linux", "architecture": HOST.architecture,
                      "variant": HOST.variant}},
        {"mediaType": "application/vnd.example.sbom", "digest": str(hd), "size": hs},
    ]}).encode()
    nd = put(nested)
    top = {"schemaVersion": 2, "manifests": [
        {"mediaType": OCI_INDEX, "digest": str(nd), "size": len(nested),
         "annotations": {"io.containerd.image.name": "docker.io/library/multi:1",
                         "org.opencontainers.image.ref.name": "1"}},
        {"mediaType": OCI_INDEX, "digest": str(nd), "size": len(nested),
         "annotations": {"org.opencontainers.image.ref.name": "quay.io/x/multi:2"}},
        {"mediaType": OCI_INDEX, "digest": str(nd), "size": len(nested),
         "annotations": {"org.opencontainers.image.ref.name": "stable"}},
    ]}
    entries: list[Entry] = [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
                            ("index.json", json.dumps(top).encode())]
    entries += [(f"blobs/sha256/{d.hex}", b) for d, b in blobs.items()]
    return build_tar(entries), here, there


def test_load_oci_layout_tar_follows_nested_index(store: ContentStore,
                                                  dest: ContentStore) -> None:
    data, here, there = oci_layout_tar(store)
    (got,) = load(data, dest)
    assert got.config == here.config
    assert got.repo_tags == ["multi:1", "quay.io/x/multi:2"]
    assert got.ref_names == ["stable"]
    assert got.manifest is not None and dest.exists(got.manifest)
    # Layers keep their compressed blobs; their diff_ids were computed on the way in.
    assert [(x.digest, x.media_type, x.diff_id) for x in got.layers] == \
        [(x.digest, x.media_type, x.diff_id) for x in here.layers]
    (other,) = load(data, ContentStore(dest.root + "-2"),
                    platform=Platform("linux", OTHER_ARCH))
    assert other.config == there.config


def test_load_oci_layout_with_no_match_for_the_platform(store: ContentStore,
                                                        dest: ContentStore) -> None:
    data, _, _ = oci_layout_tar(store)
    with pytest.raises(NotFound, match="no matching manifest"):
        load(data, dest, platform=Platform("linux", "riscv64"))


# --- tampering and hostile input ---------------------------------------------------------

def replace_member(data: bytes, name: str, body: bytes) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        pairs = []
        for m in t.getmembers():
            f = t.extractfile(m)
            pairs.append((m, f.read() if f else b""))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for m, old in pairs:
            new = body if m.name == name else old
            m.size = len(new) if m.isfile() else 0
            t.addfile(m, io.BytesIO(new) if m.isfile() else None)
    return buf.getvalue()


def flip(body: bytes, at: int = 700) -> bytes:
    return body[:at] + bytes([body[at] ^ 0x20]) + body[at + 1:]


def test_tampered_layer_is_rejected_and_nothing_lands(store: ContentStore,
                                                      dest: ContentStore) -> None:
    img = make_image(store, [(LAYER_A, "none"), (LAYER_B, "gzip")], ["busybox:1"])
    data = save(store, [img])
    name = f"blobs/sha256/{img.layers[1].diff_id.hex}"
    bad = replace_member(data, name, flip(LAYER_B))
    with pytest.raises(InvalidArgument, match=name):
        load(bad, dest)
    assert not dest.exists(Digest.of_bytes(flip(LAYER_B)))
    assert not dest.exists(img.layers[1].diff_id)
    assert_clean(dest)


def test_tampered_config_is_rejected(store: ContentStore, dest: ContentStore) -> None:
    img = make_image(store, [(LAYER_A, "none")], ["busybox:1"])
    data = save(store, [img])
    name = f"blobs/sha256/{img.config.hex}"
    bad = replace_member(data, name, store.read(img.config).replace(b"A=1", b"A=2"))
    with pytest.raises(InvalidArgument, match=f"{name}.*digest mismatch"):
        load(bad, dest)
    assert not dest.exists(img.config)
    assert_clean(dest)


def test_tampered_legacy_layer_fails_its_diff_id(store: ContentStore,
                                                 dest: ContentStore) -> None:
    data, _, _ = docker_2010(store)
    name = f"{'2' * 64}/layer.tar"
    with pytest.raises(InvalidArgument, match=f"layer {name} does not match its config"):
        load(replace_member(data, name, flip(LAYER_B)), dest)
    assert_clean(dest)


def test_tampered_legacy_config_is_rejected(store: ContentStore, dest: ContentStore) -> None:
    data, one, _ = docker_2010(store)
    name = f"{one.config.hex}.json"
    with pytest.raises(InvalidArgument, match=f"{name}: digest mismatch"):
        load(replace_member(data, name, store.read(one.config).replace(b"A=1", b"A=2")), dest)
    assert_clean(dest)


def test_legacy_layer_that_is_no_tar_stream(store: ContentStore, dest: ContentStore) -> None:
    data, _, _ = docker_2010(store)
    name = f"{'4' * 64}/layer.tar"
    broken = gzip.compress(LAYER_C, mtime=0)[:-30] + bytes(30)
    with pytest.raises(InvalidArgument, match="not a plain, gzip or zstd tar"):
        load(replace_member(data, name, broken), dest)


def a_saved_archive(store: ContentStore) -> tuple[bytes, ArchiveImage]:
    img = make_image(store, [(LAYER_A, "none")], ["busybox:1"])
    return save(store, [img]), img


def hostile_cases(store: ContentStore) -> dict[str, tuple[bytes, str]]:
    data, _ = a_saved_archive(store)
    files = contents(data)
    manifest = json.loads(files["manifest.json"])
    layer_name = manifest[0]["Layers"][0]

    def with_manifest(m: Any) -> bytes:
        return replace_member(data, "manifest.json", json.dumps(m).encode())

    device = tarfile.TarInfo("dev/null")
    device.type = tarfile.CHRTYPE
    huge = tarfile.TarInfo(f"blobs/sha256/{'a' * 64}")
    huge.size = 1 << 40  # and the archive ends after a few bytes of it
    big_pax = tarfile.TarInfo("x")
    big_pax.pax_headers = {"comment": "y" * (2 << 20)}
    without_layer = build_tar([(n, b) for n, b in files.items() if n != layer_name])
    return {
        "dotdot": (build_tar([("../evil", b"x")]), "contains '..'"),
        "absolute": (build_tar([("/etc/evil", b"x")]), "absolute path"),
        "symlink-out": (build_tar([link("a/layer.tar", "../../etc/passwd")]),
                        "links outside the archive"),
        "symlink-absolute": (build_tar([link("layer.tar", "/etc/passwd")]), "absolute path"),
        "hardlink-out": (build_tar([link("layer.tar", "../x", hard=True)]), "contains '..'"),
        "device": (build_tar([(device, None)]), "not a regular file"),
        "huge-declared-size": (huge.tobuf(tarfile.PAX_FORMAT) + bytes(4096), "not a valid tar"),
        "huge-pax-header": (build_tar([(big_pax, b"")]), "extended tar header"),
        "manifest-not-json": (replace_member(data, "manifest.json", b"{nope"),
                              "invalid manifest.json"),
        "manifest-not-list": (with_manifest({"Config": "x"}), "not a list"),
        "missing-layer": (without_layer, f"{layer_name} is missing from the archive"),
        "escaping-path": (with_manifest([{**manifest[0], "Config": "../cfg.json"}]),
                          "contains '..'"),
        "layer-count": (with_manifest([{**manifest[0], "Layers": []}]),
                        "layers length mismatch"),
        "bad-tag": (with_manifest([{**manifest[0], "RepoTags": ["UPPER:case"]}]), "invalid tag"),
        "config-not-image": (with_manifest([{**manifest[0], "Config": layer_name}]),
                             "config .*not JSON"),
        "duplicate": (build_tar([("index.json", b"{}"), ("index.json", b"{}")]),
                      "appears twice"),
        "no-manifests": (build_tar([("hello.txt", b"hi")]),
                         "neither manifest.json nor index.json"),
        "empty": (b"", "not a valid tar"),
        "garbage": (os.urandom(3000), "not a valid tar"),
        "truncated": (data[: len(data) // 2], "not a valid tar|missing|neither"),
        "index-not-json": (build_tar([("index.json", b"[")]), "index.json: .*not JSON"),
        "link-loop": (build_tar([link("a", "b"), link("b", "a"), ("manifest.json", json.dumps(
            [{**manifest[0], "Config": "a"}]).encode())]), "too many levels of links"),
    }


HOSTILE = ["dotdot", "absolute", "symlink-out", "symlink-absolute", "hardlink-out", "device",
           "huge-declared-size", "huge-pax-header", "manifest-not-json", "manifest-not-list",
           "missing-layer", "escaping-path", "layer-count", "bad-tag", "config-not-image",
           "duplicate", "no-manifests", "empty", "garbage", "truncated", "index-not-json",
           "link-loop"]


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_archives_fail_clearly(store: ContentStore, dest: ContentStore,
                                       case: str) -> None:
    data, why = hostile_cases(store)[case]
    with pytest.raises(InvalidArgument, match=why):
        load(data, dest)
    assert_clean(dest)


def test_oci_layout_tar_missing_a_blob(store: ContentStore, dest: ContentStore) -> None:
    data, here, _ = oci_layout_tar(store)
    gone = f"blobs/sha256/{here.layers[1].digest.hex}"
    kept = [(n, b) for n, b in contents(data).items() if n != gone]
    with pytest.raises(InvalidArgument, match=f"blob {here.layers[1].digest} is missing"):
        load(build_tar(kept), dest)  # type: ignore[arg-type]
    assert_clean(dest)


def test_too_many_members(store: ContentStore, dest: ContentStore,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive, "_MAX_MEMBERS", 3)
    data, _ = a_saved_archive(store)
    with pytest.raises(InvalidArgument, match="more than 3 members"):
        load(data, dest)


def test_a_stale_partial_in_the_store_does_not_spoil_the_load(store: ContentStore,
                                                              dest: ContentStore) -> None:
    img = make_image(store, [(LAYER_A, "none")], ["busybox:1"])
    with dest.ingest(img.layers[0].diff_id) as ing:
        ing.write(b"not the start of the layer")  # left behind, resumable, by a dead pull
    (got,) = load(save(store, [img]), dest)
    assert dest.read(got.layers[0].digest) == LAYER_A
    assert_clean(dest)


def test_oversized_document_is_refused_unread(store: ContentStore, dest: ContentStore,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive, "MAX_DOCUMENT", 100)
    data, _ = a_saved_archive(store)
    with pytest.raises(InvalidArgument, match=r"archive member index\.json is too large"):
        load(data, dest)


def test_pre_1_10_archive_is_not_supported(dest: ContentStore) -> None:
    with pytest.raises(NotSupported, match=r"pre-1\.10"):
        load(build_tar([("repositories", b"{}"), (f"{'1' * 64}/layer.tar", LAYER_A)]), dest)


def test_load_reuses_blobs_the_store_has_and_still_checks_them(store: ContentStore) -> None:
    img = make_image(store, [(LAYER_A, "none")], ["busybox:1"])
    data = save(store, [img])
    (got,) = load(data, store)  # everything is present already
    assert got.config == img.config
    name = f"blobs/sha256/{img.layers[0].diff_id.hex}"
    with pytest.raises(InvalidArgument, match=f"{name}.*digest mismatch"):
        load(replace_member(data, name, flip(LAYER_A)), store)
    assert_clean(store)


# --- OCI layout directories ---------------------------------------------------------------

def test_oci_layout_directory_round_trip(store: ContentStore, dest: ContentStore,
                                         tmp_path: Any) -> None:
    one = make_image(store, [(LAYER_A, "gzip"), (LAYER_B, "none")], ["busybox:latest"])
    layout = str(tmp_path / "layout")
    write_oci_layout(layout, store, [one])
    with open(os.path.join(layout, "index.json"), "rb") as f:
        (entry,) = json.load(f)["manifests"]
    with open(os.path.join(layout, "blobs", "sha256", entry["digest"][7:]), "rb") as f:
        manifest = json.load(f)
    # Compressed layers stay compressed in a layout, under their OCI media type.
    assert [x["mediaType"] for x in manifest["layers"]] == [OCI_LAYER_GZIP, OCI_LAYER]
    assert [x["digest"] for x in manifest["layers"]] == [str(x.digest) for x in one.layers]
    (got,) = read_oci_layout(layout, dest)
    assert got.config == one.config
    assert got.repo_tags == ["busybox:latest"]
    assert [x.diff_id for x in got.layers] == [x.diff_id for x in one.layers]
    assert got.manifest == Digest.parse(entry["digest"])
    assert_clean(dest)


def test_oci_layout_keeps_other_entries_and_replaces_same_names(store: ContentStore,
                                                                tmp_path: Any) -> None:
    layout = str(tmp_path / "layout")
    old = make_image(store, [(LAYER_A, "none")], ["busybox:latest", "keep:1"])
    new = make_image(store, [(LAYER_B, "none")], ["busybox:latest"], env="NEW=1")
    write_oci_layout(layout, store, [old])
    write_oci_layout(layout, store, [new])
    got = read_oci_layout(layout, ContentStore(str(tmp_path / "s2")))
    by_tag = {t: x.config for x in got for t in x.repo_tags}
    assert by_tag == {"keep:1": old.config, "busybox:latest": new.config}


def test_oci_layout_writes_a_given_manifest_verbatim(store: ContentStore,
                                                     tmp_path: Any) -> None:
    img = make_image(store, [(LAYER_A, "gzip")], ["busybox:1"])
    body = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "size": store.size(img.config), "digest": str(img.config)},
        "layers": [{"mediaType": DOCKER_LAYER_GZIP, "size": img.layers[0].size,
                    "digest": str(img.layers[0].digest)}]}, indent=3).encode()
    m = store.write_bytes(body)
    layout = str(tmp_path / "layout")
    write_oci_layout(layout, store, [ArchiveImage(img.config, img.layers, img.repo_tags, m)])
    (got,) = read_oci_layout(layout, ContentStore(str(tmp_path / "s2")))
    assert got.manifest == m
    assert got.layers[0].media_type == DOCKER_LAYER_GZIP


def test_oci_layout_refuses_a_symlinked_blob(store: ContentStore, dest: ContentStore,
                                             tmp_path: Any) -> None:
    img = make_image(store, [(LAYER_A, "none")], ["busybox:1"])
    layout = str(tmp_path / "layout")
    write_oci_layout(layout, store, [img])
    blob = os.path.join(layout, "blobs", "sha256", img.layers[0].digest.hex)
    outside = str(tmp_path / "outside")
    os.rename(blob, outside)
    os.symlink(outside, blob)
    with pytest.raises(InvalidArgument, match="cannot open"):
        read_oci_layout(layout, dest)
    os.unlink(blob)
    with pytest.raises(InvalidArgument, match="missing from the layout"):
        read_oci_layout(layout, dest)
    with open(blob, "wb") as f:
        f.write(flip(LAYER_A))
    with pytest.raises(InvalidArgument, match="digest mismatch"):
        read_oci_layout(layout, dest)
    assert_clean(dest)


def test_oci_layout_version_is_checked(store: ContentStore, dest: ContentStore,
                                       tmp_path: Any) -> None:
    img = make_image(store, [(LAYER_A, "none")], [])
    layout = str(tmp_path / "layout")
    write_oci_layout(layout, store, [img])
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion": "2.0.0"}')
    with pytest.raises(NotSupported, match="layout version"):
        read_oci_layout(layout, dest)


# --- streaming ----------------------------------------------------------------------------

def test_save_and_load_stream_without_holding_layers(store: ContentStore, dest: ContentStore,
                                                     tmp_path: Any) -> None:
    """A 48 MiB layer goes through save and load with a few MiB of Python memory."""
    rootfs = tmp_path / "big.bin"
    with open(rootfs, "wb") as f:
        for i in range(48):
            f.write(os.urandom(1 << 19) + bytes([i]) * (1 << 19))
    plain = tmp_path / "layer.tar"
    with tarfile.open(plain, "w") as t:
        t.add(rootfs, "big.bin")
    hasher, packed = hashlib.sha256(), tmp_path / "layer.tar.gz"
    with open(plain, "rb") as src, gzip.open(packed, "wb", compresslevel=1) as gz:
        while chunk := src.read(1 << 20):
            hasher.update(chunk)
            gz.write(chunk)
    diff_id = Digest("sha256", hasher.hexdigest())
    with open(packed, "rb") as f:
        blob = Digest("sha256", hashlib.file_digest(f, "sha256").hexdigest())
        f.seek(0)
        with store.ingest(blob) as ing:
            while chunk := f.read(1 << 20):
                ing.write(chunk)
            ing.commit()
    cfg = store.write_bytes(config_of([diff_id]))
    img = ArchiveImage(cfg, [Layer(blob, OCI_LAYER_GZIP, store.size(blob), diff_id)], ["big:1"])
    out_path = tmp_path / "out.tar"
    tracemalloc.start()
    try:
        with open(out_path, "wb") as out:
            write_docker_archive(out, store, [img])
        _, saving = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        with open(out_path, "rb") as inp:
            (got,) = read_archive(inp, dest)
        _, loading = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert os.path.getsize(out_path) > 48 << 20
    assert got.layers[0].diff_id == diff_id and dest.size(diff_id) == os.path.getsize(plain)
    assert saving < 12 << 20, saving
    assert loading < 12 << 20, loading
