"""Layers as root: owners, device nodes, trusted xattrs, and a real overlay of applied
layers in which whiteouts and opaque directories take effect - both the ones a layer
tar brings and the ones the kernel writes into an upper dir that we diff back."""

from __future__ import annotations

import io
import os
import shutil
import stat
import tarfile
from collections.abc import Iterator

import pytest

from pallet.linux.mount import MNT_DETACH, MS_RDONLY, mount, umount
from pallet.storage.diff import diff_upper
from pallet.storage.layertar import apply_layer
from tests.unit.test_storage_diff import members, tree
from tests.unit.test_storage_layertar import E, make_tar

pytestmark = pytest.mark.root

T0 = 1_600_000_000
# struct vfs_cap_data, revision 2: cap_net_raw (13) permitted and effective
FILE_CAP = bytes.fromhex("01000002" "00200000" "00000000" "00000000" "00000000")


def owned(e: E, uid: int, gid: int) -> tarfile.TarInfo:
    """``e`` as a header with the given owner (make_tar writes the test user's)."""
    with tarfile.open(fileobj=io.BytesIO(make_tar(e))) as tf:
        (info,) = tf.getmembers()
    info.uid, info.gid = uid, gid
    return info


def tar_of(*items: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT,
                      errors="surrogateescape") as tf:
        for info, data in items:
            tf.addfile(info, io.BytesIO(data) if data else None)
    return buf.getvalue()


def layer_dir(base: str, name: str, data: bytes) -> str:
    d = os.path.join(base, name)
    os.mkdir(d)
    apply_layer(io.BytesIO(data), d)
    return d


@pytest.fixture
def mounts() -> Iterator[list[str]]:
    """Mount points to detach at teardown, whatever the test did."""
    points: list[str] = []
    yield points
    for p in reversed(points):
        try:
            umount(p, MNT_DETACH)
        except OSError:
            pass  # unmounted by the test already
    with open("/proc/self/mountinfo") as f:
        left = [line for line in f if any(p in line for p in points)]
    assert left == []


def overlay(mounts: list[str], target: str, lowers: list[str], upper: str = "",
            work: str = "") -> None:
    os.makedirs(target, exist_ok=True)
    data = "lowerdir=" + ":".join(lowers)
    if upper:
        data += f",upperdir={upper},workdir={work}"
    mount("overlay", target, "overlay", 0 if upper else MS_RDONLY, data)
    mounts.append(target)


def view(top: str) -> dict[str, bytes | str | None]:
    """What a container sees: path -> file content, symlink target, or None (a dir)."""
    out: dict[str, bytes | str | None] = {}
    for d, dirs, files in os.walk(top):
        for n in dirs + files:
            p = os.path.join(d, n)
            rel = os.path.relpath(p, top)
            if os.path.islink(p):
                out[rel] = os.readlink(p)
            elif os.path.isdir(p):
                out[rel] = None
            else:
                with open(p, "rb") as f:
                    out[rel] = f.read()
    return out


def test_owners_devices_and_xattrs(tmp_path: object) -> None:
    base = str(tmp_path)
    data = tar_of(
        (owned(E("home/", tarfile.DIRTYPE, mode=0o750), 1000, 1000), b""),
        (owned(E("home/f", mode=0o4750, data=b"x"), 1000, 50), b"x"),
        (owned(E("home/l", tarfile.SYMTYPE, link="f"), 1001, 1002), b""),
        (owned(E("dev/", tarfile.DIRTYPE), 0, 0), b""),
        (owned(E("dev/null", tarfile.CHRTYPE, mode=0o666, dev=(1, 3)), 0, 0), b""),
        (owned(E("dev/loop0", tarfile.BLKTYPE, mode=0o660, dev=(7, 0)), 0, 6), b""),
        (owned(E("bin/", tarfile.DIRTYPE), 0, 0), b""),
        (owned(E("bin/ping", mode=0o755, data=b"elf", xattrs={
            "security.capability": FILE_CAP, "trusted.pallet": b"t"}), 0, 0), b"elf"),
        (owned(E("dev/.wh.gone"), 7, 8), b""),
    )
    a = layer_dir(base, "a", data)
    st = os.lstat(f"{a}/home/f")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 50, 0o4750)
    assert (os.lstat(f"{a}/home").st_uid, os.lstat(f"{a}/home/l").st_gid) == (1000, 1002)
    null, loop = os.lstat(f"{a}/dev/null"), os.lstat(f"{a}/dev/loop0")
    assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3)
    assert stat.S_IMODE(null.st_mode) == 0o666
    assert stat.S_ISBLK(loop.st_mode) and (loop.st_rdev, loop.st_gid) == (os.makedev(7, 0), 6)
    # the capability survives the chown that would have cleared it
    assert os.getxattr(f"{a}/bin/ping", "security.capability") == FILE_CAP
    assert os.getxattr(f"{a}/bin/ping", "trusted.pallet") == b"t"
    gone = os.lstat(f"{a}/dev/gone")
    assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == 0 and gone.st_uid == 7

    diff = b"".join(diff_upper(a))
    b = layer_dir(base, "b", diff)
    assert tree(a) == tree(b)
    ms = {m.name: m for m in members(diff)}
    assert ms["dev/.wh.gone"].isreg() and (ms["dev/.wh.gone"].uid, ms["dev/.wh.gone"].gid) \
        == (7, 8)
    assert ms["bin/ping"].pax_headers["SCHILY.xattr.security.capability"].encode(
        "utf-8", "surrogateescape") == FILE_CAP


def test_opaque_marker_both_ways(tmp_path: object) -> None:
    base = str(tmp_path)
    a = layer_dir(base, "a", make_tar(E("d/", tarfile.DIRTYPE), E("d/.wh..wh..opq"),
                                      E("d/new", data=b"n"), E(".wh..wh..opq")))
    assert os.getxattr(f"{a}/d", "trusted.overlay.opaque") == b"y"
    assert sorted(os.listdir(f"{a}/d")) == ["new"]
    names = [m.name for m in members(b"".join(diff_upper(a)))]
    assert names == ["d", "d/.wh..wh..opq", "d/new"]  # the root's marker: not a layer's


def test_whiteouts_and_opaque_dirs_take_effect_in_overlay(tmp_path: object,
                                                          mounts: list[str]) -> None:
    base = str(tmp_path)
    l1 = layer_dir(base, "l1", make_tar(
        E("etc/", tarfile.DIRTYPE), E("etc/keep", data=b"k"), E("etc/gone", data=b"g"),
        E("opt/", tarfile.DIRTYPE), E("opt/dir/", tarfile.DIRTYPE),
        E("opt/dir/old", data=b"o"), E("opt/dir/sub/", tarfile.DIRTYPE),
        E("opt/dir/sub/deep", data=b"d"), E("opt/other", data=b"x")))
    l2 = layer_dir(base, "l2", make_tar(
        E("etc/", tarfile.DIRTYPE), E("etc/.wh.gone"), E("opt/", tarfile.DIRTYPE),
        E("opt/dir/", tarfile.DIRTYPE), E("opt/dir/.wh..wh..opq"),
        E("opt/dir/new", data=b"n")))
    merged = os.path.join(base, "merged")
    overlay(mounts, merged, [l2, l1])
    assert view(merged) == {"etc": None, "etc/keep": b"k", "opt": None, "opt/dir": None,
                            "opt/dir/new": b"n", "opt/other": b"x"}
    umount(merged)

    # Now the kernel writes the whiteouts: change the image in a writable overlay, diff
    # its upper dir into a third layer, and check the three layers show the same tree.
    upper, work = os.path.join(base, "upper"), os.path.join(base, "work")
    os.mkdir(upper)
    os.mkdir(work)
    overlay(mounts, merged, [l2, l1], upper, work)
    os.remove(f"{merged}/etc/keep")
    shutil.rmtree(f"{merged}/opt/dir")
    os.mkdir(f"{merged}/opt/dir")  # over a deleted lower dir: overlay makes it opaque
    with open(f"{merged}/opt/dir/fresh", "wb") as f:
        f.write(b"f")
    with open(f"{merged}/etc/added", "wb") as f:
        f.write(b"a")
    os.symlink("/etc/added", f"{merged}/opt/link")
    expected = view(merged)
    umount(merged)

    diff = b"".join(diff_upper(upper))
    names = [m.name for m in members(diff)]
    for name in ("etc/.wh.keep", "opt/dir/.wh..wh..opq", "opt/dir/fresh", "etc/added",
                 "opt/link"):
        assert name in names
    assert not any("overlay" in k for m in members(diff) for k in m.pax_headers)
    l3 = layer_dir(base, "l3", diff)
    overlay(mounts, merged, [l3, l2, l1])
    assert view(merged) == expected
    assert "etc/keep" not in expected and "opt/dir/old" not in expected
    assert expected["opt/dir/fresh"] == b"f"
