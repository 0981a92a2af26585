"""Applying layer tarballs: codecs, diff_id, what lands on disk, and hostile archives.

Runs as any user: archives use the test's own uid/gid, so what is checked holds whether
or not ownership could be applied (ownership, devices and opaque dirs: the root test).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import zstandard

from pallet.errors import InvalidArgument, NotSupported
from pallet.storage.compression import Compression, compress, detect, open_decompressed
from pallet.storage.layertar import ApplyResult, apply_layer

UID, GID = os.getuid(), os.getgid()
T0 = 1_600_000_000  # a whole-second mtime, far from "now"


# -- building archives -----------------------------------------------------------------


@dataclass
class E:
    """One archive entry: name, type and whatever that type needs."""

    name: str
    kind: bytes = tarfile.REGTYPE
    data: bytes = b""
    mode: int = -1  # 0755 for a directory, 0644 for anything else
    link: str = ""
    mtime: int = T0
    xattrs: dict[str, bytes] | None = None
    dev: tuple[int, int] = (0, 0)


def make_tar(*entries: E) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT,
                      encoding="utf-8", errors="surrogateescape") as tf:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.type = e.kind
            info.mode = e.mode if e.mode >= 0 else 0o755 if e.kind == tarfile.DIRTYPE else 0o644
            info.uid, info.gid = UID, GID
            info.mtime = e.mtime
            info.linkname = e.link
            info.devmajor, info.devminor = e.dev
            info.size = len(e.data) if e.kind == tarfile.REGTYPE else 0
            if e.xattrs:
                info.pax_headers = {"SCHILY.xattr." + k: v.decode("utf-8", "surrogateescape")
                                    for k, v in e.xattrs.items()}
            tf.addfile(info, io.BytesIO(e.data) if info.size else None)
    return buf.getvalue()


def apply(data: bytes, dest: str, **kw: bool) -> ApplyResult:
    return apply_layer(io.BytesIO(data), dest, **kw)


@pytest.fixture
def dest(tmp_path: object) -> str:
    d = os.path.join(str(tmp_path), "dest")
    os.mkdir(d)
    return d


# -- compression -----------------------------------------------------------------------


def test_detect_by_magic() -> None:
    assert detect(gzip.compress(b"x")) is Compression.GZIP
    assert detect(zstandard.ZstdCompressor().compress(b"x")) is Compression.ZSTD
    assert detect(make_tar(E("a"))) is Compression.NONE
    assert detect(b"") is Compression.NONE
    for head in (b"BZh91AY&SY", b"\xfd7zXZ\x00\x00"):
        with pytest.raises(NotSupported):
            detect(head)


@pytest.mark.parametrize("kind", list(Compression))
def test_compress_then_decompress_gives_the_bytes_back(kind: Compression) -> None:
    data = os.urandom(300_000) + b"\0" * 3_000_000
    blob = b"".join(compress(io.BytesIO(data), kind))
    assert detect(blob) is kind
    assert open_decompressed(io.BytesIO(blob)).read() == data
    if kind is not Compression.NONE:
        assert len(blob) < len(data) // 2
    # the same input always gives the same blob (pushes are reproducible)
    assert b"".join(compress(io.BytesIO(data), kind)) == blob


def test_gzip_blob_has_no_timestamp() -> None:
    blob = b"".join(compress(io.BytesIO(b"abc"), Compression.GZIP))
    assert blob[4:8] == b"\0\0\0\0"  # MTIME
    assert gzip.decompress(blob) == b"abc"


def test_concatenated_zstd_frames_and_gzip_members_are_one_stream() -> None:
    z = zstandard.ZstdCompressor()
    assert open_decompressed(io.BytesIO(z.compress(b"one") + z.compress(b"two"))).read() \
        == b"onetwo"
    assert open_decompressed(io.BytesIO(gzip.compress(b"one") + gzip.compress(b"two"))).read() \
        == b"onetwo"


class Trickle(io.RawIOBase):
    """A pipe-like source: short reads, no seek."""

    def __init__(self, data: bytes, step: int = 7) -> None:
        self._data, self._step = data, step

    def readable(self) -> bool:
        return True

    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        n = min(len(b), self._step, len(self._data))
        b[:n], self._data = self._data[:n], self._data[n:]
        return n


def test_short_reads_from_the_source_are_fine() -> None:
    data = os.urandom(5000)
    for kind in Compression:
        blob = b"".join(compress(io.BytesIO(data), kind))
        assert open_decompressed(Trickle(blob)).read() == data  # type: ignore[arg-type]


@pytest.mark.parametrize("cut", [0.5, 0.99])
@pytest.mark.parametrize("kind", [Compression.GZIP, Compression.ZSTD])
def test_truncated_compressed_stream_is_invalid(kind: Compression, cut: float) -> None:
    blob = b"".join(compress(io.BytesIO(os.urandom(200_000)), kind))
    with pytest.raises(InvalidArgument):
        open_decompressed(io.BytesIO(blob[: int(len(blob) * cut)])).read()


def test_corrupt_gzip_is_invalid() -> None:
    blob = bytearray(gzip.compress(os.urandom(10_000)))
    blob[100] ^= 0xFF
    with pytest.raises(InvalidArgument):
        open_decompressed(io.BytesIO(bytes(blob))).read()


# -- diff_id ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(Compression))
def test_diff_id_is_sha256_of_the_uncompressed_tar(kind: Compression, dest: str) -> None:
    tar = make_tar(E("etc/", tarfile.DIRTYPE, mode=0o755), E("etc/hosts", data=b"x" * 70_000))
    # tarfile pads to 10 KiB records: that padding is part of the diff_id too
    assert tar.endswith(b"\0" * 1024)
    blob = b"".join(compress(io.BytesIO(tar), kind))
    result = apply_layer(Trickle(blob, 4096), dest)  # type: ignore[arg-type]
    assert result.diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()
    assert result.size == len(tar)
    with open(os.path.join(dest, "etc/hosts"), "rb") as f:
        assert f.read() == b"x" * 70_000


def test_diff_id_covers_bytes_after_the_end_marker(dest: str) -> None:
    tar = make_tar(E("a", data=b"1")) + b"\0" * 4096
    result = apply(tar, dest)
    assert result.diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()
    assert result.size == len(tar)


def test_tar_without_end_marker_is_accepted_as_go_does(dest: str) -> None:
    tar = make_tar(E("a", data=b"1" * 600))
    body = tar[: 512 * 3]  # a header and two data blocks: no zero blocks after them
    result = apply_layer(io.BytesIO(body), dest)
    assert result.size == len(body)
    with open(os.path.join(dest, "a"), "rb") as f:
        assert f.read() == b"1" * 600


def test_empty_blob_is_an_empty_layer(dest: str) -> None:
    result = apply_layer(io.BytesIO(b""), dest)
    assert (result.diff_id, result.size) == ("sha256:" + hashlib.sha256(b"").hexdigest(), 0)
    assert os.listdir(dest) == []


# -- what lands on disk ----------------------------------------------------------------


def test_files_dirs_links_modes_and_times(dest: str) -> None:
    tar = make_tar(
        E("usr/", tarfile.DIRTYPE, mode=0o750, mtime=T0 + 1),
        E("usr/bin/", tarfile.DIRTYPE, mode=0o755, mtime=T0 + 2),
        E("usr/bin/tool", data=b"#!/bin/sh\n", mode=0o4755, mtime=T0 + 3),
        E("usr/bin/tool2", tarfile.LNKTYPE, link="usr/bin/tool"),
        E("usr/bin/sh", tarfile.SYMTYPE, link="/bin/busybox", mtime=T0 + 4),
        E("usr/pipe", tarfile.FIFOTYPE, mode=0o620, mtime=T0 + 5),
        E("usr/empty", mode=0o400),
        E("usr/attrs", data=b"a", xattrs={"user.plain": b"v", "user.bin": b"\xff\x00\x80"}),
    )
    apply(tar, dest)
    usr = os.path.join(dest, "usr")
    st = os.lstat(usr)
    # directory times are set after their content was written
    assert (stat.S_IMODE(st.st_mode), st.st_mtime) == (0o750, T0 + 1)
    assert os.lstat(usr + "/bin").st_mtime == T0 + 2
    tool = os.lstat(usr + "/bin/tool")
    assert (stat.S_IMODE(tool.st_mode), tool.st_mtime, tool.st_nlink) == (0o4755, T0 + 3, 2)
    assert os.lstat(usr + "/bin/tool2").st_ino == tool.st_ino
    assert os.readlink(usr + "/bin/sh") == "/bin/busybox"
    assert os.lstat(usr + "/bin/sh").st_mtime == T0 + 4
    pipe = os.lstat(usr + "/pipe")
    assert stat.S_ISFIFO(pipe.st_mode) and stat.S_IMODE(pipe.st_mode) == 0o620
    assert stat.S_IMODE(os.lstat(usr + "/empty").st_mode) == 0o400
    assert os.getxattr(usr + "/attrs", "user.plain") == b"v"
    assert os.getxattr(usr + "/attrs", "user.bin") == b"\xff\x00\x80"


def test_parents_a_layer_leaves_out_are_made_0755(dest: str) -> None:
    old = os.umask(0o077)
    try:
        apply(make_tar(E("a/b/c", data=b"x")), dest)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.lstat(os.path.join(dest, "a/b")).st_mode) == 0o755


def test_later_entries_replace_earlier_ones(dest: str) -> None:
    apply(make_tar(
        E("d/", tarfile.DIRTYPE), E("d/f", data=b"1"),
        E("d", data=b"now a file"),          # a file over a directory
        E("x", data=b"1"), E("x/", tarfile.DIRTYPE, mode=0o700),  # a directory over a file
        E("s", tarfile.SYMTYPE, link="x"), E("s", data=b"plain"),
    ), dest)
    with open(os.path.join(dest, "d"), "rb") as f:
        assert f.read() == b"now a file"
    assert stat.S_IMODE(os.lstat(os.path.join(dest, "x")).st_mode) == 0o700
    assert stat.S_ISREG(os.lstat(os.path.join(dest, "s")).st_mode)


def test_directory_over_directory_merges(dest: str) -> None:
    apply(make_tar(E("d/", tarfile.DIRTYPE), E("d/keep", data=b"k")), dest)
    apply(make_tar(E("d/", tarfile.DIRTYPE, mode=0o711), E("d/new", data=b"n")), dest)
    assert sorted(os.listdir(os.path.join(dest, "d"))) == ["keep", "new"]
    assert stat.S_IMODE(os.lstat(os.path.join(dest, "d")).st_mode) == 0o711


def test_whiteout_becomes_a_0_0_character_device(dest: str) -> None:
    apply(make_tar(E("etc/", tarfile.DIRTYPE), E("etc/.wh.passwd", mtime=T0 + 9)), dest)
    st = os.lstat(os.path.join(dest, "etc/passwd"))
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert st.st_mtime == T0 + 9
    assert os.listdir(os.path.join(dest, "etc")) == ["passwd"]


def test_aufs_metadata_is_skipped(dest: str) -> None:
    apply(make_tar(
        E(".wh..wh.plnk/", tarfile.DIRTYPE), E(".wh..wh.plnk/1234.5678", data=b"x"),
        E(".wh..wh.aufs"), E("d/.wh..wh.orph/", tarfile.DIRTYPE), E("d/f", data=b"f"),
    ), dest)
    assert os.listdir(dest) == ["d"]
    assert os.listdir(os.path.join(dest, "d")) == ["f"]


def test_overlay_xattrs_in_a_layer_are_dropped(dest: str) -> None:
    # Only the whiteout conversion writes overlay's bookkeeping; a layer cannot smuggle
    # in a redirect or an opaque marker by xattr.
    apply(make_tar(E("d/", tarfile.DIRTYPE, xattrs={"user.overlay.opaque": b"y",
                                                    "user.overlay.redirect": b"/etc"}),
                   E("f", xattrs={"user.overlay.metacopy": b"", "user.ok": b"1"})), dest)
    assert os.listxattr(os.path.join(dest, "d")) == []
    assert os.listxattr(os.path.join(dest, "f")) == ["user.ok"]


def test_non_utf8_names_survive(dest: str) -> None:
    name = os.fsdecode(b"caf\xe9")
    apply(make_tar(E(name, data=b"x")), dest)
    assert os.listdir(os.fsencode(dest)) == [b"caf\xe9"]


def test_missing_dest_is_not_found(tmp_path: object) -> None:
    from pallet.errors import NotFound

    with pytest.raises(NotFound):
        apply(make_tar(E("a")), os.path.join(str(tmp_path), "nope"))


# -- hostile archives ------------------------------------------------------------------


def snapshot(top: str, skip: str) -> dict[str, tuple[int, int, int, bytes]]:
    """Every path under ``top`` but ``skip``: (mode, nlink, size, content or link)."""
    out = {}
    for d, dirs, files in os.walk(top):
        if d == skip:
            dirs[:] = []
            continue
        for n in dirs + files:
            p = os.path.join(d, n)
            if p == skip:
                continue
            st = os.lstat(p)
            body = b""
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    body = f.read()
            elif stat.S_ISLNK(st.st_mode):
                body = os.fsencode(os.readlink(p))
            out[p] = (st.st_mode, st.st_nlink, st.st_size, body)
    return out


@dataclass
class Jail:
    root: str  # holds dest and outside
    dest: str
    outside: str  # a directory with a victim file, which no archive may touch
    victim: str
    probe: str  # a name that must not appear in /etc


@pytest.fixture
def jail(tmp_path: object) -> Jail:
    root = str(tmp_path)
    dest, outside = os.path.join(root, "layers", "dest"), os.path.join(root, "outside")
    os.makedirs(dest)
    os.mkdir(outside)
    victim = os.path.join(outside, "victim")
    with open(victim, "w") as f:
        f.write("original")
    return Jail(root, dest, outside, victim, f"pallet-test-{uuid.uuid4().hex[:8]}")


def _hostile_cases() -> dict[str, Callable[[Jail], bytes]]:
    def bomb(j: Jail) -> bytes:
        return make_tar(E("ok", data=b"x"), E(j.victim, tarfile.SYMTYPE, link="/"))

    return {
        "dotdot": lambda j: make_tar(E("../outside/victim", data=b"pwned")),
        "dotdot-deep": lambda j: make_tar(E("../../../../../../../etc/" + j.probe)),
        "dotdot-inside": lambda j: make_tar(E("a/../../outside/victim", data=b"pwned")),
        "symlink-to-root-then-through": lambda j: make_tar(
            E("a", tarfile.SYMTYPE, link="/"), E(f"a/etc/{j.probe}", data=b"pwned")),
        "symlink-out-then-through": lambda j: make_tar(
            E("a", tarfile.SYMTYPE, link=j.outside), E("a/victim", data=b"pwned")),
        "symlink-up-then-through": lambda j: make_tar(
            E("b", tarfile.SYMTYPE, link="../.."), E("b/outside/victim", data=b"pwned")),
        "symlink-dir-through-dir-entry": lambda j: make_tar(
            E("b", tarfile.SYMTYPE, link=j.outside), E("b/new/", tarfile.DIRTYPE)),
        "hardlink-to-etc-passwd": lambda j: make_tar(
            E("h", tarfile.LNKTYPE, link="/etc/passwd")),
        "hardlink-dotdot": lambda j: make_tar(
            E("h", tarfile.LNKTYPE, link="../../outside/victim")),
        "hardlink-through-symlink": lambda j: make_tar(
            E("a", tarfile.SYMTYPE, link=j.outside), E("h", tarfile.LNKTYPE, link="a/victim")),
        "whiteout-of-dotdot": lambda j: make_tar(E(".wh..."), E("x/.wh..")),
        "device-not-allowed": lambda j: make_tar(
            E("null", tarfile.CHRTYPE, dev=(1, 3), mode=0o666)),
        "block-device-not-allowed": lambda j: make_tar(
            E("sda", tarfile.BLKTYPE, dev=(8, 0))),
        "truncated-gzip": lambda j: gzip.compress(
            make_tar(E("big", data=os.urandom(100_000))))[:30_000],
        "truncated-zstd": lambda j: zstandard.ZstdCompressor().compress(
            make_tar(E("big", data=os.urandom(100_000))))[:30_000],
        "truncated-tar-in-data": lambda j: make_tar(E("big", data=b"x" * 100_000))[:20_000],
        "truncated-tar-in-header": lambda j: make_tar(
            E("a", data=b"x" * 512), E("b", data=b"y"))[: 512 * 3 + 100],
        "garbage-header": lambda j: make_tar(E("a", data=b"x" * 512))[: 512 * 2]
        + b"\x01" * 512 + b"\0" * 1024,
        "not-a-tar": lambda j: os.urandom(2048),
        "corrupt-gzip": lambda j: gzip.compress(b"x" * 4096)[:20] + b"\x00" * 100,
        "symlink-bomb-then-name-clash": bomb,
    }


HOSTILE = _hostile_cases()
# Contained rather than refused: bomb writes a symlink named like the victim's absolute
# path, inside dest.
CONTAINED = {"symlink-bomb-then-name-clash"}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archive_writes_nothing_outside(case: str, jail: Jail) -> None:
    data = HOSTILE[case](jail)
    before = snapshot(jail.root, jail.dest)
    passwd = os.lstat("/etc/passwd")
    if case in CONTAINED:
        apply(data, jail.dest, allow_devices=False)
    else:
        with pytest.raises(InvalidArgument):
            apply(data, jail.dest, allow_devices=False)
    assert snapshot(jail.root, jail.dest) == before
    assert not os.path.lexists(f"/etc/{jail.probe}")
    after = os.lstat("/etc/passwd")
    assert (after.st_nlink, after.st_mtime_ns, after.st_ino) == \
        (passwd.st_nlink, passwd.st_mtime_ns, passwd.st_ino)


def test_absolute_names_land_inside(jail: Jail) -> None:
    before = snapshot(jail.root, jail.dest)
    apply(make_tar(E(jail.victim, data=b"pwned"), E("/etc/" + jail.probe, data=b"x")),
          jail.dest)
    assert snapshot(jail.root, jail.dest) == before
    with open(jail.dest + jail.victim) as f:
        assert f.read() == "pwned"
    assert os.path.isfile(os.path.join(jail.dest, "etc", jail.probe))


def test_hardlink_to_a_symlink_links_the_symlink_itself(jail: Jail) -> None:
    before = snapshot(jail.root, jail.dest)
    apply(make_tar(E("s", tarfile.SYMTYPE, link=jail.victim),
                   E("h", tarfile.LNKTYPE, link="s"),
                   E("h2", tarfile.LNKTYPE, link="h")), jail.dest)
    assert snapshot(jail.root, jail.dest) == before
    for name in ("h", "h2"):
        st = os.lstat(os.path.join(jail.dest, name))
        assert stat.S_ISLNK(st.st_mode)
        assert os.readlink(os.path.join(jail.dest, name)) == jail.victim
    assert os.lstat(jail.victim).st_nlink == 1


@pytest.mark.parametrize("kind", [tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.FIFOTYPE,
                                  tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_an_entry_over_a_symlink_replaces_the_symlink(kind: bytes, jail: Jail) -> None:
    # the symlink is already in dest (an earlier layer in the same dir), pointing out
    os.symlink(jail.victim, os.path.join(jail.dest, "s"))
    os.symlink(jail.outside, os.path.join(jail.dest, "d"))
    before = snapshot(jail.root, jail.dest)
    entries = [E("target", data=b"t")]
    link = "target" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
    entries += [E("s", kind, data=b"pwned" if kind == tarfile.REGTYPE else b"", link=link),
                E("d", kind, data=b"pwned" if kind == tarfile.REGTYPE else b"", link=link)]
    if kind == tarfile.DIRTYPE:
        entries.append(E("d/victim", data=b"pwned"))
    apply(make_tar(*entries), jail.dest)
    assert snapshot(jail.root, jail.dest) == before
    assert os.lstat(jail.victim).st_nlink == 1
    for name in ("s", "d"):
        p = os.path.join(jail.dest, name)
        assert not (os.path.islink(p) and os.readlink(p) in (jail.victim, jail.outside))


def test_replacing_a_directory_does_not_follow_symlinks_inside_it(jail: Jail) -> None:
    before = snapshot(jail.root, jail.dest)
    apply(make_tar(E("d/", tarfile.DIRTYPE), E("d/out", tarfile.SYMTYPE, link=jail.outside),
                   E("d/out2", tarfile.SYMTYPE, link="/"), E("d", data=b"file")), jail.dest)
    assert snapshot(jail.root, jail.dest) == before
    assert os.path.isfile(jail.victim)


def test_whiteout_does_not_follow_a_symlink_parent(jail: Jail) -> None:
    before = snapshot(jail.root, jail.dest)
    with pytest.raises(InvalidArgument):
        apply(make_tar(E("a", tarfile.SYMTYPE, link=jail.outside), E("a/.wh.victim")),
              jail.dest)
    assert snapshot(jail.root, jail.dest) == before


def test_devices_refused_when_not_allowed_even_as_whiteout_lookalike(dest: str) -> None:
    # a raw 0:0 device acts as a whiteout; with devices off it is refused like any other
    with pytest.raises(InvalidArgument, match="device"):
        apply(make_tar(E("x", tarfile.CHRTYPE, dev=(0, 0))), dest, allow_devices=False)
    # fifos are not devices
    apply(make_tar(E("p", tarfile.FIFOTYPE)), dest, allow_devices=False)
    assert stat.S_ISFIFO(os.lstat(os.path.join(dest, "p")).st_mode)


@pytest.mark.skipif(os.geteuid() == 0, reason="checks what an unprivileged user is told")
def test_devices_without_privilege_are_not_supported(dest: str) -> None:
    with pytest.raises(NotSupported, match="CAP_MKNOD"):
        apply(make_tar(E("null", tarfile.CHRTYPE, dev=(1, 3))), dest)


def test_zlib_error_type_is_not_leaked(dest: str) -> None:
    bad = bytearray(gzip.compress(make_tar(E("a", data=os.urandom(50_000)))))
    bad[len(bad) // 2] ^= 0x55
    with pytest.raises(InvalidArgument) as info:
        apply(bytes(bad), dest)
    assert not isinstance(info.value, zlib.error | OSError)
