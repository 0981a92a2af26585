"""Image manifests and indexes: Docker schema 2 and its manifest list, OCI manifest and index.

Parsing takes untrusted registry bytes and either returns typed objects or raises
``InvalidArgument`` naming the offending field. ``to_json`` writes the bytes pallet pushes:
the key order of the Go structs Docker serialises (distribution's schema2/manifestlist,
image-spec's v1 types), three-space indentation as distribution's ``MarshalIndent`` does,
and Go's escaping of ``<``, ``>`` and ``&``, so a manifest pallet writes is byte-for-byte
the one Docker would write for the same content.

Platform matching is containerd's ``platforms.Only`` (what dockerd uses): os and
architecture must match after normalisation; the variant must match exactly or be one the
wanted platform can also run (arm/v7 runs v6 and v5, arm64 runs arm, amd64 runs 386),
best first.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from pallet.errors import InvalidArgument, NotFound, NotSupported
from pallet.image.digest import Digest, digest_error

# Docker (distribution) schema 2
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_PLUGIN_CONFIG = "application/vnd.docker.plugin.v1+json"
# Docker schema 1: recognised only to refuse it clearly.
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

# OCI image-spec v1
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_NONDIST = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_NONDIST_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_LAYER_NONDIST_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"

MANIFEST_TYPES = (DOCKER_MANIFEST, OCI_MANIFEST)
INDEX_TYPES = (DOCKER_MANIFEST_LIST, OCI_INDEX)
SCHEMA1_TYPES = (DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED)
# Every manifest type pallet can use, best first: the Accept header of a manifest GET.
ACCEPT = (OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST)
CONFIG_TYPES = (DOCKER_CONFIG, OCI_CONFIG)

# Layer media type -> compression of its blob ("" = plain tar).
LAYER_COMPRESSION = {
    DOCKER_LAYER_GZIP: "gzip",
    DOCKER_LAYER_TAR: "",
    DOCKER_FOREIGN_LAYER: "gzip",
    OCI_LAYER: "",
    OCI_LAYER_GZIP: "gzip",
    OCI_LAYER_ZSTD: "zstd",
    OCI_LAYER_NONDIST: "",
    OCI_LAYER_NONDIST_GZIP: "gzip",
    OCI_LAYER_NONDIST_ZSTD: "zstd",
}
FOREIGN_LAYER_TYPES = (
    DOCKER_FOREIGN_LAYER, OCI_LAYER_NONDIST, OCI_LAYER_NONDIST_GZIP, OCI_LAYER_NONDIST_ZSTD,
)
# What registries answer when they do not know better; the body's mediaType decides then.
_GENERIC_TYPES = ("", "application/json", "application/octet-stream", "text/plain")


@dataclass(frozen=True, slots=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = ()

    def __str__(self) -> str:
        """containerd's ``Format``: ``os/arch[/variant]``."""
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(slots=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    urls: list[str] = field(default_factory=list)
    annotations: dict[str, str] = field(default_factory=dict)
    platform: Platform | None = None


@dataclass(slots=True)
class Manifest:
    media_type: str
    config: Descriptor
    layers: list[Descriptor]
    annotations: dict[str, str] = field(default_factory=dict)
    schema_version: int = 2


@dataclass(slots=True)
class Index:
    media_type: str
    manifests: list[Descriptor]
    annotations: dict[str, str] = field(default_factory=dict)
    schema_version: int = 2


def layer_compression(media_type: str) -> str:
    """"gzip", "zstd" or "" (plain tar) for a layer media type; NotSupported otherwise."""
    try:
        return LAYER_COMPRESSION[media_type]
    except KeyError:
        raise NotSupported(f"unsupported layer media type: {media_type}",
                           op="unpack layer", obj=media_type) from None


# --- parsing ------------------------------------------------------------------------------

def _bad(where: str, why: str) -> InvalidArgument:
    return InvalidArgument(f"invalid manifest: {where}: {why}", op="parse manifest", obj=where)


def _str(v: object, where: str, required: bool = False) -> str:
    if v is None and not required:
        return ""
    if not isinstance(v, str):
        raise _bad(where, "must be a string" if v is not None else "missing")
    return v


def _str_list(v: object, where: str) -> list[str]:
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise _bad(where, "must be a list of strings")
    return list(v)


def _str_map(v: object, where: str) -> dict[str, str]:
    if v is None:
        return {}
    if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
        raise _bad(where, "must be an object of strings")
    return dict(v)


def _platform(v: object, where: str) -> Platform | None:
    if v is None:
        return None
    if not isinstance(v, dict):
        raise _bad(where, "must be an object")
    return Platform(
        os=_str(v.get("os"), f"{where}.os"),
        architecture=_str(v.get("architecture"), f"{where}.architecture"),
        variant=_str(v.get("variant"), f"{where}.variant"),
        os_version=_str(v.get("os.version"), f"{where}.os.version"),
        os_features=tuple(_str_list(v.get("os.features"), f"{where}.os.features")),
    )


def _descriptor(v: object, where: str) -> Descriptor:
    if not isinstance(v, dict):
        raise _bad(where, "must be an object" if v is not None else "missing")
    media_type = _str(v.get("mediaType"), f"{where}.mediaType", required=True)
    d = v.get("digest")
    if not isinstance(d, str):
        raise _bad(f"{where}.digest", "must be a string" if d is not None else "missing")
    err = digest_error(d)
    if err:
        raise _bad(f"{where}.digest", err)
    size = v.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _bad(f"{where}.size", "must be a non-negative integer"
                   if size is not None else "missing")
    return Descriptor(
        media_type=media_type,
        digest=Digest.parse(d),
        size=size,
        urls=_str_list(v.get("urls"), f"{where}.urls"),
        annotations=_str_map(v.get("annotations"), f"{where}.annotations"),
        platform=_platform(v.get("platform"), f"{where}.platform"),
    )


def _refuse_schema1() -> NotSupported:
    return NotSupported(
        "unsupported manifest format: Docker Image manifest version 2, schema 1 is deprecated "
        "and no longer supported (as in Docker); push the image again in the OCI or Docker "
        "schema 2 format", op="parse manifest", obj=DOCKER_SCHEMA1)


def _detect(doc: dict[str, Any], header: str) -> str:
    body_type = doc.get("mediaType")
    if body_type is not None and not isinstance(body_type, str):
        raise _bad("mediaType", "must be a string")
    version = doc.get("schemaVersion")
    schema1 = version == 1 and not isinstance(version, bool)
    if header in SCHEMA1_TYPES or body_type in SCHEMA1_TYPES or schema1:
        raise _refuse_schema1()
    if header not in _GENERIC_TYPES:
        if header not in MANIFEST_TYPES + INDEX_TYPES:
            raise InvalidArgument(f"unsupported manifest media type: {header}",
                                  op="parse manifest", obj=header)
        if body_type and body_type != header:
            raise _bad("mediaType", f"{body_type} does not match Content-Type {header}")
        return header
    if body_type:
        if body_type not in MANIFEST_TYPES + INDEX_TYPES:
            raise InvalidArgument(f"unsupported manifest media type: {body_type}",
                                  op="parse manifest", obj=body_type)
        return body_type
    # OCI makes mediaType optional in the body; the shape tells manifest from index.
    if "manifests" in doc:
        return OCI_INDEX
    if "config" in doc or "layers" in doc:
        return OCI_MANIFEST
    raise _bad("mediaType", "missing, and the document is neither a manifest nor an index")


def parse_manifest(data: bytes, media_type: str | None = None) -> Manifest | Index:
    """Parse a manifest or index. ``media_type`` is the Content-Type it came with, if any."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"invalid manifest: not JSON: {exc}", op="parse manifest") from exc
    if not isinstance(doc, dict):
        raise InvalidArgument("invalid manifest: not a JSON object", op="parse manifest")
    header = (media_type or "").partition(";")[0].strip().lower()
    kind = _detect(doc, header)
    version = doc.get("schemaVersion")
    if version != 2 or isinstance(version, bool):
        raise _bad("schemaVersion", f"must be 2, got {version!r}" if version is not None
                   else "missing")
    annotations = _str_map(doc.get("annotations"), "annotations")
    if kind in INDEX_TYPES:
        entries = doc.get("manifests")
        if not isinstance(entries, list):
            raise _bad("manifests", "must be a list" if entries is not None else "missing")
        return Index(kind, [_descriptor(e, f"manifests[{i}]") for i, e in enumerate(entries)],
                     annotations)
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise _bad("layers", "must be a list" if layers is not None else "missing")
    return Manifest(kind, _descriptor(doc.get("config"), "config"),
                    [_descriptor(e, f"layers[{i}]") for i, e in enumerate(layers)], annotations)


# --- writing ------------------------------------------------------------------------------

def _platform_json(p: Platform) -> dict[str, Any]:
    out: dict[str, Any] = {"architecture": p.architecture, "os": p.os}
    if p.os_version:
        out["os.version"] = p.os_version
    if p.os_features:
        out["os.features"] = list(p.os_features)
    if p.variant:
        out["variant"] = p.variant
    return out


def _descriptor_json(d: Descriptor, docker: bool) -> dict[str, Any]:
    # distribution.Descriptor orders size before digest; image-spec's Descriptor after.
    out: dict[str, Any] = {"mediaType": d.media_type}
    if docker:
        out["size"] = d.size
        out["digest"] = str(d.digest)
    else:
        out["digest"] = str(d.digest)
        out["size"] = d.size
    if d.urls:
        out["urls"] = list(d.urls)
    if d.annotations:
        out["annotations"] = dict(d.annotations)
    if d.platform is not None:
        out["platform"] = _platform_json(d.platform)
    return out


def go_json(obj: Any, indent: str | None = None) -> bytes:
    """JSON as Go's encoding/json writes it: UTF-8, HTML-safe escapes, no trailing newline."""
    if indent is None:
        text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    else:
        text = json.dumps(obj, ensure_ascii=False, indent=indent)
    # These characters only ever appear inside JSON strings, so a plain replace is safe.
    for ch, esc in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text.encode()


def to_json(m: Manifest | Index) -> bytes:
    """The canonical bytes of ``m`` for pushing (their sha256 is the manifest's digest)."""
    docker = m.media_type in (DOCKER_MANIFEST, DOCKER_MANIFEST_LIST)
    out: dict[str, Any] = {"schemaVersion": m.schema_version, "mediaType": m.media_type}
    if isinstance(m, Index):
        out["manifests"] = [_descriptor_json(d, docker) for d in m.manifests]
    else:
        out["config"] = _descriptor_json(m.config, docker)
        out["layers"] = [_descriptor_json(d, docker) for d in m.layers]
    if m.annotations:
        out["annotations"] = dict(m.annotations)
    return go_json(out, indent="   ")


# --- platforms ----------------------------------------------------------------------------

# os.uname().machine -> (GOARCH, variant)
_UNAME_ARCH = {
    "x86_64": ("amd64", ""), "amd64": ("amd64", ""),
    "aarch64": ("arm64", "v8"), "arm64": ("arm64", "v8"),
    "armv8l": ("arm", "v8"), "armv7l": ("arm", "v7"), "armv6l": ("arm", "v6"),
    "armv5tel": ("arm", "v5"),
    "i386": ("386", ""), "i486": ("386", ""), "i586": ("386", ""), "i686": ("386", ""),
    "ppc64le": ("ppc64le", ""), "ppc64": ("ppc64", ""), "s390x": ("s390x", ""),
    "riscv64": ("riscv64", ""), "loongarch64": ("loong64", ""),
    "mips64": ("mips64", ""), "mips": ("mips", ""),
}


def host_platform() -> Platform:
    """This machine's platform as Docker names it (``linux/arm64/v8`` on aarch64)."""
    u = os.uname()
    arch, variant = _UNAME_ARCH.get(u.machine, (u.machine.lower(), ""))
    return Platform(os=u.sysname.lower(), architecture=arch, variant=variant)


def _normalize_arch(arch: str, variant: str) -> tuple[str, str]:
    """containerd's normalizeArch: the canonical (architecture, variant) pair."""
    arch, variant = arch.lower(), variant.lower()
    if arch == "i386":
        return "386", ""
    if arch in ("x86_64", "x86-64", "amd64"):
        return "amd64", "" if variant == "v1" else variant
    if arch in ("aarch64", "arm64"):
        return "arm64", "" if variant in ("8", "v8") else variant
    if arch == "armhf":
        return "arm", "v7"
    if arch == "armel":
        return "arm", "v6"
    if arch == "arm":
        if variant in ("", "7"):
            return "arm", "v7"
        if variant in ("5", "6", "8"):
            return "arm", "v" + variant
    return arch, variant


def normalize_platform(p: Platform) -> Platform:
    """containerd's Normalize (arm64/v8 and amd64/v1 lose their variant, arm gains v7)."""
    arch, variant = _normalize_arch(p.architecture, p.variant)
    os_name = "darwin" if p.os.lower() == "macos" else p.os.lower()
    return Platform(os_name, arch, variant, p.os_version, tuple(sorted(set(p.os_features))))


_SPECIFIER_RE = re.compile(r"[A-Za-z0-9_.-]+")
_KNOWN_OS = frozenset(("aix", "android", "darwin", "dragonfly", "freebsd", "hurd", "illumos",
                       "ios", "js", "linux", "nacl", "netbsd", "openbsd", "plan9", "solaris",
                       "windows", "zos"))


def platform_from_string(s: str) -> Platform:
    """containerd's ``platforms.Parse``: ``os[/arch[/variant]]``, or a bare os or arch."""
    if "*" in s:
        raise InvalidArgument(f"{s!r}: wildcards not yet supported", op="parse platform", obj=s)
    parts = s.split("/")
    if len(parts) > 3 or not all(_SPECIFIER_RE.fullmatch(p) for p in parts):
        raise InvalidArgument(f"{s!r}: cannot parse platform specifier", op="parse platform",
                              obj=s)
    host = host_platform()
    first = parts[0].lower()
    if len(parts) == 1:
        if first in _KNOWN_OS:
            return Platform(first, host.architecture, host.variant)
        arch, variant = _normalize_arch(parts[0], "")
        return Platform(host.os, arch, "" if (arch, variant) == ("arm", "v7") else variant)
    os_name = "darwin" if first == "macos" else first
    if len(parts) == 2:
        arch, variant = _normalize_arch(parts[1], "")
        return Platform(os_name, arch, "" if (arch, variant) == ("arm", "v7") else variant)
    arch, variant = _normalize_arch(parts[1], parts[2])
    return Platform(os_name, arch, "v8" if arch == "arm64" and not variant else variant)


def _vector(p: Platform) -> list[Platform]:
    """containerd's platformVector: what ``p`` can run, best first (``p`` normalised)."""
    out = [p]

    def same(arch: str, variant: str) -> Platform:
        return Platform(p.os, arch, variant, p.os_version, p.os_features)

    def version(variant: str) -> int | None:
        v = variant.removeprefix("v")
        return int(v) if v.isdigit() else None

    if p.architecture == "amd64":
        n = version(p.variant)
        if n is not None and n > 1:
            out += [same("amd64", f"v{k}") for k in range(n - 1, 0, -1)]
        out.append(same("386", ""))
    elif p.architecture == "arm":
        n = version(p.variant)
        if n is not None and n > 5:
            out += [same("arm", f"v{k}") for k in range(n - 1, 4, -1)]
    elif p.architecture == "arm64":
        variant = p.variant or "v8"
        major_s, dot, minor_s = variant.partition(".")
        major = version(major_s)
        if major is not None and major >= 8:
            minor = int(minor_s) if dot and len(variant) == 4 and minor_s.isdigit() else 0
            if major == 9:
                out += [same("arm64", f"v9.{k}" if k else "v9") for k in range(minor - 1, -1, -1)]
                # v9.x diverged from v8.(x+5) and runs everything that does.
                minor, major = minor + 5, 8
                out.append(same("arm64", f"v8.{minor}"))
            out += [same("arm64", f"v{major}.{k}" if k else f"v{major}")
                    for k in range(minor - 1, -1, -1)]
        if variant.startswith(("v8.", "v9.")):
            variant = "v8"
        out += _vector(same("arm", variant))
    return [normalize_platform(x) for x in out]


def _matches(want: Platform, have: Platform) -> bool:
    """containerd's matcher: equal os/arch/variant once normalised; the image's os features
    must be a subset of the wanted ones."""
    h = normalize_platform(have)
    return ((want.os, want.architecture, want.variant) == (h.os, h.architecture, h.variant)
            and set(h.os_features) <= set(want.os_features))


def select_platform(index: Index, want: Platform) -> Descriptor:
    """The index entry to pull for ``want`` (empty os/architecture mean this host's).

    Entries are ranked by containerd's preference vector for ``want``; ties keep index
    order. Entries without a platform come last, as containerd orders them: the caller
    learns their platform only from their config.
    """
    host = host_platform()
    full = Platform(
        want.os or host.os,
        want.architecture or host.architecture,
        want.variant if want.architecture else host.variant,
        want.os_version, want.os_features,
    )
    vector = _vector(normalize_platform(full))
    best: tuple[int, Descriptor] | None = None
    unplatformed: Descriptor | None = None
    for d in index.manifests:
        if d.platform is None:
            unplatformed = unplatformed or d
            continue
        for rank, candidate in enumerate(vector):
            if _matches(candidate, d.platform):
                if best is None or rank < best[0]:
                    best = (rank, d)
                break
    if best is not None:
        return best[1]
    if unplatformed is not None:
        return unplatformed
    raise NotFound(f"no matching manifest for {full} in the manifest list entries",
                   op="select platform", obj=str(full))
