"""paths.secure_join and friends on a temp tree full of hostile symlinks.

Whatever a rootfs holds, a path resolved under it must stay under it: absolute link
targets restart at the root, ``..`` stops at the root, loops end in ELOOP.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from pallet.runtime import paths


@pytest.fixture
def root(tmp_path: Path) -> str:
    r = tmp_path / "rootfs"
    (r / "etc").mkdir(parents=True)
    (r / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (r / "usr" / "lib").mkdir(parents=True)
    os.symlink("/", r / "proc")                 # /proc -> /
    os.symlink("../../..", r / "a")             # a -> ../../..
    os.symlink("/etc", r / "abs")               # absolute: means the rootfs's /etc
    os.symlink("usr/lib", r / "lib")            # an ordinary relative link
    os.symlink("loop2", r / "loop1")            # loop1 -> loop2 -> loop1
    os.symlink("loop1", r / "loop2")
    os.symlink("self", r / "self")              # self -> self
    os.symlink("../../../../../../etc/shadow", r / "etc" / "evil")
    os.symlink("/proc/self/root", r / "procroot")
    os.symlink("passwd", r / "etc" / "pw")      # a link to a file
    return str(r)


def inside(root: str, path: str) -> bool:
    return path == root or path.startswith(root + "/")


@pytest.mark.parametrize("unsafe, expect", [
    ("/", ""),
    ("", ""),
    ("/etc/passwd", "etc/passwd"),
    ("etc/passwd", "etc/passwd"),
    ("//etc///passwd/", "etc/passwd"),
    ("/./etc/./passwd", "etc/passwd"),
    ("/proc", ""),
    ("/proc/etc/passwd", "etc/passwd"),
    ("/proc/proc/proc/etc", "etc"),
    ("/a", ""),
    ("/a/etc/shadow", "etc/shadow"),
    ("/usr/../a/../../etc", "etc"),
    ("/abs/passwd", "etc/passwd"),
    ("/lib/x", "usr/lib/x"),
    ("/etc/evil", "etc/shadow"),
    ("/../../../etc", "etc"),
    ("/etc/pw", "etc/passwd"),
    ("/new/dir/file", "new/dir/file"),
    ("/etc/passwd/under/a/file", "etc/passwd/under/a/file"),
])
def test_secure_join_stays_inside(root: str, unsafe: str, expect: str) -> None:
    got = paths.secure_join(root, unsafe)
    assert inside(root, got)
    assert got == (os.path.join(root, expect) if expect else root)


def test_procroot_resolves_through_the_containers_proc_link(root: str) -> None:
    # /procroot -> /proc/self/root; /proc -> / so that is root/self/root and 'self'
    # is a self-loop: the result is a lexical path under the root, never /proc of the host.
    with pytest.raises(OSError) as info:
        paths.secure_join(root, "/procroot/etc")
    assert info.value.errno == errno.ELOOP


@pytest.mark.parametrize("unsafe", ["/loop1", "/loop2/x", "/self", "/self/etc"])
def test_loops_end_in_eloop(root: str, unsafe: str) -> None:
    with pytest.raises(OSError) as info:
        paths.secure_join(root, unsafe)
    assert info.value.errno == errno.ELOOP


def test_root_itself_may_be_relative(root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(os.path.dirname(root))
    assert paths.secure_join("rootfs", "/proc/etc") == os.path.join(root, "etc")


def test_mkdir_all_in_creates_inside_through_hostile_links(root: str, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(str(outside), os.path.join(root, "hostdir"))  # absolute: rootfs's /tmp/...
    made = paths.mkdir_all_in(root, "/a/proc/hostdir/x/y")
    assert inside(root, made) and os.path.isdir(made)
    assert list(outside.iterdir()) == []
    assert paths.mkdir_all_in(root, "/") == root
    assert paths.mkdir_all_in(root, "/etc") == os.path.join(root, "etc")


def test_mkdir_all_in_refuses_a_file_in_the_way(root: str) -> None:
    with pytest.raises(NotADirectoryError):
        paths.mkdir_all_in(root, "/etc/passwd/x")


def test_create_file_in_makes_a_dangling_links_directories_inside(root: str) -> None:
    os.symlink("../run/systemd/resolve/stub-resolv.conf", os.path.join(root, "etc", "resolv.conf"))
    made = paths.create_file_in(root, "/etc/resolv.conf")
    assert made == os.path.join(root, "run/systemd/resolve/stub-resolv.conf")
    assert os.path.isfile(made)


def test_create_file_in_follows_links_inside(root: str, tmp_path: Path) -> None:
    target = tmp_path / "host-file"
    os.symlink(str(target), os.path.join(root, "etc", "hosts"))
    made = paths.create_file_in(root, "/etc/hosts")
    assert made == os.path.join(root, str(target).lstrip("/"))
    assert os.path.isfile(made) and not target.exists()
    # an existing file is left as it is
    assert paths.create_file_in(root, "/proc/etc/passwd") == os.path.join(root, "etc/passwd")
    assert (Path(root) / "etc" / "passwd").read_text().startswith("root:")
