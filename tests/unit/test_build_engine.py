"""The builder's pieces that need no daemon: the stage output order, the context
unpacker, copy rules, checksums and layer squashing."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from pallet.engine import buildcontext, buildcopy
from pallet.engine.builds import Output
from pallet.errors import InvalidArgument, NotFound
from pallet.storage.squash import squash


def _tar(entries: list[tuple[str, bytes | str | None]]) -> io.BytesIO:
    """A tar of (name, data): bytes a file, None a directory, "->x" a symlink to x."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                t.addfile(info)
            elif isinstance(data, str):
                info.type, info.linkname = tarfile.SYMTYPE, data[2:]
                t.addfile(info)
            else:
                info.size, info.mode = len(data), 0o640
                t.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def test_output_shows_stages_in_order_whatever_finishes_first() -> None:
    seen: list[str] = []
    out = Output(lambda m: seen.append(m["stream"]), quiet=False, count=3)
    a, b, c = out.writer(0), out.writer(1), out.writer(2)
    b({"stream": "b1"})
    c({"stream": "c1"})
    a({"stream": "a1"})
    assert seen == ["a1"]  # stage 0's turn; the others wait
    out.finish(1)  # stage 1 is done before stage 0: still held
    assert seen == ["a1"]
    out.finish(0)
    assert seen == ["a1", "b1", "c1"]  # 1 flushed (and done), 2 caught up
    c({"stream": "c2"})
    assert seen[-1] == "c2"  # now live


def test_output_quiet_says_nothing_and_a_failed_stage_flushes() -> None:
    seen: list[dict[str, str]] = []
    Output(seen.append, quiet=True, count=1).writer(0)({"stream": "x"})
    assert seen == []
    out = Output(seen.append, quiet=False, count=2)
    out.writer(1)({"stream": "boom"})
    out.flush(1)
    assert seen == [{"stream": "boom"}]


def test_unpack_keeps_files_modes_and_links(tmp_path: Path) -> None:
    buildcontext.unpack(_tar([("d", None), ("d/f", b"hi"), ("l", "->d/f"),
                              ("./top", b"x")]), str(tmp_path))
    assert (tmp_path / "d/f").read_bytes() == b"hi"
    assert (tmp_path / "d/f").stat().st_mode & 0o777 == 0o640
    assert os.readlink(tmp_path / "l") == "d/f"
    assert (tmp_path / "top").read_bytes() == b"x"


@pytest.mark.parametrize("name", ["../evil", "/abs/../../evil", "a/../../evil"])
def test_unpack_refuses_names_that_climb_out(tmp_path: Path, name: str) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    with pytest.raises(InvalidArgument, match="outside"):
        buildcontext.unpack(_tar([(name, b"x")]), str(ctx))
    assert not (tmp_path / "evil").exists()


def test_unpack_never_writes_through_a_link(tmp_path: Path) -> None:
    ctx, victim = tmp_path / "ctx", tmp_path / "victim"
    ctx.mkdir()
    victim.mkdir()
    with pytest.raises(InvalidArgument, match="link"):
        buildcontext.unpack(_tar([("l", f"->{victim}"), ("l/f", b"x")]), str(ctx))
    assert list(victim.iterdir()) == []


def test_unpack_says_what_is_wrong_with_a_non_tar(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="not a tar archive"):
        buildcontext.unpack(io.BytesIO(os.urandom(2000)), str(tmp_path))


def test_inside_resolves_links_within_the_root(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    os.symlink("/etc", tmp_path / "abs")
    os.symlink("../../..", tmp_path / "etc/up")
    assert buildcontext.inside(str(tmp_path), "abs/passwd") == str(tmp_path / "etc/passwd")
    assert buildcontext.inside(str(tmp_path), "etc/up/x") == str(tmp_path / "x")
    assert buildcontext.inside(str(tmp_path), "../../x") == str(tmp_path / "x")


def test_checksum_follows_content_and_mode_not_mtime(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_text("one")
    first = buildcontext.checksum(str(tmp_path), [str(f)])
    os.utime(f, (1, 1))
    assert buildcontext.checksum(str(tmp_path), [str(f)]) == first
    f.chmod(0o600)
    second = buildcontext.checksum(str(tmp_path), [str(f)])
    assert second != first
    f.write_text("two")
    assert buildcontext.checksum(str(tmp_path), [str(f)]) not in (first, second)


def _tree(tmp_path: Path) -> tuple[Path, Path]:
    ctx, root = tmp_path / "ctx", tmp_path / "root"
    (ctx / "dir/sub").mkdir(parents=True)
    (ctx / "a.txt").write_text("a")
    (ctx / "dir/sub/b.txt").write_text("b")
    (root / "existing").mkdir(parents=True)
    os.symlink("/existing", root / "link")
    return ctx, root


def test_copy_rules(tmp_path: Path) -> None:
    ctx, root = _tree(tmp_path)
    uid, gid = (7, 8) if os.geteuid() == 0 else (os.getuid(), os.getgid())
    target = buildcopy.Target(str(root), "/new/name.txt", uid, gid)
    buildcopy.copy([str(ctx / "a.txt")], target)
    assert (root / "new/name.txt").read_text() == "a"  # no slash, not a dir: the file
    assert (root / "new/name.txt").stat().st_uid == uid and (root / "new").stat().st_gid == gid
    buildcopy.copy([str(ctx / "a.txt")], buildcopy.Target(str(root), "/existing", uid, gid))
    assert (root / "existing/a.txt").read_text() == "a"  # an existing dir: into it
    buildcopy.copy([str(ctx / "dir")], buildcopy.Target(str(root), "/link/d/", uid, gid,
                                                        mode=0o700))
    # the contents of a dir, not the dir; through the image's own symlink, never the host's
    assert (root / "existing/d/sub/b.txt").read_text() == "b"
    assert (root / "existing/d/sub/b.txt").stat().st_mode & 0o777 == 0o700
    with pytest.raises(InvalidArgument, match="must be a directory"):
        buildcopy.copy([str(ctx / "a.txt"), str(ctx / "dir")],
                       buildcopy.Target(str(root), "/x"))


def test_add_unpacks_a_local_archive(tmp_path: Path) -> None:
    ctx, root = _tree(tmp_path)
    (ctx / "t.tar").write_bytes(_tar([("in/side.txt", b"s")]).getvalue())
    buildcopy.copy([str(ctx / "t.tar")], buildcopy.Target(str(root), "/x/"), extract=True)
    assert (root / "x/in/side.txt").read_text() == "s"
    buildcopy.copy([str(ctx / "t.tar")], buildcopy.Target(str(root), "/y/"))
    assert (root / "y/t.tar").is_file()  # COPY does not unpack


def test_sources_glob_and_stay_in_the_context(tmp_path: Path) -> None:
    ctx, _ = _tree(tmp_path)
    got = buildcopy.resolve_sources(str(ctx), ["*.txt", "nomatch*"], "build context")
    assert got == [str(ctx / "a.txt")]
    with pytest.raises(InvalidArgument, match="outside the build context"):
        buildcopy.resolve_sources(str(ctx), ["../x"], "build context")
    with pytest.raises(NotFound, match=r"missing\.txt"):
        buildcopy.resolve_sources(str(ctx), ["missing.txt"], "build context")
    with pytest.raises(InvalidArgument, match="no source files"):
        buildcopy.resolve_sources(str(ctx), ["nomatch*"], "build context")


def test_squash_merges_layers_with_their_whiteouts(tmp_path: Path) -> None:
    l1 = _tar([("a", None), ("a/x", b"1"), ("a/y", b"2"), ("b", b"b1"), ("gone", None),
               ("gone/f", b"f")])
    l2 = _tar([("a", None), ("a/.wh.x", b""), ("b", b"b2"), (".wh.gone", b""),
               ("o", None), ("o/.wh..wh..opq", b"")])
    l3 = _tar([("a", None), ("a/x", b"3")])
    merged = b"".join(squash([l1, l2, l3], str(tmp_path)))
    with tarfile.open(fileobj=io.BytesIO(merged)) as t:
        got = {m.name: (t.extractfile(m).read() if m.isfile() else m.type)  # type: ignore[union-attr]
               for m in t}
    assert got == {"a": tarfile.DIRTYPE, "a/x": b"3", "a/y": b"2", "b": b"b2",
                   ".wh.gone": b"", "o": tarfile.DIRTYPE, "o/.wh..wh..opq": b""}
    assert list(got) == sorted(got)
