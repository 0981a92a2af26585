"""The layer store: chain ids, made whole or not at all, shared, removed."""

from __future__ import annotations

import hashlib
import os

import pytest

from pallet.errors import InvalidArgument, NotFound
from pallet.storage.layers import LayerStore, chain_id

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


def test_chain_id_is_the_oci_formula() -> None:
    assert chain_id("", D1) == D1
    want = "sha256:" + hashlib.sha256(f"{D1} {D2}".encode()).hexdigest()
    assert chain_id(D1, D2) == want


def fill(diff_id: str, name: str):  # type: ignore[no-untyped-def]
    def apply(d: str) -> tuple[str, int]:
        with open(os.path.join(d, name), "w") as f:
            f.write(name)
        return diff_id, 10

    return apply


def test_create_get_chain_paths_remove(tmp_path: str) -> None:
    store = LayerStore(str(tmp_path))
    base = store.create("", fill(D1, "a"))
    top = store.create(base.chain_id, fill(D2, "b"))
    assert base.chain_id == D1 and top.chain_id == chain_id(D1, D2)
    assert store.chain_paths(top.chain_id) == [top.path, base.path]
    assert os.path.isfile(os.path.join(top.path, "b"))
    again = store.create("", fill(D1, "a"))  # the same layer: the existing one is kept
    assert again == base
    assert {x.chain_id for x in store.all()} == {base.chain_id, top.chain_id}
    store.remove(top.chain_id)
    with pytest.raises(NotFound):
        store.get(top.chain_id)
    assert [n for n in os.listdir(store.root) if n.startswith("tmp-")] == []


def test_failed_apply_leaves_nothing(tmp_path: str) -> None:
    store = LayerStore(str(tmp_path))

    def broken(d: str) -> tuple[str, int]:
        open(os.path.join(d, "half"), "w").close()
        raise InvalidArgument("layer is not a valid tar archive")

    with pytest.raises(InvalidArgument):
        store.create("", broken)
    assert os.listdir(store.root) == []
    with pytest.raises(InvalidArgument, match="does not match its diff id"):
        store.create("", fill(D1, "a"), expected_diff_id=D2)
    assert os.listdir(store.root) == []
    with pytest.raises(NotFound):
        store.create(D2, fill(D1, "a"))  # unknown parent


def test_crash_leftovers_are_collected(tmp_path: str) -> None:
    store = LayerStore(str(tmp_path))
    os.makedirs(os.path.join(store.root, "tmp-deadbeef", "diff"))
    assert list(store.all()) == []
    assert store.collect() == 1 and os.listdir(store.root) == []
    with pytest.raises(InvalidArgument):
        store.get("sha256:../../etc")
