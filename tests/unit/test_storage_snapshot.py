"""Snapshot drivers without root: keys, option strings, driver choice, the copy driver's
tree merging (no whiteouts: those need mknod and trusted xattrs), removal, mountinfo."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pallet.errors import Conflict, InvalidArgument, NotFound, NotSupported, SystemFailure
from pallet.storage import tree
from pallet.storage.snapshot import (
    PAGE_SIZE,
    CopyDriver,
    OverlayDriver,
    Snapshotter,
    choose_driver,
    overlay_data,
    validate_key,
)

# --- keys -------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["a", "c1", "0" * 64, "web_1.v2-x", "A" * 128])
def test_valid_keys(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize(
    "key", ["", ".", "..", "../x", "a/b", "/abs", "-a", ".hidden", "_a", "a b", "a\n",
            "é", "a" * 129, "a\x00b"])
def test_invalid_keys(key: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument):
        validate_key(key)
    for driver in (OverlayDriver(str(tmp_path)), CopyDriver(str(tmp_path))):
        with pytest.raises(InvalidArgument):
            driver.prepare(key, [])
        with pytest.raises(InvalidArgument):
            driver.remove(key)
    assert list(tmp_path.iterdir()) == []


def test_paths_stay_under_root(tmp_path: Path) -> None:
    d = OverlayDriver(str(tmp_path / "data"))
    assert d.path("k") == str(tmp_path / "data" / "snapshots" / "k")
    m = d.prepare("k", [])
    for p in (m.upper, m.work, m.merged):
        assert p.startswith(str(tmp_path / "data" / "snapshots" / "k") + "/")


# --- overlay options --------------------------------------------------------------------


def test_overlay_data_keeps_order_top_first() -> None:
    assert overlay_data(["/top", "/mid", "/bottom"], "/u", "/w") == (
        "lowerdir=/top:/mid:/bottom,upperdir=/u,workdir=/w")


def test_overlay_data_read_only_has_no_upper() -> None:
    assert overlay_data(["/a", "/b"]) == "lowerdir=/a:/b"


def test_overlay_data_escapes_separators() -> None:
    assert overlay_data(["/a:b", "/c,d", "/e\\f"], "/u,1", "/w:2") == (
        r"lowerdir=/a\:b:/c\,d:/e\\f,upperdir=/u\,1,workdir=/w\:2")


def test_two_hundred_long_layers_do_not_fit_one_page() -> None:
    # Why the new mount API is needed: what the root test mounts is too long for mount(2).
    lowers = [f"/var/lib/pallet/layers/{i:064x}/diff" for i in range(200)]
    assert len(overlay_data(lowers, "/u", "/w")) > PAGE_SIZE


# --- driver choice ----------------------------------------------------------------------


def _filesystems(tmp_path: Path, names: list[str]) -> str:
    path = tmp_path / "filesystems"
    path.write_text("".join(f"nodev\t{n}\n" for n in names) + "\text4\n")
    return str(path)


def test_copy_by_name_touches_nothing(tmp_path: Path) -> None:
    d = choose_driver(str(tmp_path / "data"), "copy")
    assert isinstance(d, CopyDriver) and d.name == "copy"
    assert not (tmp_path / "data").exists()


def test_unknown_driver_name(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument):
        choose_driver(str(tmp_path), "aufs")


def test_no_overlay_in_kernel_means_copy(tmp_path: Path) -> None:
    fs = _filesystems(tmp_path, ["tmpfs", "overlayfs", "fuse.overlay"])  # none is "overlay"
    assert isinstance(choose_driver(str(tmp_path / "data"), filesystems=fs), CopyDriver)
    with pytest.raises(NotSupported, match="no overlay"):
        choose_driver(str(tmp_path / "data"), "overlay", filesystems=fs)


def test_probe_decides_and_leaves_nothing(tmp_path: Path) -> None:
    fs = _filesystems(tmp_path, ["tmpfs", "overlay"])
    d = choose_driver(str(tmp_path / "data"), filesystems=fs)
    # Without root the probe mount is refused; with it, overlay works on this disk.
    want = OverlayDriver if os.geteuid() == 0 else CopyDriver
    assert type(d) is want
    assert os.listdir(tmp_path / "data") == []


# --- prepare, remove --------------------------------------------------------------------


def _layer(root: Path, name: str, files: dict[str, str]) -> str:
    top = root / name
    top.mkdir()
    for rel, content in files.items():
        p = top / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content)
    return str(top)


def test_overlay_prepare_makes_dirs(tmp_path: Path) -> None:
    low = _layer(tmp_path, "l0", {"a": "1"})
    d = OverlayDriver(str(tmp_path / "data"))
    m = d.prepare("c1", [low])
    assert (m.driver, m.key, m.lowers) == ("overlay", "c1", (low,))
    assert stat.S_IMODE(os.stat(m.upper).st_mode) == 0o755
    assert os.listdir(m.upper) == [] and os.path.isdir(m.work) and os.path.isdir(m.merged)
    assert d.keys() == ["c1"]
    with pytest.raises(Conflict):
        d.prepare("c1", [low])


@pytest.mark.parametrize("driver", [OverlayDriver, CopyDriver])
def test_bad_lowers_make_nothing(driver: type[Snapshotter], tmp_path: Path) -> None:
    d = driver(str(tmp_path / "data"))
    with pytest.raises(NotFound):
        d.prepare("c1", [str(tmp_path / "missing")])
    with pytest.raises(InvalidArgument):
        d.prepare("c1", ["relative/layer"])
    assert d.keys() == []


@pytest.mark.parametrize("driver", [OverlayDriver, CopyDriver])
def test_remove_leaves_nothing(driver: type[Snapshotter], tmp_path: Path) -> None:
    low = _layer(tmp_path, "l0", {"a": "1"})
    d = driver(str(tmp_path / "data"))
    m = d.prepare("c1", [low])
    # what a container leaves: a mode-000 directory with a mode-000 file in it
    locked = os.path.join(m.upper, "locked")
    os.mkdir(locked)
    Path(locked, "f").write_text("x")
    os.chmod(os.path.join(locked, "f"), 0)
    os.chmod(locked, 0)
    d.remove("c1")
    assert d.keys() == [] and not os.path.exists(d.path("c1"))
    assert os.listdir(low) == ["a"]
    with pytest.raises(NotFound):
        d.remove("c1")


def test_copy_merges_layers(tmp_path: Path) -> None:
    bottom = _layer(tmp_path, "l0", {"etc/a": "a0", "etc/b": "b0", "x/keep": "k",
                                    "d2f/inner": "i"})
    top = _layer(tmp_path, "l1", {"etc/b": "b1", "new": "n", "d2f": "now a file"})
    os.symlink("/etc/a", os.path.join(top, "link"))  # absolute: must not be followed
    os.link(os.path.join(top, "new"), os.path.join(top, "new2"))
    os.chmod(os.path.join(top, "etc"), 0o750)
    os.chmod(os.path.join(top, "new"), 0o640)
    os.utime(os.path.join(top, "etc", "b"), ns=(10**18, 10**18))
    d = CopyDriver(str(tmp_path / "data"))
    m = d.prepare("c1", [top, bottom])  # top first
    root = Path(m.upper)
    assert (root / "etc/a").read_text() == "a0"
    assert (root / "etc/b").read_text() == "b1"
    assert (root / "x/keep").read_text() == "k"
    assert (root / "d2f").read_text() == "now a file"
    assert os.readlink(root / "link") == "/etc/a"
    assert stat.S_IMODE(os.stat(root / "etc").st_mode) == 0o750  # the top layer's dir wins
    assert stat.S_IMODE(os.stat(root / "new").st_mode) == 0o640
    assert os.stat(root / "etc/b").st_mtime_ns == 10**18
    assert os.stat(root / "new").st_ino == os.stat(root / "new2").st_ino
    # the copy is the container's own: writing it changes no layer
    (root / "etc/a").write_text("changed")
    assert Path(bottom, "etc/a").read_text() == "a0"
    assert d.usage("c1") == len("changed") + 2 + 1 + len("now a file") + len("/etc/a") + 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads mode-000 files")
def test_copy_prepare_failure_cleans_up(tmp_path: Path) -> None:
    bottom = _layer(tmp_path, "l0", {"a": "1"})
    top = _layer(tmp_path, "l1", {"b": "2", "secret": "s"})
    os.chmod(os.path.join(top, "secret"), 0)
    d = CopyDriver(str(tmp_path / "data"))
    with pytest.raises(SystemFailure, match="prepare c1"):
        d.prepare("c1", [top, bottom])
    assert d.keys() == []


# --- usage and removal of trees ---------------------------------------------------------


def test_usage_counts_files_and_hard_links_once(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_bytes(b"x" * 1000)
    os.link(tmp_path / "d" / "f", tmp_path / "g")
    os.symlink("d/f", tmp_path / "s")
    (tmp_path / "empty").mkdir()
    assert tree.usage(str(tmp_path)) == 1000 + len("d/f")


def test_remove_tree_is_quiet_when_gone(tmp_path: Path) -> None:
    tree.remove(str(tmp_path / "nothing"))


# --- mountinfo --------------------------------------------------------------------------

SNAP = "/var/lib/pallet/snapshots/c1"
MOUNTINFO = "\n".join([
    "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw",
    "40 27 0:40 / /var/lib/pallet/snapshots/c1/merged rw - overlay overlay rw,"
    f"lowerdir+=/l/2,lowerdir+=/l/1,upperdir={SNAP}/upper,workdir={SNAP}/work",
    "41 40 0:41 / /var/lib/pallet/snapshots/c1/merged/proc rw - proc proc rw",
    # the same overlay at a container's bundle: mounted elsewhere
    "42 27 0:42 / /run/bundle/rootfs rw - overlay overlay rw,lowerdir+=/l/1,"
    f"upperdir={SNAP}/upper,workdir={SNAP}/work",
    # a bind of the snapshot's tree (the copy driver), seen by its root field
    f"43 27 254:0 {SNAP}/rootfs /run/other\\040dir rw - ext4 /dev/vda rw",
    # c10 is another snapshot: a prefix, not a subdirectory
    "44 27 0:44 / /run/c10 rw - overlay overlay rw,lowerdir=/l/1,"
    "upperdir=/var/lib/pallet/snapshots/c10/upper,workdir=/var/lib/pallet/snapshots/c10/work",
    "45 27 254:0 /var/lib/pallet/snapshots/c10/rootfs /run/c10b rw - ext4 /dev/vda rw",
    # a bind of the same path on another device is not ours
    f"46 27 0:9 {SNAP}/rootfs /run/elsewhere rw - tmpfs tmpfs rw",
    # a read-only view with the snapshot's upper as a layer (commit), classic options
    f"47 27 0:47 / /run/commit ro - overlay overlay ro,lowerdir={SNAP}/upper:/l/1",
]) + "\n"


def test_mounts_using_finds_inside_and_elsewhere() -> None:
    inside, elsewhere = tree.mounts_using(SNAP, MOUNTINFO)
    assert inside == [f"{SNAP}/merged/proc", f"{SNAP}/merged"]
    assert elsewhere == ["/run/bundle/rootfs", "/run/other dir", "/run/commit"]


def test_mounts_using_on_an_unmounted_snapshot() -> None:
    assert tree.mounts_using("/var/lib/pallet/snapshots/c2", MOUNTINFO) == ([], [])


def test_mounts_using_under_a_bind_mounted_data_root() -> None:
    # data root /data is /srv/store of device 8:1: binds show paths relative to that fs
    info = ("1 0 8:1 / / rw - ext4 /dev/sda1 rw\n"
            "2 1 8:2 /srv/store /data rw - ext4 /dev/sdb1 rw\n"
            "3 1 8:2 /srv/store/snapshots/k/rootfs /mnt rw - ext4 /dev/sdb1 rw\n"
            "4 1 8:1 /srv/store/snapshots/k/rootfs /mnt2 rw - ext4 /dev/sda1 rw\n")
    assert tree.mounts_using("/data/snapshots/k", info) == ([], ["/mnt"])
