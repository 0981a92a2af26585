"""``docker save`` and ``docker load``: images from the image database into an archive,
and archives back into images.

Save picks images as moby's tarexport does -- a tag names itself, a bare repository
name every tag of that repository, an id (or a digest reference) the image with no
name -- and streams docker 25's combined archive (pallet.image.archive).

Load runs in three steps so that a bad archive changes nothing a user can see::

    read_archive         every blob into the content store, verified (diff_ids too)
    unpack               every image's layers, bottom first (existing layers reused)
    register + tag       the database rows, last

A failure in the first step leaves only verified blobs nothing references (the next
prune collects them); in the second, the layers this load made are removed again;
only the third makes images and names appear.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from pallet.engine.events import make_event
from pallet.engine.images import ImageService
from pallet.errors import InvalidArgument, NotFound
from pallet.image import reference
from pallet.image.archive import (
    ArchiveImage,
    Layer,
    LoadedImage,
    read_archive,
    write_docker_archive,
)
from pallet.image.digest import Digest
from pallet.image.manifest import Platform
from pallet.storage.layers import chain_id

__all__ = ["LoadReport", "load", "save", "select"]


@dataclass(frozen=True, slots=True)
class LoadReport:
    """One line of what load tells its caller: a layer unpacked (``layer`` is its short
    diff_id, ``size`` the bytes read) or a message such as ``Loaded image: busybox:latest``."""

    message: str
    layer: str = ""
    size: int = 0


Reporter = Callable[[LoadReport], None]


# --- save ---------------------------------------------------------------------------------

def select(images: ImageService, names: list[str]) -> list[ArchiveImage]:
    """The images ``docker save NAME...`` writes, each with the tags it is saved under.

    Raises NotFound for a name that names nothing, before a byte is written.
    """
    if not names:
        raise InvalidArgument("no image names given to save", op="save")
    out: list[ArchiveImage] = []
    for name in names:
        for image_id, tag in _named(images, name):
            out.append(_archive_image(images, image_id, [tag] if tag else []))
    return out


def _named(images: ImageService, name: str) -> list[tuple[str, str | None]]:
    """(image id, familiar tag or None) pairs for one argument of ``docker save``."""
    raw = name.removeprefix("sha256:")
    is_id = all(c in "0123456789abcdef" for c in raw) and (
        len(raw) == 64 or name.startswith("sha256:"))
    if is_id:
        return [(images.resolve(name), None)]
    try:
        ref = reference.parse(name, default_tag=False)
    except InvalidArgument:
        return [(images.resolve(name), None)]  # NotFound, as docker answers
    if ref.digest is not None:  # pinned by digest: saved, but under no tag
        return [(images.resolve(name), None)]
    if ref.tag is not None:
        return [(images.resolve(name), ref.familiar())]
    # A bare repository name: every tag of it (moby's ReferencesByName), else an id prefix.
    tagged = [(images.db.tag_target(t), t) for t in _tags_of_repository(images, ref.name)]
    found: list[tuple[str, str | None]] = [
        (image_id, reference.parse(t).familiar()) for image_id, t in tagged if image_id]
    if found:
        return found
    try:
        return [(images.resolve(name), None)]  # by now only an id prefix can match
    except NotFound:
        raise NotFound(f"No such image: {name}", op="save", obj=name) from None


def _tags_of_repository(images: ImageService, repo: str) -> list[str]:
    return sorted(t for row in images.db.images() for t in images.db.tags_of(row.id)
                  if reference.parse(t).name == repo)


def _archive_image(images: ImageService, image_id: str, tags: list[str]) -> ArchiveImage:
    layers = []
    for row in images.db.layers(image_id):
        diff_id = Digest.parse(row.diff_id)
        if not row.blob:
            raise NotFound(f"layer {row.diff_id} of image {image_id} has no stored blob to "
                           "save", op="save", obj=image_id)
        layers.append(Layer(Digest.parse(row.blob), row.media_type, row.blob_size, diff_id))
    return ArchiveImage(Digest.parse(image_id), layers, tags)


def save(images: ImageService, selected: list[ArchiveImage], out: BinaryIO) -> None:
    """Write ``selected`` to ``out`` as one docker archive; a ``save`` event per image."""
    write_docker_archive(out, images.store, selected)
    seen: set[Digest] = set()
    for img in selected:
        if img.config not in seen:
            seen.add(img.config)
            images.events.publish(make_event("image", "save", str(img.config),
                                             {"name": str(img.config)}))


# --- load ---------------------------------------------------------------------------------

def load(images: ImageService, inp: BinaryIO, report: Reporter,
         platform: Platform | None = None) -> list[str]:
    """``docker load`` of the archive ``inp``; returns the loaded image ids.

    Names: the archive's repo tags (manifest.json RepoTags, or io.containerd.image.name
    and full-reference ref.name annotations of an OCI index). A bare
    ``org.opencontainers.image.ref.name`` such as ``latest`` names no repository, so
    docker 25 leaves such an image untagged, and so does this.
    """
    try:
        with images.lease():  # nothing loaded is collected before it is registered
            return _load(images, inp, report, platform)
    except BaseException:
        images.collect()  # the layers a failed load made, unless an image uses them now
        raise


def _load(images: ImageService, inp: BinaryIO, report: Reporter,
          platform: Platform | None) -> list[str]:
    loaded = read_archive(inp, images.store, platform)
    made: list[str] = []
    stacks = [_unpack(images, img, made, report) for img in loaded]
    ids = []
    for img, stack in zip(loaded, stacks, strict=True):
        ids.append(_register(images, img, stack, report))
    return ids


LayerEntry = tuple[str, str, tuple[str, str, int]]


def _unpack(images: ImageService, img: LoadedImage, made: list[str],
            report: Reporter) -> list[LayerEntry]:
    """The image's layers unpacked bottom first; chains made here are added to ``made``."""
    parent = ""
    stack: list[LayerEntry] = []
    for layer in img.layers:
        diff_id = str(layer.diff_id)
        chain = chain_id(parent, diff_id)
        if not images.layers.exists(chain):
            images.unpack(parent, layer.digest, diff_id)
            made.append(chain)
            report(LoadReport("Loading layer", layer.diff_id.short(), layer.size))
        stack.append((chain, diff_id, (str(layer.digest), layer.media_type, layer.size)))
        parent = chain
    return stack


def _register(images: ImageService, img: LoadedImage, stack: list[LayerEntry],
              report: Reporter) -> str:
    image_id = str(img.config)
    renamed: list[tuple[str, str]] = []
    for tag in img.repo_tags:
        old = images.db.tag_target(str(reference.parse(tag)))
        if old is not None and old != image_id:
            renamed.append((tag, old))
    images.register(images.store.read(img.config), stack, names=img.repo_tags)
    for tag, old in renamed:
        # moby's words (even though the old image keeps any other names it has)
        report(LoadReport(f"The image {tag} already exists, renaming the old one with ID "
                          f"{old} to empty string"))
    images.events.publish(make_event("image", "load", image_id, {"name": image_id}))
    for tag in img.repo_tags:
        report(LoadReport(f"Loaded image: {tag}"))
    if not img.repo_tags:
        report(LoadReport(f"Loaded image ID: {image_id}"))
    return image_id
