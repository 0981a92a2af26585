"""OCI image layouts (directories), and what every archive format shares.

An OCI image layout is ``oci-layout`` (the version), ``index.json`` (the named entry points)
and ``blobs/<algorithm>/<hex>`` (everything else, named by its digest). Reading one walks
index.json down to image manifests -- nested indexes are followed, the platform chosen as
a pull chooses it -- and ingests every blob the chosen images reference into the content
store, each verified against the digest it is named by before the store will hold it.

Names come from two annotations: ``io.containerd.image.name`` (a full reference; what
docker 25+ and containerd write) and ``org.opencontainers.image.ref.name`` (a full
reference for some tools, a bare tag such as ``latest`` for docker, skopeo and umoci). A
bare tag names no repository, so it is handed back as a ref name for the caller to place.

Layer diff_ids are computed, never taken on trust: each blob is decompressed (gzip or
zstd) while it is ingested, in the same pass, and the result must equal the config's
rootfs.diff_ids. Writing mirrors docker's choices so the layouts read back anywhere:
compact Go-style JSON, an OCI manifest per image, one index entry per tag.
"""

from __future__ import annotations

import io
import json
import os
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, TypeVar, cast

from pallet.errors import InvalidArgument, NotSupported, SystemFailure
from pallet.image import reference
from pallet.image.config import ImageConfig, parse_config
from pallet.image.digest import Digest
from pallet.image.ingest import (
    CHUNK,
    MAX_DOCUMENT,
    BlobInfo,
    check_diff,
    ingest_stream,
    read_document,
)
from pallet.image.manifest import (
    CONFIG_TYPES,
    DOCKER_FOREIGN_LAYER,
    DOCKER_LAYER_GZIP,
    DOCKER_LAYER_TAR,
    INDEX_TYPES,
    MANIFEST_TYPES,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_NONDIST_GZIP,
    OCI_MANIFEST,
    Descriptor,
    Index,
    Manifest,
    Platform,
    go_json,
    parse_manifest,
    select_platform,
)
from pallet.image.store import ContentStore

if TYPE_CHECKING:
    pass

LAYOUT_FILE = "oci-layout"
INDEX_FILE = "index.json"
LAYOUT_VERSION = "1.0.0"
LAYOUT_BYTES = b'{"imageLayoutVersion": "1.0.0"}'
ANNOTATION_IMAGE_NAME = "io.containerd.image.name"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
_MAX_NESTING = 8
_T = TypeVar("_T")
# Docker's layer media types and their OCI names: same bytes, so a layout can say OCI.
_OCI_LAYER_TYPE = {
    DOCKER_LAYER_TAR: OCI_LAYER,
    DOCKER_LAYER_GZIP: OCI_LAYER_GZIP,
    DOCKER_FOREIGN_LAYER: OCI_LAYER_NONDIST_GZIP,
}


@dataclass(frozen=True, slots=True)
class Layer:
    """A layer blob as an image references it, with its (uncompressed) diff_id."""

    digest: Digest
    media_type: str
    size: int
    diff_id: Digest


@dataclass(frozen=True, slots=True)
class ArchiveImage:
    """An image to save. ``manifest``, when known, is written as it is by write_oci_layout
    (keeping the registry's manifest digest); docker archives always get a fresh one."""

    config: Digest
    layers: list[Layer]
    repo_tags: list[str] = field(default_factory=list)
    manifest: Digest | None = None


@dataclass(slots=True)
class LoadedImage:
    """An image found in an archive; all its blobs are in the store, verified."""

    config: Digest
    layers: list[Layer]
    repo_tags: list[str] = field(default_factory=list)  # familiar form: "busybox:latest"
    ref_names: list[str] = field(default_factory=list)  # bare ref.name annotations: "latest"
    manifest: Digest | None = None  # the OCI/Docker manifest it came with, if any


# --- names --------------------------------------------------------------------------------

def add_names(img: LoadedImage, annotations: dict[str, str]) -> None:
    """Name ``img`` from an index entry's annotations, as containerd's importer does."""
    candidates = [annotations.get(ANNOTATION_IMAGE_NAME, "")]
    ref_name = annotations.get(ANNOTATION_REF_NAME, "")
    # A bare tag ("latest") would parse as the repository "library/latest": not a name.
    if ":" in ref_name or "/" in ref_name:
        candidates.append(ref_name)
    for s in candidates:
        tag = familiar_tag(s) if s else None
        if tag is not None:
            if tag not in img.repo_tags:
                img.repo_tags.append(tag)
            return
    if ref_name and ref_name not in img.ref_names:
        img.ref_names.append(ref_name)


def familiar_tag(s: str) -> str | None:
    """``busybox:latest`` for any spelling of a tagged reference; None when ``s`` is not one."""
    try:
        ref = reference.parse(s, default_tag=False)
    except InvalidArgument:
        return None
    return None if ref.tag is None else f"{ref.familiar_name()}:{ref.tag}"


# --- reading an index ---------------------------------------------------------------------

class BlobSource(Protocol):
    def fetch(self, d: Digest, size: int, what: str) -> BlobInfo:
        """Make sure blob ``d`` is in the store, verified, and describe it."""
        ...


def resolve_index(data: bytes, source: BlobSource, store: ContentStore,
                  want: Platform | None = None) -> list[LoadedImage]:
    """The images index.json names: one per manifest, carrying every name pointing at it."""
    if len(data) > MAX_DOCUMENT:
        raise InvalidArgument(f"{INDEX_FILE} is too large: {len(data)} bytes", obj=INDEX_FILE)
    top = _parsed(parse_manifest, data, OCI_INDEX, where=INDEX_FILE)
    if not isinstance(top, Index):
        raise InvalidArgument(f"{INDEX_FILE} is not an image index", obj=INDEX_FILE)
    images: dict[Digest, LoadedImage] = {}
    for i, desc in enumerate(top.manifests):
        where = f"{INDEX_FILE} manifests[{i}]"
        found = _follow(desc, source, store, want or Platform("", ""), where, 0)
        if found is None:
            continue
        img = images.get(found[0])
        if img is None:
            img = images[found[0]] = _image(found[0], found[1], source, store, where)
        add_names(img, desc.annotations)
    if not images:
        raise InvalidArgument(f"{INDEX_FILE} names no image", obj=INDEX_FILE)
    return list(images.values())


def _follow(desc: Descriptor, source: BlobSource, store: ContentStore, want: Platform,
            where: str, depth: int) -> tuple[Digest, Manifest] | None:
    """The image manifest ``desc`` leads to (through nested indexes); None if no image."""
    if desc.media_type not in INDEX_TYPES + MANIFEST_TYPES:
        return None  # an artifact, a signature: not ours to load
    info = source.fetch(desc.digest, desc.size, f"{where} ({desc.digest})")
    doc = _parsed(parse_manifest, read_document(store, info, where), desc.media_type,
                  where=f"{where} ({desc.digest})")
    if isinstance(doc, Index):
        if depth >= _MAX_NESTING:
            raise InvalidArgument(f"{where}: indexes nested too deep", obj=where)
        # Only what could be an image competes: an unplatformed SBOM must not win.
        images = Index(doc.media_type, [d for d in doc.manifests
                                        if d.media_type in INDEX_TYPES + MANIFEST_TYPES])
        return _follow(select_platform(images, want), source, store, want,
                       f"{where} -> {desc.digest}", depth + 1)
    if doc.config.media_type not in CONFIG_TYPES:
        return None  # an OCI artifact dressed as a manifest
    return desc.digest, doc


def _parsed(parse: Callable[..., _T], *args: Any, where: str) -> _T:
    """``parse(*args)``, its complaint prefixed with the document it is about."""
    try:
        return parse(*args)
    except InvalidArgument as exc:
        raise InvalidArgument(f"{where}: {exc}", op="load", obj=where) from exc


def _image(digest: Digest, m: Manifest, source: BlobSource, store: ContentStore,
           where: str) -> LoadedImage:
    what = f"config {m.config.digest}"
    info = source.fetch(m.config.digest, m.config.size, what)
    cfg = _parsed(parse_config, read_document(store, info, what), where=what)
    diff_ids = cfg.rootfs.diff_ids
    if len(diff_ids) != len(m.layers):
        raise InvalidArgument(f"manifest {digest}: {len(m.layers)} layers but the config has "
                              f"{len(diff_ids)} diff_ids", obj=str(digest))
    layers = []
    for desc, want in zip(m.layers, diff_ids, strict=True):
        what = f"layer {desc.digest}"
        linfo = source.fetch(desc.digest, desc.size, what)
        layers.append(Layer(desc.digest, desc.media_type, desc.size,
                            check_diff(linfo, want, what)))
    return LoadedImage(m.config.digest, layers, manifest=digest)


# --- writing ------------------------------------------------------------------------------

def platform_json(cfg: ImageConfig) -> dict[str, str]:
    out = {"architecture": cfg.architecture, "os": cfg.os}
    if cfg.variant:
        out["variant"] = cfg.variant
    return out


def descriptor_json(media_type: str, d: Digest, size: int, annotations: dict[str, str] | None
                    = None, platform: dict[str, str] | None = None) -> dict[str, Any]:
    """An OCI descriptor in image-spec's Go field order."""
    out: dict[str, Any] = {"mediaType": media_type, "digest": str(d), "size": size}
    if annotations:
        out["annotations"] = dict(sorted(annotations.items()))
    if platform:
        out["platform"] = platform
    return out


def oci_manifest(config: Digest, config_size: int, platform: dict[str, str],
                 layers: list[tuple[str, Digest, int]]) -> bytes:
    """The OCI manifest docker writes into a saved archive (compact, platform on config)."""
    return go_json({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor_json(OCI_CONFIG, config, config_size, platform=platform),
        "layers": [descriptor_json(t, d, n) for t, d, n in layers],
    })


def index_entries(media_type: str, d: Digest, size: int, platform: dict[str, str],
                  tags: list[reference.Reference]) -> list[dict[str, Any]]:
    """One index entry per tag, annotated as docker 25 does; one unnamed if untagged."""
    if not tags:
        return [descriptor_json(media_type, d, size, platform=platform)]
    return [descriptor_json(media_type, d, size, {
        ANNOTATION_IMAGE_NAME: str(t),
        ANNOTATION_REF_NAME: t.tag_or_latest(),
    }, platform) for t in tags]


def index_json(entries: list[dict[str, Any]]) -> bytes:
    return go_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})


def parse_tags(tags: list[str], image: Digest) -> list[reference.Reference]:
    out: list[reference.Reference] = []
    for t in tags:
        ref = reference.parse(t)
        if ref.digest is not None:
            raise InvalidArgument(f"image {image}: {t!r} is not a tag", obj=t)
        if ref not in out:
            out.append(ref)
    return out


def load_config(store: ContentStore, img: ArchiveImage) -> tuple[bytes, ImageConfig]:
    """The image's config, checked to describe the layers the caller says it has."""
    if store.size(img.config) > MAX_DOCUMENT:
        raise InvalidArgument(f"config {img.config} is too large", obj=str(img.config))
    data = store.read(img.config)
    cfg = parse_config(data)
    if cfg.rootfs.diff_ids != [layer.diff_id for layer in img.layers]:
        raise InvalidArgument(f"image {img.config}: its layers' diff_ids are not the ones "
                              "its config lists", obj=str(img.config))
    return data, cfg


def _blob_path(root: str, d: Digest) -> str:
    return os.path.join(root, "blobs", d.algorithm, d.hex)


def _write_file(path: str, chunks: Callable[[BinaryIO], object]) -> None:
    """Write through a temp file and rename, so an interrupted save leaves no torn blob."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(fd, 0o644)
            chunks(f)
        os.rename(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _copy_blob(store: ContentStore, d: Digest, root: str) -> None:
    path = _blob_path(root, d)
    try:
        if os.stat(path).st_size == store.size(d):
            return  # a layout names blobs by digest: one of the right size is this one
    except FileNotFoundError:
        pass

    def copy(out: BinaryIO) -> None:
        with store.open(d) as f:
            while chunk := f.read(CHUNK):
                out.write(chunk)

    _write_file(path, copy)


def _write_bytes(path: str, data: bytes) -> None:
    _write_file(path, lambda f: f.write(data))


def write_oci_layout(path: str, store: ContentStore, images: list[ArchiveImage]) -> None:
    """Write ``images`` into the OCI layout at ``path`` (made if missing). An existing
    layout keeps its other entries; an entry with one of our names is replaced."""
    try:
        os.makedirs(os.path.join(path, "blobs", "sha256"), exist_ok=True)
        entries: list[dict[str, Any]] = []
        for img in images:
            _, cfg = load_config(store, img)
            platform = platform_json(cfg)
            tags = parse_tags(img.repo_tags, img.config)
            if img.manifest is not None:
                data = store.read(img.manifest)
                m = parse_manifest(data)
                if not isinstance(m, Manifest) or m.config.digest != img.config:
                    raise InvalidArgument(f"manifest {img.manifest} is not the manifest of "
                                          f"image {img.config}", obj=str(img.manifest))
                media_type = m.media_type
                blobs = [img.config, *(layer.digest for layer in m.layers)]
            else:
                layers = [(_OCI_LAYER_TYPE.get(layer.media_type, layer.media_type),
                           layer.digest, _stored_size(store, layer)) for layer in img.layers]
                data = oci_manifest(img.config, store.size(img.config), platform, layers)
                media_type = OCI_MANIFEST
                blobs = [img.config, *(layer.digest for layer in img.layers)]
            for d in blobs:
                _copy_blob(store, d, path)
            digest = Digest.of_bytes(data)
            if not os.path.exists(_blob_path(path, digest)):
                _write_bytes(_blob_path(path, digest), data)
            entries += index_entries(media_type, digest, len(data), platform, tags)
        entries = _kept_entries(path, entries) + entries
        _write_bytes(os.path.join(path, LAYOUT_FILE), LAYOUT_BYTES)
        _write_bytes(os.path.join(path, INDEX_FILE), index_json(entries))
    except OSError as exc:
        raise SystemFailure(f"writing OCI layout {path}: {exc.strerror or exc}", op="save",
                            obj=path, errno=exc.errno or 0, path=path) from exc


def _stored_size(store: ContentStore, layer: Layer) -> int:
    size = store.size(layer.digest)
    if size != layer.size:
        raise InvalidArgument(f"layer {layer.digest}: size {layer.size} given, the stored "
                              f"blob has {size}", obj=str(layer.digest))
    return size


def _entry_names(entry: Any) -> tuple[str, str]:
    notes = entry.get("annotations") if isinstance(entry, dict) else None
    if not isinstance(notes, dict):
        return "", ""
    return str(notes.get(ANNOTATION_IMAGE_NAME, "")), str(notes.get(ANNOTATION_REF_NAME, ""))


def _kept_entries(path: str, new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entries of an existing index.json that none of ``new`` replaces."""
    try:
        with open(os.path.join(path, INDEX_FILE), "rb") as f:
            old = json.loads(f.read(MAX_DOCUMENT + 1))
    except FileNotFoundError:
        return []
    except ValueError as exc:
        raise InvalidArgument(f"{path}/{INDEX_FILE} is not JSON: {exc}", obj=path) from exc
    manifests = old.get("manifests") if isinstance(old, dict) else None
    if not isinstance(manifests, list):
        raise InvalidArgument(f"{path}/{INDEX_FILE} is not an image index", obj=path)
    names = {_entry_names(e)[0] for e in new}
    refs = {_entry_names(e)[1] for e in new}
    kept = []
    for e in manifests:
        name, ref = _entry_names(e)
        if (name and name in names) or (not name and ref and ref in refs):
            continue
        kept.append(e)
    return kept


# --- reading a directory ------------------------------------------------------------------

_NOFOLLOW = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


class _DirBlobs:
    """Blobs of a layout directory, ingested as they are asked for. Every component is
    opened with O_NOFOLLOW below the layout's root, so a symlink cannot lead elsewhere."""

    def __init__(self, root_fd: int, store: ContentStore) -> None:
        self._root = root_fd
        self._store = store
        self._seen: dict[Digest, BlobInfo] = {}

    def open(self, parts: list[str], what: str) -> io.FileIO:
        fd = os.dup(self._root)
        try:
            for i, part in enumerate(parts):
                last = i == len(parts) - 1
                nxt = os.open(part, _NOFOLLOW | (0 if last else os.O_DIRECTORY), dir_fd=fd)
                os.close(fd)
                fd = nxt
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise InvalidArgument(f"{what} is not a regular file", obj=what)
            return io.FileIO(fd, "r")
        except FileNotFoundError:
            os.close(fd)
            raise InvalidArgument(f"{what} is missing from the layout", obj=what) from None
        except OSError as exc:
            os.close(fd)
            raise InvalidArgument(f"cannot open {what}: {exc.strerror or exc}", obj=what) \
                from exc
        except BaseException:
            os.close(fd)
            raise

    def fetch(self, d: Digest, size: int, what: str) -> BlobInfo:
        info = self._seen.get(d)
        if info is None:
            name = f"blobs/{d.algorithm}/{d.hex}"
            with self.open(name.split("/"), f"{what}: {name}") as f:
                info = ingest_stream(self._store, cast(BinaryIO, f), d, size, name)
            self._seen[d] = info
        if info.size != size:
            raise InvalidArgument(f"{what}: size {info.size} does not match {size}", obj=what)
        return info


def read_oci_layout(path: str, store: ContentStore,
                    platform: Platform | None = None) -> list[LoadedImage]:
    """Every image the layout at ``path`` names, its blobs ingested (verified) into ``store``."""
    try:
        root = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise InvalidArgument(f"cannot open OCI layout {path}: {exc.strerror or exc}",
                              obj=path) from exc
    try:
        blobs = _DirBlobs(root, store)
        with blobs.open([LAYOUT_FILE], LAYOUT_FILE) as f:
            check_layout_version(f.read(MAX_DOCUMENT))
        with blobs.open([INDEX_FILE], INDEX_FILE) as f:
            index = f.read(MAX_DOCUMENT + 1)
        return resolve_index(index, blobs, store, platform)
    finally:
        os.close(root)


def check_layout_version(data: bytes) -> None:
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise InvalidArgument(f"{LAYOUT_FILE} is not JSON: {exc}", obj=LAYOUT_FILE) from exc
    version = doc.get("imageLayoutVersion") if isinstance(doc, dict) else None
    if version != LAYOUT_VERSION:
        raise NotSupported(f"unsupported OCI image layout version: {version!r}",
                           obj=LAYOUT_FILE)
