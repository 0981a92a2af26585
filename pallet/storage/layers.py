"""The layer store: each layer unpacked once, in overlay form, shared by every image.

A layer is named by its chain id (the identity of a layer *on top of* its parents, so
the same diff on different bases stays two layers). On disk:

    <root>/layers/<chain hex>/diff/     the unpacked layer (a lowerdir as it is)
    <root>/layers/<chain hex>/layer.json  chain id, diff id, parent, size

A layer is made in a temp dir and renamed into place whole: a crash mid-apply leaves a
temp dir (collected by ``collect``), never a half layer. Who uses a layer is the image
store's business; this store only makes, finds and removes them.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pallet.errors import InvalidArgument, NotFound, SystemFailure
from pallet.storage import tree


@dataclass(frozen=True)
class Layer:
    chain_id: str  # "sha256:<hex>"
    diff_id: str
    parent: str  # the parent's chain id, "" for a base layer
    size: int  # bytes of the uncompressed layer tar
    path: str  # the diff directory

    def to_json(self) -> bytes:
        return json.dumps({"chain_id": self.chain_id, "diff_id": self.diff_id,
                           "parent": self.parent, "size": self.size}).encode()


def chain_id(parent: str, diff_id: str) -> str:
    """OCI: ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))."""
    if not parent:
        return diff_id
    return "sha256:" + hashlib.sha256(f"{parent} {diff_id}".encode()).hexdigest()


def _hex(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or len(hexpart) != 64 or any(c not in "0123456789abcdef"
                                                     for c in hexpart):
        raise InvalidArgument(f"invalid layer id: {digest!r}")
    return hexpart


class LayerStore:
    def __init__(self, root: str) -> None:
        self.root = os.path.join(root, "layers")
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        self._known: dict[str, Layer] = {}

    def _dir(self, chain: str) -> str:
        return os.path.join(self.root, _hex(chain))

    def exists(self, chain: str) -> bool:
        return os.path.exists(os.path.join(self._dir(chain), "layer.json"))

    def get(self, chain: str) -> Layer:
        # A layer never changes once made, and only remove() (here) takes it away: its
        # record is read once (every container start asks for its image's chain).
        layer = self._known.get(chain)
        if layer is not None:
            return layer
        d = self._dir(chain)
        try:
            with open(os.path.join(d, "layer.json"), "rb") as f:
                meta = json.loads(f.read())
        except FileNotFoundError:
            raise NotFound(f"layer does not exist: {chain}", obj=chain) from None
        layer = Layer(meta["chain_id"], meta["diff_id"], meta["parent"], int(meta["size"]),
                      os.path.join(d, "diff"))
        self._known[chain] = layer
        return layer

    def create(self, parent: str, apply: Callable[[str], tuple[str, int]],
               expected_diff_id: str | None = None) -> Layer:
        """Unpack a layer on top of ``parent``: ``apply(dir)`` fills ``dir`` and returns
        (diff id, size). If the same layer exists already, the new copy is dropped."""
        if parent and not self.exists(parent):
            raise NotFound(f"parent layer does not exist: {parent}", obj=parent)
        tmp = os.path.join(self.root, f"tmp-{uuid.uuid4().hex}")
        os.makedirs(os.path.join(tmp, "diff"), mode=0o755)
        try:
            diff_id, size = apply(os.path.join(tmp, "diff"))
            if expected_diff_id and diff_id != expected_diff_id:
                raise InvalidArgument(
                    f"layer content does not match its diff id: expected {expected_diff_id}, "
                    f"got {diff_id}")
            chain = chain_id(parent, diff_id)
            layer = Layer(chain, diff_id, parent, size, os.path.join(self._dir(chain), "diff"))
            with open(os.path.join(tmp, "layer.json"), "wb") as f:
                f.write(layer.to_json())
                f.flush()
                os.fsync(f.fileno())
            try:
                os.rename(tmp, self._dir(chain))
            except OSError as exc:
                if not self.exists(chain):  # not "someone made it first"
                    raise SystemFailure(f"cannot store layer {chain}: {exc.strerror}",
                                        errno=exc.errno or 0) from exc
            else:
                tree.fsync_dir(self.root)
            return self.get(chain)
        finally:
            if os.path.exists(tmp):
                _remove_tree(tmp)

    def remove(self, chain: str) -> None:
        """Remove a layer (the caller knows nothing uses it any more)."""
        d = self._dir(chain)
        self._known.pop(chain, None)
        if not os.path.exists(d):
            raise NotFound(f"layer does not exist: {chain}", obj=chain)
        gone = os.path.join(self.root, f"tmp-{uuid.uuid4().hex}")
        os.rename(d, gone)  # atomic: never a half-removed layer under its name
        _remove_tree(gone)

    def all(self) -> Iterator[Layer]:
        for name in sorted(os.listdir(self.root)):
            if not name.startswith("tmp-"):
                try:
                    yield self.get("sha256:" + name)
                except (NotFound, InvalidArgument):
                    continue

    def chain_paths(self, chain: str) -> list[str]:
        """The diff dirs of ``chain`` and its parents, top layer first (overlay's order)."""
        out = []
        while chain:
            layer = self.get(chain)
            out.append(layer.path)
            chain = layer.parent
        return out

    def collect(self) -> int:
        """Remove temp dirs left by a crash; returns how many."""
        n = 0
        for name in os.listdir(self.root):
            if name.startswith("tmp-"):
                _remove_tree(os.path.join(self.root, name))
                n += 1
        return n


def _remove_tree(path: str) -> None:
    tree.remove(path)  # copes with odd modes a layer may carry (0000 dirs)
