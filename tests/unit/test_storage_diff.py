"""Diffing an overlay upper dir back into a layer tar, and tarring a plain tree.

Runs as any user: whiteouts (0:0 devices) need no privilege since Linux 5.8, and the
opaque / metacopy / redirect markers are set in their ``user.overlay.*`` form (what
overlay writes when mounted with ``userxattr``). The ``trusted.*`` forms: the root test.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import socket
import stat
import subprocess
import tarfile

import pytest

from pallet.errors import NotSupported
from pallet.storage.diff import diff_upper, tar_directory
from pallet.storage.layertar import apply_layer
from tests.unit.test_storage_layertar import E, make_tar

T0 = 1_600_000_000


def members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:", errors="surrogateescape") as tf:
        return tf.getmembers()


def names(data: bytes) -> list[str]:
    return [m.name for m in members(data)]


def tree(top: str) -> dict[str, tuple[object, ...]]:
    """Everything a layer dir says, per path: type, mode, owner, mtime, body, xattrs,
    and which earlier path it shares an inode with."""
    out: dict[str, tuple[object, ...]] = {}
    inodes: dict[int, str] = {}
    for d, dirs, files in os.walk(top):
        dirs.sort()
        for n in sorted(dirs + files):
            p = os.path.join(d, n)
            rel = os.path.relpath(p, top)
            st = os.lstat(p)
            body: object = None
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    body = hashlib.sha256(f.read()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                body = os.readlink(p)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                body = st.st_rdev
            xattrs = {k: os.getxattr(p, k, follow_symlinks=False)
                      for k in sorted(os.listxattr(p, follow_symlinks=False))}
            link = inodes.setdefault(st.st_ino, rel) if not stat.S_ISDIR(st.st_mode) else rel
            out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid,
                        st.st_gid, int(st.st_mtime), body, xattrs, link)
    return out


def mkdir(path: str, mtime: int = T0, mode: int = 0o755) -> None:
    os.makedirs(path, exist_ok=True)
    os.chmod(path, mode)
    os.utime(path, (mtime, mtime))


def write(path: str, data: bytes = b"", mtime: int = T0, mode: int = 0o644) -> None:
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)
    os.utime(path, (mtime, mtime))


def whiteout(path: str) -> None:
    os.mknod(path, stat.S_IFCHR, os.makedev(0, 0))


def settle_dirs(top: str, mtime: int = T0) -> None:
    """Give every directory the same mtime again (making entries changed them)."""
    for d, _dirs, _files in os.walk(top, topdown=False):
        os.utime(d, (mtime, mtime))


@pytest.fixture
def upper(tmp_path: object) -> str:
    u = os.path.join(str(tmp_path), "upper")
    os.mkdir(u)
    return u


def test_whiteouts_and_opaque_dirs_become_aufs_form(upper: str) -> None:
    mkdir(f"{upper}/etc")
    whiteout(f"{upper}/etc/gone")
    os.utime(f"{upper}/etc/gone", (T0 + 5, T0 + 5), follow_symlinks=False)
    mkdir(f"{upper}/opt")
    write(f"{upper}/opt/new", b"n")
    os.setxattr(f"{upper}/opt", "user.overlay.opaque", b"y")
    settle_dirs(upper)
    ms = {m.name: m for m in members(b"".join(diff_upper(upper)))}
    assert list(ms) == ["etc", "etc/.wh.gone", "opt", "opt/.wh..wh..opq", "opt/new"]
    wh = ms["etc/.wh.gone"]
    assert (wh.isreg(), wh.size, wh.mode, wh.mtime) == (True, 0, 0o600, T0 + 5)
    assert ms["opt/.wh..wh..opq"].isreg() and ms["opt"].isdir()
    # overlay's bookkeeping never reaches the layer
    assert all(not k.startswith("SCHILY.xattr.user.overlay") for m in ms.values()
               for k in m.pax_headers)


def test_apply_then_diff_then_apply_gives_the_same_tree(tmp_path: object) -> None:
    base = str(tmp_path)
    layer = make_tar(
        E("bin/", tarfile.DIRTYPE, mode=0o755, mtime=T0 + 1),
        E("bin/busybox", data=os.urandom(3 << 20 | 123), mode=0o755, mtime=T0 + 2),
        E("bin/sh", tarfile.LNKTYPE, link="bin/busybox"),
        E("bin/ls", tarfile.SYMTYPE, link="busybox", mtime=T0 + 3),
        E("etc/", tarfile.DIRTYPE, mode=0o700, mtime=T0 + 4),
        E("etc/.wh.shadow", mtime=T0 + 5),
        E("etc/cfg", data=b"k=v\n", mode=0o600, xattrs={"user.a": b"1", "user.b": b"\xfe\x00"}),
        E("run/", tarfile.DIRTYPE, mode=0o1777),
        E("run/fifo", tarfile.FIFOTYPE, mode=0o640),
        E("srv/", tarfile.DIRTYPE),
        E("srv/.wh..wh..opq") if os.geteuid() == 0 else E("srv/empty"),
        E(os.fsdecode(b"odd \xe9 name"), data=b"x"),
    )
    a, b = os.path.join(base, "a"), os.path.join(base, "b")
    os.mkdir(a)
    os.mkdir(b)
    apply_layer(io.BytesIO(layer), a)
    diff = b"".join(diff_upper(a))
    applied = apply_layer(io.BytesIO(diff), b)
    assert tree(a) == tree(b)
    expected = {"bin", "bin/busybox", "bin/sh", "bin/ls", "etc", "etc/shadow", "etc/cfg",
                "run", "run/fifo", "srv", os.fsdecode(b"odd \xe9 name")}
    assert set(tree(a)) == expected | (set() if os.geteuid() == 0 else {"srv/empty"})
    assert applied.diff_id == "sha256:" + hashlib.sha256(diff).hexdigest()
    assert b"".join(diff_upper(b)) == diff


def test_output_is_sorted_and_deterministic(upper: str) -> None:
    for n in ("b", "a", "c"):
        mkdir(f"{upper}/{n}")
        for m in ("z", "y", "a.txt"):
            write(f"{upper}/{n}/{m}")
    write(f"{upper}/a.txt")
    settle_dirs(upper)
    first = b"".join(diff_upper(upper))
    assert names(first) == ["a", "a/a.txt", "a/y", "a/z", "a.txt", "b", "b/a.txt", "b/y",
                            "b/z", "c", "c/a.txt", "c/y", "c/z"]
    assert b"".join(diff_upper(upper)) == first
    # chunks never split oddly: the stream is a whole number of blocks
    assert len(first) % tarfile.BLOCKSIZE == 0


def test_owners_are_numeric_and_times_whole_seconds(upper: str) -> None:
    write(f"{upper}/f", b"x")
    os.utime(f"{upper}/f", ns=(T0 * 10**9 + 999_999_999, T0 * 10**9 + 999_999_999))
    (m,) = members(b"".join(diff_upper(upper)))
    assert (m.uname, m.gname, m.uid, m.gid) == ("", "", os.getuid(), os.getgid())
    assert m.mtime == T0
    assert "mtime" not in m.pax_headers


def test_mtime_clamps_newer_timestamps(upper: str) -> None:
    write(f"{upper}/old", mtime=T0 - 100)
    write(f"{upper}/new", mtime=T0 + 100)
    whiteout(f"{upper}/gone")  # made now
    ms = {m.name: m.mtime for m in members(b"".join(diff_upper(upper, mtime=T0)))}
    assert ms == {"old": T0 - 100, "new": T0, ".wh.gone": T0}


def test_hardlinks_are_kept(upper: str) -> None:
    write(f"{upper}/a", b"data")
    os.link(f"{upper}/a", f"{upper}/b")
    mkdir(f"{upper}/d")
    os.link(f"{upper}/a", f"{upper}/d/c")
    ms = {m.name: m for m in members(b"".join(diff_upper(upper)))}
    assert ms["a"].isreg() and ms["a"].size == 4
    assert (ms["b"].islnk(), ms["b"].linkname) == (True, "a")
    assert (ms["d/c"].islnk(), ms["d/c"].linkname) == (True, "a")


def test_symlinks_are_never_followed(tmp_path: object, upper: str) -> None:
    secret = os.path.join(str(tmp_path), "secret")
    write(secret, b"host secret")
    os.mkdir(os.path.join(str(tmp_path), "secretdir"))
    write(os.path.join(str(tmp_path), "secretdir", "inner"), b"host secret 2")
    os.symlink(secret, f"{upper}/link")
    os.symlink(os.path.join(str(tmp_path), "secretdir"), f"{upper}/dirlink")
    os.symlink("/", f"{upper}/root")
    data = b"".join(diff_upper(upper))
    assert b"host secret" not in data
    ms = {m.name: m for m in members(data)}
    assert sorted(ms) == ["dirlink", "link", "root"]
    assert all(m.issym() for m in ms.values())
    assert ms["link"].linkname == secret


def test_sockets_are_left_out(upper: str) -> None:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(f"{upper}/sock")
        write(f"{upper}/f")
        assert names(b"".join(diff_upper(upper))) == ["f"]
    finally:
        s.close()


def test_tar_directory_keeps_devices_and_markers_as_they_are(upper: str) -> None:
    whiteout(f"{upper}/dev0")
    mkdir(f"{upper}/d")
    os.setxattr(f"{upper}/d", "user.overlay.opaque", b"y")
    os.setxattr(f"{upper}/d", "user.keep", b"1")
    ms = {m.name: m for m in members(b"".join(tar_directory(upper)))}
    assert sorted(ms) == ["d", "dev0"]
    assert ms["dev0"].ischr() and (ms["dev0"].devmajor, ms["dev0"].devminor) == (0, 0)
    assert ms["d"].pax_headers == {"SCHILY.xattr.user.keep": "1"}


def test_metacopy_file_takes_its_data_from_the_lowers(tmp_path: object, upper: str) -> None:
    lower1, lower2 = os.path.join(str(tmp_path), "l1"), os.path.join(str(tmp_path), "l2")
    for d in (lower1, lower2):
        mkdir(f"{d}/etc")
    write(f"{lower2}/etc/big", b"the data")
    write(f"{lower1}/etc/big", b"")  # metadata only in the middle layer too
    os.setxattr(f"{lower1}/etc/big", "user.overlay.metacopy", b"")
    write(f"{lower2}/etc/renamed-from", b"moved data")
    mkdir(f"{upper}/etc")
    for n in ("big", "moved"):
        write(f"{upper}/etc/{n}", b"", mode=0o600)
        os.truncate(f"{upper}/etc/{n}", 8 if n == "big" else 10)
        os.setxattr(f"{upper}/etc/{n}", "user.overlay.metacopy", b"")
    os.setxattr(f"{upper}/etc/moved", "user.overlay.redirect", b"renamed-from")
    with pytest.raises(NotSupported, match="metacopy"):
        b"".join(diff_upper(upper))
    data = b"".join(diff_upper(upper, [lower1, lower2]))
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        big, moved = tf.extractfile("etc/big"), tf.extractfile("etc/moved")
        assert big is not None and moved is not None
        assert (big.read(), moved.read()) == (b"the data", b"moved data")
        assert tf.getmember("etc/big").mode == 0o600
        assert all(not k.startswith("SCHILY.xattr.user.overlay") for m in tf.getmembers()
                   for k in m.pax_headers)


def test_renamed_directory_is_not_supported(upper: str) -> None:
    mkdir(f"{upper}/newname")
    os.setxattr(f"{upper}/newname", "user.overlay.redirect", b"/oldname")
    with pytest.raises(NotSupported, match="redirect_dir"):
        b"".join(diff_upper(upper))


def test_stopping_early_closes_every_fd(upper: str) -> None:
    path = upper
    for i in range(30):
        path = os.path.join(path, f"d{i}")
        os.mkdir(path)
    write(os.path.join(path, "big"), os.urandom(3 << 20))
    before = len(os.listdir("/proc/self/fd"))
    it = diff_upper(upper)
    next(it)
    next(it)
    it.close()  # type: ignore[attr-defined]
    assert len(os.listdir("/proc/self/fd")) == before


@pytest.mark.skipif(shutil.which("tar") is None, reason="GNU tar not installed")
def test_gnu_tar_reads_what_we_write(tmp_path: object, upper: str) -> None:
    mkdir(f"{upper}/d")
    write(f"{upper}/d/f", b"hello", mode=0o640)
    os.setxattr(f"{upper}/d/f", "user.x", b"\xff\x01")
    os.symlink("f", f"{upper}/d/l")
    out = os.path.join(str(tmp_path), "out")
    os.mkdir(out)
    subprocess.run(["tar", "--xattrs", "--xattrs-include=user.*", "-x", "-C", out],
                   input=b"".join(diff_upper(upper)), check=True)
    with open(f"{out}/d/f", "rb") as f:
        assert f.read() == b"hello"
    assert os.getxattr(f"{out}/d/f", "user.x") == b"\xff\x01"
    assert os.readlink(f"{out}/d/l") == "f"


def test_long_names_and_links_round_trip(tmp_path: object, upper: str) -> None:
    deep = os.path.join(upper, *(["d" * 60] * 5))
    os.makedirs(deep)
    write(os.path.join(deep, "f" * 200), b"long")
    os.symlink("t" * 300, os.path.join(deep, "l"))
    os.link(os.path.join(deep, "f" * 200), f"{upper}/hl")
    settle_dirs(upper)
    out = os.path.join(str(tmp_path), "out")
    os.mkdir(out)
    apply_layer(io.BytesIO(b"".join(diff_upper(upper))), out)
    assert tree(out) == tree(upper)


def test_diff_streams_through_compress_into_apply(tmp_path: object, upper: str) -> None:
    from pallet.storage.compression import Compression, compress

    write(f"{upper}/f", os.urandom(1 << 20))
    whiteout(f"{upper}/gone")
    raw = b"".join(diff_upper(upper))
    for kind in Compression:
        out = os.path.join(str(tmp_path), kind.value)
        os.mkdir(out)
        blob = b"".join(compress(diff_upper(upper), kind))
        result = apply_layer(io.BytesIO(blob), out)
        assert result.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
        assert tree(out) == tree(upper)


def test_missing_dir_is_not_found(tmp_path: object) -> None:
    from pallet.errors import NotFound

    with pytest.raises(NotFound):
        b"".join(diff_upper(os.path.join(str(tmp_path), "nope")))
