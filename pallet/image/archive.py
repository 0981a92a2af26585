"""Image archives as ``docker save`` writes them and ``docker load`` reads them.

Three layouts come in, one goes out::

    docker 20.10           docker 25+ (what we write)         OCI image layout tar
    manifest.json          manifest.json  -> blobs/...         oci-layout
    repositories           repositories                        index.json
    <config-hex>.json      oci-layout, index.json              blobs/sha256/<hex>
    <v1-id>/layer.tar      blobs/sha256/<hex> (config, layers, manifest)
    <v1-id>/json, VERSION

A docker 25 archive is both at once: manifest.json's Config and Layers paths point into
``blobs/sha256/``, so docker 20.10 loads it through manifest.json and OCI tools through
index.json, with no byte stored twice. Its layers are plain tars named by their diff_id
(a gzip or zstd blob in the store is decompressed on the fly: measured in one pass, then
written in a second, so nothing is held in memory or spooled to disk).

A tar is a stream, and manifest.json may well come last: every member is ingested into the
content store as it passes, by the digest its name claims (``blobs/sha256/<hex>``, docker's
``<config-hex>.json``; verified before it lands) or, for docker 20.10's ``layer.tar``, by
the digest its bytes turn out to have; the manifests are resolved at the end. Member
names with ``..`` or a leading ``/``, links that lead out of the archive, device nodes and
oversized documents are refused, naming the member. A refused archive leaves only
complete, verified blobs that nothing references, for prune to collect.
"""

from __future__ import annotations

import datetime
import json
import posixpath
import re
import tarfile
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from pallet.errors import InvalidArgument, InvalidState, NotFound, NotSupported
from pallet.image.config import parse_config
from pallet.image.digest import Digest, Hasher
from pallet.image.ingest import (
    CHUNK,
    MAX_DOCUMENT,
    BlobInfo,
    check_diff,
    ingest_stream,
    read_document,
)
from pallet.image.manifest import (
    DOCKER_LAYER_GZIP,
    DOCKER_LAYER_TAR,
    OCI_LAYER,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
    Platform,
    go_json,
)
from pallet.image.ocilayout import (
    INDEX_FILE,
    LAYOUT_BYTES,
    LAYOUT_FILE,
    ArchiveImage,
    Layer,
    LoadedImage,
    check_layout_version,
    familiar_tag,
    index_entries,
    index_json,
    load_config,
    oci_manifest,
    parse_tags,
    platform_json,
    read_oci_layout,
    resolve_index,
    write_oci_layout,
)
from pallet.image.reference import Reference
from pallet.image.store import ContentStore
from pallet.storage.compression import Compression, open_decompressed

__all__ = [
    "ArchiveImage", "Layer", "LoadedImage", "read_archive", "read_oci_layout",
    "write_docker_archive", "write_oci_layout",
]

MANIFEST_FILE = "manifest.json"
REPOSITORIES_FILE = "repositories"
_DOCUMENTS = (MANIFEST_FILE, REPOSITORIES_FILE, INDEX_FILE, LAYOUT_FILE)
# docker 20.10's per-layer leftovers of the v1 format: nothing reads them any more.
_LEGACY_FILES = ("json", "VERSION")
_MAX_MEMBERS = 1 << 16
_MAX_LINK_HOPS = 16
# PAX and GNU long-name headers are read whole by tarfile; real ones are tiny.
_MAX_EXTENDED_HEADER = 1 << 20
_EXTENDED_HEADER_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
                          tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
_HEX = re.compile(r"[0-9a-f]{64}")
_LAYER_TYPE = {Compression.NONE: DOCKER_LAYER_TAR, Compression.GZIP: DOCKER_LAYER_GZIP,
               Compression.ZSTD: OCI_LAYER_ZSTD}


# --- writing ------------------------------------------------------------------------------

class _TarWriter:
    """Headers and data straight onto ``out``: nothing is buffered beyond one chunk."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out

    def _header(self, name: str, size: int, mtime: int, kind: bytes, mode: int) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.type, info.mode = size, mtime, kind, mode
        self._out.write(info.tobuf(tarfile.PAX_FORMAT))

    def _pad(self, size: int) -> None:
        if size % tarfile.BLOCKSIZE:
            self._out.write(bytes(tarfile.BLOCKSIZE - size % tarfile.BLOCKSIZE))

    def directory(self, name: str) -> None:
        self._header(name, 0, 0, tarfile.DIRTYPE, 0o755)

    def file(self, name: str, data: bytes, mtime: int = 0) -> None:
        self._header(name, len(data), mtime, tarfile.REGTYPE, 0o644)
        self._out.write(data)
        self._pad(len(data))

    def stream(self, name: str, size: int, src: BinaryIO, mtime: int) -> Digest:
        """Copy exactly ``size`` bytes of ``src``; the digest of what was written."""
        self._header(name, size, mtime, tarfile.REGTYPE, 0o644)
        hasher = Hasher()
        while hasher.size < size and (chunk := src.read(min(CHUNK, size - hasher.size))):
            self._out.write(chunk)
            hasher.update(chunk)
        if hasher.size != size or src.read(1):
            raise InvalidState(f"{name}: content changed while it was written", obj=name)
        self._pad(size)
        return hasher.digest()

    def close(self) -> None:
        self._out.write(bytes(2 * tarfile.BLOCKSIZE))


@dataclass(slots=True)
class _Plan:
    image: ArchiveImage
    config: bytes
    platform: dict[str, str]
    tags: list[Reference] = field(default_factory=list)
    mtime: int = 0


def _epoch(created: str) -> int:
    """Seconds of an RFC 3339 time (nanoseconds allowed); 0 when it is none."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.\d+)?(Z|[+-]\d\d:\d\d)", created)
    if m is None:
        return 0
    zone = "+00:00" if m.group(2) == "Z" else m.group(2)
    return max(0, int(datetime.datetime.fromisoformat(m.group(1) + zone).timestamp()))


def _plans(store: ContentStore, images: list[ArchiveImage]) -> list[_Plan]:
    plans: dict[Digest, _Plan] = {}
    for img in images:
        data, cfg = load_config(store, img)
        for layer in img.layers:
            if not (store.exists(layer.diff_id) or store.exists(layer.digest)):
                raise NotFound(f"layer {layer.digest} of image {img.config} is not in the "
                               "store", op="save", obj=str(layer.digest))
        plan = plans.get(img.config)
        if plan is None:
            plan = plans[img.config] = _Plan(img, data, platform_json(cfg),
                                             mtime=_epoch(cfg.created))
        for t in parse_tags(img.repo_tags, img.config):
            if t not in plan.tags:
                plan.tags.append(t)
    return list(plans.values())


def _blob_name(d: Digest) -> str:
    return f"blobs/{d.algorithm}/{d.hex}"


def _write_layer(tar: _TarWriter, store: ContentStore, layer: Layer, mtime: int) -> int:
    """Write the layer as the plain tar its diff_id names; its size in the archive."""
    name = _blob_name(layer.diff_id)
    if store.exists(layer.diff_id):  # stored plain (also when digest == diff_id)
        size = store.size(layer.diff_id)
        with store.open(layer.diff_id) as f:
            written = tar.stream(name, size, f, mtime)
        if written != layer.diff_id:
            raise InvalidState(f"blob {layer.diff_id} in the store is corrupt",
                               obj=str(layer.diff_id))
        return size
    # Compressed: one pass to learn the plain size (a tar header comes first), one to write.
    hasher = Hasher()
    with store.open(layer.digest) as raw:
        plain = open_decompressed(raw)
        while chunk := plain.read(CHUNK):
            hasher.update(chunk)
    if hasher.digest() != layer.diff_id:
        raise InvalidState(f"layer {layer.digest} does not decompress to its diff_id "
                           f"{layer.diff_id}", obj=str(layer.digest))
    with store.open(layer.digest) as raw:
        tar.stream(name, hasher.size, open_decompressed(raw), mtime)
    return hasher.size


def write_docker_archive(out: BinaryIO, store: ContentStore,
                         images: list[ArchiveImage]) -> None:
    """``docker save`` of ``images`` onto ``out``: docker 25's combined layout, streamed.

    Raises before writing anything when an image is inconsistent (missing blob, layers
    that are not the config's); a blob found corrupt half way raises InvalidState, and
    what was written by then is not a valid archive.
    """
    plans = _plans(store, images)
    tar = _TarWriter(out)
    tar.directory("blobs/")
    tar.directory("blobs/sha256/")
    written: dict[Digest, int] = {}  # what is in the archive already, with its size
    items: list[dict[str, Any]] = []
    entries: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    for plan in plans:
        img = plan.image
        if img.config not in written:
            tar.file(_blob_name(img.config), plan.config, plan.mtime)
            written[img.config] = len(plan.config)
        for layer in img.layers:
            if layer.diff_id not in written:
                written[layer.diff_id] = _write_layer(tar, store, layer, plan.mtime)
        manifest = oci_manifest(img.config, len(plan.config), plan.platform,
                                [(OCI_LAYER, x.diff_id, written[x.diff_id]) for x in img.layers])
        digest = Digest.of_bytes(manifest)
        if digest not in written:
            tar.file(_blob_name(digest), manifest)
            written[digest] = len(manifest)
        entries += index_entries(OCI_MANIFEST, digest, len(manifest), plan.platform, plan.tags)
        item: dict[str, Any] = {
            "Config": _blob_name(img.config),
            "RepoTags": [t.familiar() for t in plan.tags] or None,
            "Layers": [_blob_name(x.diff_id) for x in img.layers],
        }
        if img.layers:
            # docker 25+ describes every layer here; docker 20.10 reads it for foreign ones.
            item["LayerSources"] = {str(x.diff_id): {
                "mediaType": OCI_LAYER, "size": written[x.diff_id], "digest": str(x.diff_id),
            } for x in img.layers}
        items.append(item)
        if img.layers:
            for t in plan.tags:
                repositories.setdefault(t.familiar_name(), {})[t.tag_or_latest()] = \
                    img.layers[-1].diff_id.hex
    tar.file(INDEX_FILE, index_json(entries))
    tar.file(MANIFEST_FILE, go_json(items) + b"\n")
    tar.file(LAYOUT_FILE, LAYOUT_BYTES)
    if repositories:
        tar.file(REPOSITORIES_FILE, go_json(dict(sorted(repositories.items()))) + b"\n")
    tar.close()


# --- reading ------------------------------------------------------------------------------

class _BoundedTarInfo(tarfile.TarInfo):
    """tarfile reads an extended header whole: refuse one too large to be honest."""

    def _proc_member(self, tf: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _EXTENDED_HEADER_TYPES and self.size > _MAX_EXTENDED_HEADER:
            raise InvalidArgument(f"archive: extended tar header of {self.size} bytes")
        proc: Any = tarfile.TarInfo._proc_member  # type: ignore[attr-defined]
        result: tarfile.TarInfo = proc(self, tf)
        return result


def _clean(name: str, what: str) -> str:
    """A member path relative to the archive root; refuses anything that leaves it."""
    if name.startswith("/"):
        raise InvalidArgument(f"archive {what} {name!r} is an absolute path", obj=name)
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidArgument(f"archive {what} {name!r} contains '..'", obj=name)
    return "/".join(parts)


@dataclass(slots=True)
class _Members:
    """What the stream carried: blobs by path (and digest), links, small documents."""

    store: ContentStore
    files: dict[str, BlobInfo] = field(default_factory=dict)
    by_digest: dict[Digest, BlobInfo] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    documents: dict[str, bytes] = field(default_factory=dict)

    def take(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        name = _clean(m.name, "member")
        if not name or m.isdir():
            return
        if name in self.files or name in self.links or name in self.documents:
            raise InvalidArgument(f"archive member {name!r} appears twice", obj=name)
        if m.issym() or m.islnk():
            self.links[name] = _link_target(name, m)
            return
        if not m.isfile():
            raise InvalidArgument(f"archive member {name!r} is not a regular file, "
                                  "directory or link", obj=name)
        f = tf.extractfile(m)
        assert f is not None  # a regular file always has data
        parts = name.split("/")
        if name in _DOCUMENTS:
            if m.size > MAX_DOCUMENT:
                raise InvalidArgument(f"archive member {name} is too large: {m.size} bytes",
                                      obj=name)
            self.documents[name] = f.read()
            return
        if len(parts) == 2 and parts[1] in _LEGACY_FILES:
            return
        # The name claims the digest for OCI blobs and for docker's <config-hex>.json
        # (docker names a config by its digest, the image id); docker 20.10's layer.tar
        # claims nothing: its diff_id is checked against the config instead.
        expected = None
        if len(parts) == 3 and parts[0] == "blobs" and _HEX.fullmatch(parts[2]):
            if parts[1] != "sha256":
                return  # the store holds sha256 only; a reference to it fails as missing
            expected = Digest("sha256", parts[2])
        elif len(parts) == 1 and name.endswith(".json") and _HEX.fullmatch(name[:-5]):
            expected = Digest("sha256", name[:-5])
        info = ingest_stream(self.store, f, expected, m.size, f"archive member {name}")
        self.files[name] = info
        self.by_digest.setdefault(info.digest, info)

    def resolve(self, path: str, where: str) -> BlobInfo:
        """The blob at ``path``, following links inside the archive."""
        name = _clean(path, f"path in {where}")
        for _ in range(_MAX_LINK_HOPS):
            info = self.files.get(name)
            if info is not None:
                return info
            if name not in self.links:
                raise InvalidArgument(f"{where}: {path} is missing from the archive", obj=path)
            name = self.links[name]
        raise InvalidArgument(f"{where}: {path}: too many levels of links", obj=path)

    def fetch(self, d: Digest, size: int, what: str) -> BlobInfo:
        """BlobSource for index.json: the blobs the archive carried, and only those."""
        info = self.by_digest.get(d)
        if info is None:
            raise InvalidArgument(f"{what}: blob {d} is missing from the archive", obj=str(d))
        if info.size != size:
            raise InvalidArgument(f"{what}: size {info.size} does not match {size}", obj=what)
        return info


def _link_target(name: str, m: tarfile.TarInfo) -> str:
    target = m.linkname
    if target.startswith("/"):
        raise InvalidArgument(f"archive member {name!r} links to an absolute path {target!r}",
                              obj=name)
    if m.islnk():  # hard link targets are archive paths already
        return _clean(target, f"link target of {name!r}:")
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
    if joined == ".." or joined.startswith("../"):
        raise InvalidArgument(f"archive member {name!r} links outside the archive: {target!r}",
                              obj=name)
    return joined


def read_archive(inp: BinaryIO, store: ContentStore,
                 platform: Platform | None = None) -> list[LoadedImage]:
    """``docker load``: the images of a docker 20.10, docker 25+ or OCI layout tar (plain,
    gzip or zstd), their blobs ingested into ``store`` and verified. ``platform`` picks
    from multi-platform indexes (default: this host's)."""
    members = _Members(store)
    try:
        with tarfile.open(fileobj=open_decompressed(inp), mode="r|",
                          tarinfo=_BoundedTarInfo) as tf:
            count = 0
            while (m := tf.next()) is not None:
                count += 1
                if count > _MAX_MEMBERS:
                    raise InvalidArgument(f"archive has more than {_MAX_MEMBERS} members")
                members.take(tf, m)
                # next() keeps every header it read; we need none of them back.
                tf.members.clear()  # type: ignore[attr-defined]
    except tarfile.TarError as exc:
        raise InvalidArgument(f"archive is not a valid tar: {exc}", op="load") from exc
    docs = members.documents
    if MANIFEST_FILE in docs:
        return _resolve_docker(docs[MANIFEST_FILE], members)
    if INDEX_FILE in docs:
        if LAYOUT_FILE in docs:
            check_layout_version(docs[LAYOUT_FILE])
        return resolve_index(docs[INDEX_FILE], members, store, platform)
    if REPOSITORIES_FILE in docs:
        raise NotSupported("archive in the pre-1.10 docker format (no manifest.json) is not "
                           "supported", op="load")
    raise InvalidArgument("archive has neither manifest.json nor index.json: not an image "
                          "archive", op="load")


def _strings(v: object, where: str) -> list[str]:
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise InvalidArgument(f"invalid {where}: must be a list of strings", obj=where)
    return list(v)


def _resolve_docker(data: bytes, members: _Members) -> list[LoadedImage]:
    """moby's load: each manifest.json entry's config, its layers in order, its tags."""
    try:
        items = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"invalid {MANIFEST_FILE} in archive: {exc}", op="load",
                              obj=MANIFEST_FILE) from exc
    if not isinstance(items, list) or not all(isinstance(x, dict) for x in items):
        raise InvalidArgument(f"invalid {MANIFEST_FILE} in archive: not a list of objects",
                              op="load", obj=MANIFEST_FILE)
    images: dict[Digest, LoadedImage] = {}
    for i, item in enumerate(items):
        where = f"{MANIFEST_FILE}[{i}]"
        config_path = item.get("Config")
        if not isinstance(config_path, str):
            raise InvalidArgument(f"invalid {where}: Config must be a path", obj=where)
        paths = _strings(item.get("Layers"), f"{where}.Layers")
        tags = _strings(item.get("RepoTags"), f"{where}.RepoTags")
        cinfo = members.resolve(config_path, where)
        diff_ids = _config_diff_ids(
            read_document(members.store, cinfo, f"config {config_path}"), config_path)
        if len(diff_ids) != len(paths):
            raise InvalidArgument(f"invalid manifest, layers length mismatch: expected "
                                  f"{len(diff_ids)}, got {len(paths)}", obj=where)
        layers = []
        for path, want in zip(paths, diff_ids, strict=True):
            info = members.resolve(path, where)
            diff_id = check_diff(info, want, f"layer {path}")
            media_type = _LAYER_TYPE[info.compression or Compression.NONE]
            layers.append(Layer(info.digest, media_type, info.size, diff_id))
        img = images.setdefault(cinfo.digest, LoadedImage(cinfo.digest, layers))
        for t in tags:
            tag = familiar_tag(t)
            if tag is None:
                raise InvalidArgument(f"invalid tag {t!r} in {where}", obj=t)
            if tag not in img.repo_tags:
                img.repo_tags.append(tag)
    return list(images.values())


def _config_diff_ids(data: bytes, path: str) -> list[Digest]:
    try:
        return parse_config(data).rootfs.diff_ids
    except InvalidArgument as exc:
        raise InvalidArgument(f"config {path}: {exc}", obj=path) from exc
