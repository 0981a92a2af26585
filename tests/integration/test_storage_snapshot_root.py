"""Snapshot drivers on the real kernel: overlay merged views, whiteouts, opaque dirs, many
and long layers, the copy driver's equal view, and nothing left after unmount + remove."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest

from pallet.errors import Conflict, InvalidState, NotFound, NotSupported
from pallet.linux import caps, fsmount
from pallet.linux.mount import MNT_DETACH, umount
from pallet.storage import snapshot, tree
from pallet.storage.snapshot import (
    CopyDriver,
    OverlayDriver,
    Snapshotter,
    choose_driver,
    overlay_data,
)

pytestmark = pytest.mark.root

View = dict[str, tuple[str, int, int, int, tuple[tuple[str, bytes], ...]]]


@pytest.fixture
def work() -> Iterator[Path]:
    top = tempfile.mkdtemp(prefix="pallet-test-snap-", dir="/tmp")
    yield Path(top)
    while True:  # whatever a failed test left mounted, deepest (and topmost) first
        inside, _ = tree.mounts_using(top)
        if not inside:
            break
        umount(inside[0], MNT_DETACH)
    tree.remove(top)


def _mountinfo_mentions(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if str(path) in line]


def _file(path: Path, content: str, mode: int = 0o644, owner: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    os.chown(path, owner, owner)
    os.chmod(path, mode)  # after chown, which clears set-id bits


def _whiteout(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(0, 0))


def make_layers(base: Path) -> list[str]:
    """Three layers in overlay form; returned top first."""
    l0, l1, l2 = base / "l0", base / "l1", base / "l2"
    _file(l0 / "etc/a", "a0")
    _file(l0 / "etc/b", "b0")
    _file(l0 / "dir/keep", "k0", owner=1000)
    _file(l0 / "opq/old", "o0")
    _file(l0 / "opq/sub/deep", "d0")
    _file(l0 / "gone", "g0")
    _file(l0 / "gonedir/x", "x0")
    _file(l0 / "bin/sh", "#!sh", mode=0o4755)
    os.mkfifo(l0 / "fifo")
    _file(l1 / "etc/b", "b1")
    _file(l1 / "opq/mid", "om1")
    _file(l1 / "hard1", "h1")
    os.link(l1 / "hard1", l1 / "hard2")
    os.symlink("etc/b", l1 / "link")
    _whiteout(l2 / "etc/a")  # hides the bottom layer's file
    _whiteout(l2 / "gone")
    _whiteout(l2 / "gonedir")  # a whiteout hides a whole directory too
    _file(l2 / "opq/new", "n2")
    os.setxattr(l2 / "opq", tree.OPAQUE_XATTR, b"y")  # hides opq/old, opq/sub and opq/mid
    _file(l2 / "top", "t2")
    os.setxattr(l2 / "top", "user.note", b"kept")
    os.chmod(l2 / "etc", 0o750)
    return [str(l2), str(l1), str(l0)]


EXPECTED = {
    "bin": "dir", "bin/sh": "#!sh", "dir": "dir", "dir/keep": "k0", "etc": "dir",
    "etc/b": "b1", "fifo": "fifo", "hard1": "h1", "hard2": "h1", "link": "-> etc/b",
    "opq": "dir", "opq/new": "n2", "top": "t2",
}


def view(root: str) -> View:
    """Everything a process sees under ``root``, minus times."""
    out: View = {}
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(top, name)
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode):
                what = "dir"
            elif stat.S_ISLNK(st.st_mode):
                what = "-> " + os.readlink(path)
            elif stat.S_ISFIFO(st.st_mode):
                what = "fifo"
            elif stat.S_ISREG(st.st_mode):
                what = Path(path).read_text()
            else:
                what = f"dev {st.st_rdev}"
            xattrs = () if stat.S_ISLNK(st.st_mode) else tuple(
                (n, os.getxattr(path, n)) for n in sorted(os.listxattr(path)))
            out[os.path.relpath(path, root)] = (what, st.st_mode, st.st_uid, st.st_gid, xattrs)
    return out


def contents(v: View) -> dict[str, str]:
    return {k: t[0] for k, t in v.items()}


@pytest.fixture(params=[OverlayDriver, CopyDriver], ids=["overlay", "copy"])
def driver(request: pytest.FixtureRequest, work: Path) -> Snapshotter:
    cls: type[Snapshotter] = request.param
    return cls(str(work / "data"))


def test_merged_view(driver: Snapshotter, work: Path) -> None:
    lowers = make_layers(work)
    before = [view(d) for d in lowers]
    m = driver.prepare("c1", lowers)
    driver.mount("c1", lowers)
    got = view(m.merged)
    assert contents(got) == EXPECTED
    assert got["dir/keep"][2:4] == (1000, 1000)
    assert stat.S_IMODE(got["bin/sh"][1]) == 0o4755
    assert stat.S_IMODE(got["etc"][1]) == 0o750  # the top layer's dir
    assert got["top"][4] == (("user.note", b"kept"),)
    assert got["opq"][4] == ()  # overlay's own xattrs are not part of the view
    hard1, hard2 = os.lstat(os.path.join(m.merged, "hard1")), os.lstat(
        os.path.join(m.merged, "hard2"))
    assert hard1.st_ino == hard2.st_ino
    assert [view(d) for d in lowers] == before
    driver.unmount(m.merged)
    driver.remove("c1")


def test_copy_driver_shows_what_overlay_shows(work: Path) -> None:
    lowers = make_layers(work)
    views = []
    for cls in (OverlayDriver, CopyDriver):
        d = cls(str(work / cls.name))
        m = d.prepare("c1", lowers)
        d.mount("c1", lowers)
        views.append(view(m.merged))
        d.unmount(m.merged)
        d.remove("c1")
    assert views[0] == views[1]


def test_writes_land_in_upper(driver: Snapshotter, work: Path) -> None:
    lowers = make_layers(work)
    before = [view(d) for d in lowers]
    m = driver.prepare("c1", lowers)
    driver.mount("c1", lowers)
    merged = Path(m.merged)
    (merged / "new").write_text("fresh")
    (merged / "etc/b").write_text("b-changed")
    os.unlink(merged / "dir/keep")
    assert (Path(m.upper) / "new").read_text() == "fresh"
    assert (Path(m.upper) / "etc/b").read_text() == "b-changed"
    assert not (Path(m.upper) / "dir/keep").exists() or tree.is_whiteout(
        os.lstat(Path(m.upper) / "dir/keep"))
    assert [view(d) for d in lowers] == before
    if driver.name == "overlay":
        # the upper holds only the writes: the copied-up /etc/b and the new file
        assert driver.usage("c1") == len("fresh") + len("b-changed")
    else:
        assert driver.usage("c1") == tree.usage(m.upper) > len("fresh")
    driver.unmount(m.merged)
    driver.remove("c1")


def test_unmount_and_remove_leave_nothing(driver: Snapshotter, work: Path) -> None:
    lowers = make_layers(work)
    elsewhere = work / "rootfs"
    elsewhere.mkdir()
    driver.prepare("c1", lowers)
    driver.mount("c1", lowers, str(elsewhere))
    (elsewhere / "d").mkdir()
    (elsewhere / "d/f").write_text("x")
    os.chmod(elsewhere / "d/f", 0)
    os.chmod(elsewhere / "d", 0)
    with pytest.raises(Conflict, match="mounted at"):
        driver.remove("c1")  # the container would lose its files under it
    driver.unmount(str(elsewhere))
    with pytest.raises(InvalidState):
        driver.unmount(str(elsewhere))
    m = driver.prepare("c2", lowers)
    driver.mount("c2", lowers)  # at its own merged dir: remove() unmounts it
    for key in ("c1", "c2"):
        driver.remove(key)
    assert _mountinfo_mentions(work) == []
    assert driver.keys() == [] and not os.path.exists(m.merged)
    assert os.listdir(work / "data") == ["snapshots"]
    assert os.listdir(elsewhere) == []


def test_two_hundred_layers_with_long_paths(driver: Snapshotter, work: Path) -> None:
    lowers = []
    for i in range(200):
        layer = work / "layers" / f"{i:03d}-{'x' * 80}"
        _file(layer / f"layer-{i:03d}", str(i))
        lowers.append(str(layer))
    _file(Path(lowers[0]) / "bottom", "from the bottom")
    lowers.reverse()  # top first
    assert len(overlay_data(lowers, "/u", "/w")) > 4096
    m = driver.prepare("many", lowers)
    driver.mount("many", lowers)
    merged = Path(m.merged)
    assert (merged / "bottom").read_text() == "from the bottom"
    assert len(os.listdir(merged)) == 201
    driver.remove("many")
    assert _mountinfo_mentions(work) == []


def test_paths_too_long_for_fsconfig_strings(work: Path) -> None:
    deep = work / ("d" * 200) / ("e" * 100)
    lowers = make_layers(deep)
    assert all(len(d) > fsmount.STRING_MAX for d in lowers)
    d = OverlayDriver(str(deep / "data"))
    m = d.prepare("c1", lowers)
    assert len(m.upper) > fsmount.STRING_MAX
    d.mount("c1", lowers)
    assert contents(view(m.merged)) == EXPECTED
    d.remove("c1")
    assert _mountinfo_mentions(work) == []


def test_read_only_views(driver: Snapshotter, work: Path) -> None:
    lowers = make_layers(work)
    target = work / "view"
    target.mkdir()
    driver.mount_readonly(lowers, str(target))
    assert contents(view(str(target))) == EXPECTED
    with pytest.raises(OSError) as exc:
        (target / "new").write_text("x")
    assert exc.value.errno == errno.EROFS
    driver.unmount(str(target))
    driver.mount_readonly(lowers[-1:], str(target))  # one layer: overlay wants two
    assert (target / "etc/a").read_text() == "a0"
    driver.unmount(str(target))
    assert _mountinfo_mentions(work) == [] and os.listdir(target) == []
    assert not os.listdir(work / "data" / "readonly") if driver.name == "copy" else True


def test_no_layers(driver: Snapshotter, work: Path) -> None:
    m = driver.prepare("scratch", [])
    driver.mount("scratch", [])
    (Path(m.merged) / "f").write_text("x")
    assert (Path(m.upper) / "f").read_text() == "x"
    driver.remove("scratch")
    assert _mountinfo_mentions(work) == []


def test_classic_mount_fallback(work: Path) -> None:
    # The path kernels without lowerdir+ (before 6.8) take.
    lowers = make_layers(work)
    for n in ("u", "w", "m"):
        (work / n).mkdir()
    snapshot._mount_overlay_classic(lowers, str(work / "u"), str(work / "w"), str(work / "m"))
    try:
        assert contents(view(str(work / "m"))) == EXPECTED
    finally:
        umount(str(work / "m"), MNT_DETACH)
    many = [f"{work}/{'y' * 100}-{i}" for i in range(50)]
    with pytest.raises(NotSupported, match="exceed one page"):
        snapshot._mount_overlay_classic(many, str(work / "u"), str(work / "w"),
                                        str(work / "m"))


def test_kernel_messages_in_errors() -> None:
    fd = fsmount.fsopen("overlay")
    try:
        with pytest.raises(OSError, match="Unknown parameter 'lowerdirX'") as exc:
            fsmount.fsconfig_set_string(fd, "lowerdirX", "/tmp")
        assert exc.value.errno == errno.EINVAL
        assert fsmount.kernel_log(fd) == []  # the error drained the log
    finally:
        os.close(fd)
    with pytest.raises(OSError) as exc:
        fsmount.fsopen("no-such-filesystem")
    assert exc.value.errno == errno.ENODEV


def test_choose_driver(work: Path) -> None:
    assert isinstance(choose_driver(str(work / "data")), OverlayDriver)
    # overlay refuses an overlay as upper: a data root inside one gets the copy driver
    for n in ("l", "u", "w", "m"):
        (work / n).mkdir()
    snapshot._mount_overlay([str(work / "l")], str(work / "u"), str(work / "w"),
                            str(work / "m"))
    try:
        assert isinstance(choose_driver(str(work / "m/data")), CopyDriver)
        with pytest.raises(NotSupported, match="not supported as upperdir"):
            choose_driver(str(work / "m/data"), "overlay")
        assert os.listdir(work / "m/data") == []  # no probe left behind
    finally:
        umount(str(work / "m"), MNT_DETACH)


def _caps_now() -> int:
    # what this process holds (root here may lack some), so capset() only ever drops
    with open("/proc/self/status") as f:
        return next(int(line.split()[1], 16) for line in f if line.startswith("CapEff:"))


def test_remove_without_dac_override(work: Path) -> None:
    """Root without CAP_DAC_OVERRIDE (a user namespace, a hardened daemon) still removes
    overlay's d--------- work dir and a container's mode-000 directories."""
    lowers = make_layers(work)
    d = OverlayDriver(str(work / "data"))
    m = d.prepare("c1", lowers)
    d.mount("c1", lowers)
    (Path(m.merged) / "locked").mkdir(mode=0)
    d.unmount(m.merged)
    assert stat.S_IMODE(os.stat(Path(m.work) / "work").st_mode) == 0
    keep = _caps_now() & ~caps.mask(["CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH"])
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            caps.capset(keep, keep, 0)
            try:
                os.listdir(Path(m.work) / "work")
            except PermissionError:
                d.remove("c1")
                code = 0
            else:
                code = 2  # the capability was not dropped: the test would prove nothing
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert d.keys() == []


def test_probe_needs_mount_privilege(work: Path) -> None:
    # Without CAP_SYS_ADMIN the probe fails and the choice falls to copy.
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            keep = _caps_now() & ~caps.mask(["CAP_SYS_ADMIN"])
            caps.capset(keep, keep, 0)
            code = 0 if isinstance(choose_driver(str(work / "data")), CopyDriver) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert os.listdir(work / "data") == []


def test_mounting_a_missing_snapshot(driver: Snapshotter, work: Path) -> None:
    with pytest.raises(NotFound):
        driver.mount("nope", [])
    lowers = make_layers(work)
    driver.prepare("c1", lowers)
    with pytest.raises(NotFound):
        driver.mount("c1", lowers, str(work / "no-such-target"))
    driver.remove("c1")
