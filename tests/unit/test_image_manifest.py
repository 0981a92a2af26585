"""pallet.image.manifest: parsing what registries send, writing what Docker would push, and
choosing a platform from an index as dockerd (containerd's platforms.Only) does."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import pytest

from pallet.errors import InvalidArgument, NotFound, NotSupported
from pallet.image import manifest as mf
from pallet.image.digest import Digest
from pallet.image.manifest import (
    Descriptor,
    Index,
    Manifest,
    Platform,
    host_platform,
    layer_compression,
    parse_manifest,
    platform_from_string,
    select_platform,
    to_json,
)

# Captured from a real registry (shared/reference/registry-2.8-responses.txt): the busybox
# manifest docker 20.10 pushed, byte for byte, and the digest the registry gave it.
DOCKER_PUSHED = b"""{
   "schemaVersion": 2,
   "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
   "config": {
      "mediaType": "application/vnd.docker.container.image.v1+json",
      "size": 895,
      "digest": "sha256:11553a5a7ef84d310fb1f7a73b0f5d7c125f0b14290435dc6f88a261ee71fff7"
   },
   "layers": [
      {
         "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
         "size": 1069499,
         "digest": "sha256:a5ae4502066877fe36ceecb69118413a2a98c88bac7210af6359c059a62f3850"
      }
   ]
}"""
DOCKER_PUSHED_DIGEST = "sha256:bb1c303ec02ed5c69cbded3ee24d0672ebb9ee4948aa86a8bdb4f6dee484a21e"

# The same registry's answer without an Accept header (schema 1, signatures trimmed).
SCHEMA1 = b"""{
   "schemaVersion": 1,
   "name": "busybox",
   "tag": "1",
   "architecture": "amd64",
   "fsLayers": [
      {"blobSum": "sha256:a5ae4502066877fe36ceecb69118413a2a98c88bac7210af6359c059a62f3850"}
   ],
   "history": [{"v1Compatibility": "{}"}],
   "signatures": []
}"""


def dg(label: str) -> str:
    return "sha256:" + hashlib.sha256(label.encode()).hexdigest()


def entry(media_type: str, label: str, size: int, platform: dict[str, Any] | None,
          **extra: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"mediaType": media_type, "digest": dg(label), "size": size}
    if platform is not None:
        d["platform"] = platform
    d.update(extra)
    return d


# Docker Hub's busybox manifest list, in shape: every platform the official image ships.
HUB_PLATFORMS = [
    {"architecture": "amd64", "os": "linux"},
    {"architecture": "arm", "os": "linux", "variant": "v5"},
    {"architecture": "arm", "os": "linux", "variant": "v6"},
    {"architecture": "arm", "os": "linux", "variant": "v7"},
    {"architecture": "arm64", "os": "linux", "variant": "v8"},
    {"architecture": "386", "os": "linux"},
    {"architecture": "mips64le", "os": "linux"},
    {"architecture": "ppc64le", "os": "linux"},
    {"architecture": "riscv64", "os": "linux"},
    {"architecture": "s390x", "os": "linux"},
]


def hub_list() -> bytes:
    return json.dumps({
        "manifests": [entry(mf.DOCKER_MANIFEST, f"busybox-{i}", 527, p)
                      for i, p in enumerate(HUB_PLATFORMS)],
        "mediaType": mf.DOCKER_MANIFEST_LIST,
        "schemaVersion": 2,
    }, indent=3).encode()


def hub_oci_index() -> bytes:
    """Docker Hub's newer style: an OCI index with BuildKit attestation manifests."""
    images = [entry(mf.OCI_MANIFEST, "img-amd64", 1012, {"architecture": "amd64", "os": "linux"}),
              entry(mf.OCI_MANIFEST, "img-arm64", 1012,
                    {"architecture": "arm64", "os": "linux", "variant": "v8"})]
    attestations = [
        entry(mf.OCI_MANIFEST, f"att-{i}", 839, {"architecture": "unknown", "os": "unknown"},
              annotations={"vnd.docker.reference.digest": images[i]["digest"],
                           "vnd.docker.reference.type": "attestation-manifest"})
        for i in range(2)
    ]
    return json.dumps({"schemaVersion": 2, "mediaType": mf.OCI_INDEX,
                       "manifests": images + attestations}).encode()


def index_of(*platforms: Platform | None) -> Index:
    return Index(mf.OCI_INDEX, [
        Descriptor(mf.OCI_MANIFEST, Digest.parse(dg(str(p) + str(i))), 100, platform=p)
        for i, p in enumerate(platforms)
    ])


def P(s: str) -> Platform:  # reads like a literal in the tables below
    os_, arch, *variant = s.split("/")
    return Platform(os_, arch, variant[0] if variant else "")


# --- parsing ----------------------------------------------------------------------------

def test_docker_manifest_parses_and_writes_back_byte_for_byte() -> None:
    m = parse_manifest(DOCKER_PUSHED, mf.DOCKER_MANIFEST)
    assert isinstance(m, Manifest)
    assert m.media_type == mf.DOCKER_MANIFEST and m.schema_version == 2
    assert m.config.media_type == mf.DOCKER_CONFIG and m.config.size == 895
    assert str(m.config.digest) == (
        "sha256:11553a5a7ef84d310fb1f7a73b0f5d7c125f0b14290435dc6f88a261ee71fff7")
    assert [(d.media_type, d.size) for d in m.layers] == [(mf.DOCKER_LAYER_GZIP, 1069499)]
    out = to_json(m)
    assert out == DOCKER_PUSHED
    assert str(Digest.of_bytes(out)) == DOCKER_PUSHED_DIGEST


@pytest.mark.parametrize("header", [
    None, "", "application/json", "application/octet-stream",
    "application/vnd.docker.distribution.manifest.v2+json; charset=utf-8",
])
def test_media_type_comes_from_body_when_header_is_missing_or_generic(header: str | None) -> None:
    m = parse_manifest(DOCKER_PUSHED, header)
    assert isinstance(m, Manifest) and m.media_type == mf.DOCKER_MANIFEST


@pytest.mark.parametrize("header", [None, mf.DOCKER_SCHEMA1, mf.DOCKER_SCHEMA1_SIGNED,
                                    "application/json"])
def test_schema1_is_refused_clearly(header: str | None) -> None:
    with pytest.raises(NotSupported, match="schema 1"):
        parse_manifest(SCHEMA1, header)


def test_docker_hub_manifest_list() -> None:
    idx = parse_manifest(hub_list(), mf.DOCKER_MANIFEST_LIST)
    assert isinstance(idx, Index)
    assert len(idx.manifests) == 10
    assert all(d.media_type == mf.DOCKER_MANIFEST for d in idx.manifests)
    assert idx.manifests[4].platform == Platform("linux", "arm64", "v8")
    assert idx.manifests[0].platform == Platform("linux", "amd64")


def test_oci_index_with_attestations() -> None:
    idx = parse_manifest(hub_oci_index(), mf.OCI_INDEX)
    assert isinstance(idx, Index) and idx.media_type == mf.OCI_INDEX
    att = idx.manifests[2]
    assert att.platform == Platform("unknown", "unknown")
    assert att.annotations["vnd.docker.reference.type"] == "attestation-manifest"


def test_oci_documents_without_media_type_are_recognised_by_shape() -> None:
    idx = json.loads(hub_oci_index())
    del idx["mediaType"]
    parsed = parse_manifest(json.dumps(idx).encode(), None)
    assert isinstance(parsed, Index) and parsed.media_type == mf.OCI_INDEX
    m = json.loads(DOCKER_PUSHED)
    del m["mediaType"]
    parsed = parse_manifest(json.dumps(m).encode(), "application/octet-stream")
    assert isinstance(parsed, Manifest) and parsed.media_type == mf.OCI_MANIFEST


def oci_manifest_doc() -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": mf.OCI_MANIFEST,
        "config": {"mediaType": mf.OCI_CONFIG, "digest": dg("cfg"), "size": 1469},
        "layers": [
            {"mediaType": mf.OCI_LAYER_ZSTD, "digest": dg("l0"), "size": 29_000_000},
            {"mediaType": mf.OCI_LAYER_GZIP, "digest": dg("l1"), "size": 310},
            {"mediaType": mf.OCI_LAYER_NONDIST_GZIP, "digest": dg("l2"), "size": 5_000_000,
             "urls": ["https://mcr.microsoft.com/blob/l2"]},
        ],
        "annotations": {"org.opencontainers.image.created": "2024-05-01T00:00:00Z",
                        "org.opencontainers.image.description": "a <b> & c"},
    }


def test_oci_manifest_fields_and_round_trip() -> None:
    m = parse_manifest(json.dumps(oci_manifest_doc()).encode(), mf.OCI_MANIFEST)
    assert isinstance(m, Manifest)
    assert [layer_compression(d.media_type) for d in m.layers] == ["zstd", "gzip", "gzip"]
    assert m.layers[2].urls == ["https://mcr.microsoft.com/blob/l2"]
    assert m.layers[2].media_type in mf.FOREIGN_LAYER_TYPES
    out = to_json(m)
    assert parse_manifest(out, mf.OCI_MANIFEST) == m
    text = out.decode()
    # image-spec's Descriptor puts digest before size (distribution's the other way round).
    assert text.index('"digest"') < text.index('"size"')
    # Go's encoding/json escapes HTML characters; Docker's bytes carry them so.
    assert r'"a \u003cb\u003e \u0026 c"' in text
    assert text.startswith('{\n   "schemaVersion": 2,\n   "mediaType": ')
    assert text.rstrip().endswith("}") and not text.endswith("\n")


def test_manifest_list_is_written_in_distribution_order() -> None:
    idx = parse_manifest(hub_list(), None)
    out = to_json(idx)
    doc = json.loads(out)
    assert list(doc) == ["schemaVersion", "mediaType", "manifests"]
    assert list(doc["manifests"][3]) == ["mediaType", "size", "digest", "platform"]
    assert list(doc["manifests"][3]["platform"]) == ["architecture", "os", "variant"]
    assert parse_manifest(out, None) == idx
    # Writing is deterministic: the same object gives the same digest.
    assert Digest.of_bytes(to_json(idx)) == Digest.of_bytes(out)


def test_layer_compression_refuses_unknown_types() -> None:
    assert layer_compression(mf.DOCKER_LAYER_GZIP) == "gzip"
    assert layer_compression(mf.OCI_LAYER) == ""
    with pytest.raises(NotSupported, match="unsupported layer media type"):
        layer_compression("application/vnd.cncf.helm.chart.content.v1.tar+gzip")


def bad(doc: Any, header: str | None = mf.OCI_MANIFEST) -> str:
    raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    with pytest.raises(InvalidArgument) as info:
        parse_manifest(raw, header)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def with_(path: list[Any], value: Any, base: dict[str, Any] | None = None) -> dict[str, Any]:
    doc = base if base is not None else oci_manifest_doc()
    target: Any = doc
    for p in path[:-1]:
        target = target[p]
    if value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


@pytest.mark.parametrize("path,value,field", [
    (["schemaVersion"], ..., "schemaVersion"),
    (["schemaVersion"], 3, "schemaVersion"),
    (["schemaVersion"], "2", "schemaVersion"),
    (["schemaVersion"], True, "schemaVersion"),
    (["config"], ..., "config"),
    (["config"], [], "config"),
    (["layers"], ..., "layers"),
    (["layers"], {}, "layers"),
    (["config", "digest"], ..., "config.digest"),
    (["config", "digest"], "sha256:abc", "config.digest"),
    (["config", "mediaType"], ..., "config.mediaType"),
    (["layers", 1, "digest"], "md5:" + "a" * 32, "layers[1].digest"),
    (["layers", 1, "digest"], 5, "layers[1].digest"),
    (["layers", 1, "size"], -1, "layers[1].size"),
    (["layers", 1, "size"], "310", "layers[1].size"),
    (["layers", 1, "size"], True, "layers[1].size"),
    (["layers", 1, "size"], ..., "layers[1].size"),
    (["layers", 2, "urls"], "https://x", "layers[2].urls"),
    (["layers", 0, "annotations"], {"a": 1}, "layers[0].annotations"),
    (["layers", 0, "platform"], "linux/amd64", "layers[0].platform"),
    (["layers", 0], "sha256:x", "layers[0]"),
    (["annotations"], [], "annotations"),
    (["mediaType"], 7, "mediaType"),
])
def test_bad_manifest_fields_are_named(path: list[Any], value: Any, field: str) -> None:
    msg = bad(with_(path, value))
    assert msg.startswith(f"invalid manifest: {field}: "), msg


def test_bad_index_fields_are_named() -> None:
    base = json.loads(hub_oci_index())
    assert "manifests: missing" in bad(with_(["manifests"], ..., dict(base)), mf.OCI_INDEX)
    base = json.loads(hub_oci_index())
    msg = bad(with_(["manifests", 1, "platform", "variant"], 8, base), mf.OCI_INDEX)
    assert msg.startswith("invalid manifest: manifests[1].platform.variant: ")


@pytest.mark.parametrize("raw,needle", [
    (b"", "not JSON"),
    (b"{", "not JSON"),
    (b"\xff\xfe", "not JSON"),
    (b"[]", "not a JSON object"),
    (b'"manifest"', "not a JSON object"),
])
def test_not_a_manifest_at_all(raw: bytes, needle: str) -> None:
    assert needle in bad(raw)


def test_header_and_body_must_agree() -> None:
    msg = bad(oci_manifest_doc(), mf.DOCKER_MANIFEST)
    assert "mediaType" in msg and "does not match" in msg


def test_unknown_media_types_are_refused() -> None:
    assert "unsupported manifest media type" in bad(b"{}", "application/vnd.example+json")
    doc = with_(["mediaType"], "application/vnd.example+json")
    assert "unsupported manifest media type" in bad(doc, None)
    assert "neither a manifest nor an index" in bad({"schemaVersion": 2}, None)


# --- platforms --------------------------------------------------------------------------

@pytest.mark.parametrize("machine,expected", [
    ("x86_64", Platform("linux", "amd64")),
    ("aarch64", Platform("linux", "arm64", "v8")),
    ("armv7l", Platform("linux", "arm", "v7")),
    ("armv6l", Platform("linux", "arm", "v6")),
    ("i686", Platform("linux", "386")),
    ("s390x", Platform("linux", "s390x")),
    ("ppc64le", Platform("linux", "ppc64le")),
])
def test_host_platform(monkeypatch: pytest.MonkeyPatch, machine: str, expected: Platform) -> None:
    fake = os.uname_result(("Linux", "host", "6.1.0", "#1 SMP", machine))
    monkeypatch.setattr(os, "uname", lambda: fake)
    assert host_platform() == expected


def test_host_platform_of_this_machine_is_linux() -> None:
    p = host_platform()
    assert p.os == "linux" and p.architecture and "_" not in p.architecture


@pytest.mark.parametrize("s,expected", [
    ("linux/arm64/v8", Platform("linux", "arm64", "v8")),
    ("linux/arm64", Platform("linux", "arm64")),
    ("linux/aarch64", Platform("linux", "arm64")),
    ("linux/amd64", Platform("linux", "amd64")),
    ("linux/x86_64", Platform("linux", "amd64")),
    ("Linux/AMD64", Platform("linux", "amd64")),
    ("linux/amd64/v3", Platform("linux", "amd64", "v3")),
    ("linux/amd64/v1", Platform("linux", "amd64")),
    ("linux/arm", Platform("linux", "arm")),
    ("linux/armhf", Platform("linux", "arm")),
    ("linux/armel", Platform("linux", "arm", "v6")),
    ("linux/arm/7", Platform("linux", "arm", "v7")),
    ("linux/arm/v6", Platform("linux", "arm", "v6")),
    ("linux/i386", Platform("linux", "386")),
    ("windows/amd64", Platform("windows", "amd64")),
])
def test_platform_from_string(s: str, expected: Platform) -> None:
    assert platform_from_string(s) == expected


def test_platform_from_string_fills_in_from_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = os.uname_result(("Linux", "host", "6.1.0", "#1 SMP", "aarch64"))
    monkeypatch.setattr(os, "uname", lambda: fake)
    assert platform_from_string("linux") == Platform("linux", "arm64", "v8")
    assert platform_from_string("s390x") == Platform("linux", "s390x")


@pytest.mark.parametrize("s", ["", "linux/*", "linux/amd64/v8/x", "linux/amd 64", "linux//v7",
                               "/amd64"])
def test_bad_platform_strings(s: str) -> None:
    with pytest.raises(InvalidArgument):
        platform_from_string(s)


def test_platform_str_is_containerd_format() -> None:
    assert str(Platform("linux", "arm64", "v8")) == "linux/arm64/v8"
    assert str(Platform("linux", "amd64")) == "linux/amd64"


def chosen(idx: Index, want: str) -> Platform | None:
    return select_platform(idx, P(want)).platform


@pytest.mark.parametrize("want,expected", [
    ("linux/amd64", "linux/amd64"),
    ("linux/arm64", "linux/arm64/v8"),
    ("linux/arm64/v8", "linux/arm64/v8"),
    ("linux/arm", "linux/arm/v7"),
    ("linux/arm/v7", "linux/arm/v7"),
    ("linux/arm/v6", "linux/arm/v6"),
    ("linux/arm/v5", "linux/arm/v5"),
    ("linux/386", "linux/386"),
    ("linux/s390x", "linux/s390x"),
    ("linux/mips64le", "linux/mips64le"),
])
def test_select_from_docker_hub_list(want: str, expected: str) -> None:
    idx = parse_manifest(hub_list(), None)
    assert isinstance(idx, Index)
    assert chosen(idx, want) == P(expected)


def test_select_skips_attestations() -> None:
    idx = parse_manifest(hub_oci_index(), None)
    assert isinstance(idx, Index)
    assert select_platform(idx, P("linux/arm64/v8")) is idx.manifests[1]
    assert select_platform(idx, P("linux/amd64")) is idx.manifests[0]
    with pytest.raises(NotFound):
        select_platform(idx, P("linux/s390x"))


@pytest.mark.parametrize("have,want,expected", [
    # arm64 entries written without a variant are v8.
    (["linux/arm64", "linux/amd64"], "linux/arm64/v8", "linux/arm64"),
    # arm without a variant is v7.
    (["linux/arm/v6", "linux/arm"], "linux/arm/v7", "linux/arm"),
    # arm/v7 can run v6 and v5: the best one it can run wins, wherever it sits.
    (["linux/arm/v5", "linux/arm/v6"], "linux/arm/v7", "linux/arm/v6"),
    (["linux/arm/v6", "linux/arm/v8", "linux/arm/v7"], "linux/arm/v7", "linux/arm/v7"),
    # arm64 runs 32-bit arm when nothing better is there, and prefers arm64.
    (["linux/arm/v7"], "linux/arm64", "linux/arm/v7"),
    (["linux/arm/v7", "linux/arm64/v8"], "linux/arm64", "linux/arm64/v8"),
    # amd64 runs 386 as a last resort.
    (["linux/386"], "linux/amd64", "linux/386"),
    (["linux/386", "linux/amd64"], "linux/amd64", "linux/amd64"),
    # amd64 micro-architecture levels: best one not above the wanted level.
    (["linux/amd64/v2", "linux/amd64"], "linux/amd64/v3", "linux/amd64/v2"),
    (["linux/amd64/v3", "linux/amd64/v1"], "linux/amd64/v2", "linux/amd64/v1"),
    (["linux/arm64/v8", "linux/arm64/v8.2"], "linux/arm64/v8.2", "linux/arm64/v8.2"),
    (["linux/arm64/v8"], "linux/arm64/v9", "linux/arm64/v8"),
])
def test_variant_rules(have: list[str], want: str, expected: str) -> None:
    assert chosen(index_of(*[P(h) for h in have]), want) == P(expected)


@pytest.mark.parametrize("have,want", [
    (["linux/arm/v7", "linux/arm/v6"], "linux/arm/v5"),
    (["linux/arm64/v8.2"], "linux/arm64"),
    (["linux/amd64/v2"], "linux/amd64"),
    (["linux/amd64"], "linux/386"),
    (["linux/arm64"], "linux/arm/v7"),
    (["windows/amd64"], "linux/amd64"),
])
def test_variants_a_platform_cannot_run(have: list[str], want: str) -> None:
    with pytest.raises(NotFound):
        select_platform(index_of(*[P(h) for h in have]), P(want))


def test_not_found_message_is_dockers() -> None:
    with pytest.raises(NotFound) as info:
        select_platform(index_of(P("linux/arm64")), P("linux/amd64"))
    assert str(info.value) == "no matching manifest for linux/amd64 in the manifest list entries"
    with pytest.raises(NotFound) as info:
        select_platform(index_of(P("linux/amd64")), P("linux/arm/v7"))
    assert str(info.value) == (
        "no matching manifest for linux/arm/v7 in the manifest list entries")


def test_first_of_equal_entries_wins() -> None:
    idx = index_of(P("linux/amd64"), P("linux/amd64"))
    assert select_platform(idx, P("linux/amd64")) is idx.manifests[0]


def test_entries_without_platform_are_the_last_resort() -> None:
    idx = index_of(None, P("linux/arm64"))
    assert select_platform(idx, P("linux/arm64")) is idx.manifests[1]
    assert select_platform(idx, P("linux/amd64")) is idx.manifests[0]


def test_os_features_must_be_wanted() -> None:
    win = Platform("windows", "amd64", os_features=("win32k",))
    idx = index_of(win)
    with pytest.raises(NotFound):
        select_platform(idx, Platform("windows", "amd64"))
    assert select_platform(idx, win) is idx.manifests[0]


def test_empty_want_means_this_host() -> None:
    host = host_platform()
    idx = index_of(P("plan9/mips"), host)
    assert select_platform(idx, Platform("", "")) is idx.manifests[1]
