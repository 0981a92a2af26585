"""The pallet CLI's volume verbs and mount flags: docker's flags, output and exit codes;
and pallet's own `volume export` / `volume import`."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator

import pytest

from tests.conftest import REPO
from tests.support.leftovers import mounts as mounts_with
from tests.support.palletd import Palletd, palletd_with_image

pytestmark = pytest.mark.root

IMAGE = "pallet-test/busybox:clivol"
NONET = ("--network", "none")


@pytest.fixture(scope="module")
def pd() -> Iterator[Palletd]:
    with palletd_with_image("pallet-test-clivol-", IMAGE, 'CMD ["sh"]') as d:
        try:
            yield d
        finally:
            d.docker("volume", "rm", "-f", *d.docker("volume", "ls", "-q").stdout.split(),
                     check=False)
            assert mounts_with(os.path.join(d.data_root, "volumes")) == []


def pallet(d: Palletd, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[
        bytes]:
    return subprocess.run([sys.executable, "-m", "pallet.cli.main", *args], cwd=REPO,
                          env={**os.environ, "DOCKER_HOST": d.host}, input=stdin,
                          capture_output=True, timeout=60, check=False)


def text(out: subprocess.CompletedProcess[bytes]) -> str:
    return out.stdout.decode()


def make_tar(*entries: tuple[str, str, str]) -> bytes:
    """(name, "f" file | "l" symlink | "d" directory, content or link target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, kind, arg in entries:
            info = tarfile.TarInfo(name)
            if kind == "f":
                info.size = len(arg)
                tar.addfile(info, io.BytesIO(arg.encode()))
            elif kind == "l":
                info.type, info.linkname = tarfile.SYMTYPE, arg
                tar.addfile(info)
            else:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
    return buf.getvalue()


def test_volume_verbs(pd: Palletd) -> None:
    assert text(pallet(pd, "volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs",
                       "--label", "k=v", "cv-one")) == "cv-one\n"
    out = text(pallet(pd, "volume", "ls")).splitlines()
    assert out[0].split() == ["DRIVER", "VOLUME", "NAME"] and out[1].split() == ["local",
                                                                              "cv-one"]
    assert text(pallet(pd, "volume", "ls", "-q", "--filter", "label=k")) == "cv-one\n"
    info = json.loads(pallet(pd, "volume", "inspect", "cv-one").stdout)[0]
    assert info["Options"] == {"type": "tmpfs", "device": "tmpfs"}
    assert text(pallet(pd, "volume", "inspect", "-f", "{{.Driver}} {{.Name}}", "cv-one")) == \
        "local cv-one\n"
    bad = pallet(pd, "volume", "create", "-o", "type=tmpfs", "cv-bad")
    assert bad.returncode == 1 and b'create cv-bad: missing required option: "device"' in \
        bad.stderr
    assert text(pallet(pd, "volume", "rm", "cv-one")) == "cv-one\n"
    missing = pallet(pd, "volume", "inspect", "cv-one")
    assert missing.returncode == 1 and b"get cv-one: no such volume" in missing.stderr
    assert pallet(pd, "volume").stdout.startswith(b"Usage:  pallet volume COMMAND")


def test_run_flags(pd: Palletd) -> None:
    out = pallet(pd, "run", "--rm", *NONET, "-v", "cv-data:/d", "--mount",
                 "type=tmpfs,target=/t,tmpfs-mode=1770", IMAGE, "sh", "-c",
                 "echo one > /d/f; stat -c %a /t")
    assert text(out) == "1770\n", out.stderr
    src = pallet(pd, "create", *NONET, "--name", "cv-src", "-v", "/anon", "--mount",
                 "source=cv-data,target=/data", IMAGE, "true")
    assert src.returncode == 0, src.stderr
    out = pallet(pd, "run", "--rm", *NONET, "--volumes-from", "cv-src:ro", IMAGE, "sh", "-c",
                 "cat /data/f; touch /data/g 2>/dev/null || echo refused; ls -d /anon")
    assert text(out) == "one\nrefused\n/anon\n", out.stderr
    mounts = json.loads(pallet(pd, "inspect", "cv-src").stdout)[0]["Mounts"]
    assert [(m["Type"], m["Destination"], m.get("Name")) for m in mounts][1] == \
        ("volume", "/data", "cv-data")
    anon = mounts[0]["Name"]
    assert pallet(pd, "volume", "rm", "cv-data").returncode == 1  # in use
    assert text(pallet(pd, "rm", "-v", "cv-src")) == "cv-src\n"
    names = text(pallet(pd, "volume", "ls", "-q")).split()
    assert "cv-data" in names and anon not in names  # rm -v: the anonymous one only
    bad = pallet(pd, "run", "--rm", "--mount", "type=tmpfs,target=/t,volume-nocopy", IMAGE,
                 "true")
    assert bad.returncode == 125 and b"cannot mix 'volume-*' options with mount type " \
        b"'tmpfs'" in bad.stderr
    bad = pallet(pd, "run", "--rm", "--mount", "type=bind,source=/x", IMAGE, "true")
    assert bad.returncode == 125 and b"target is required" in bad.stderr
    pallet(pd, "volume", "rm", "cv-data")


def test_prune(pd: Palletd) -> None:
    pallet(pd, "volume", "create", "cv-named")
    anon = text(pallet(pd, "volume", "create")).strip()
    out = text(pallet(pd, "volume", "prune", "-f"))
    assert out == f"Deleted Volumes:\n{anon}\n\nTotal reclaimed space: 0B\n"
    assert text(pallet(pd, "volume", "prune", "-a", "-f")).startswith(
        "Deleted Volumes:\ncv-named\n")


def test_export_import_round_trip(pd: Palletd, tmp_path: os.PathLike[str]) -> None:
    out = pallet(pd, "run", "--rm", *NONET, "-v", "cv-src-vol:/d", IMAGE, "sh", "-c",
                 "mkdir -p /d/dir && echo deep > /d/dir/f && ln -s dir/f /d/link && "
                 "chown 7:8 /d/dir && chmod 700 /d/dir")
    assert out.returncode == 0, out.stderr
    archive = os.path.join(tmp_path, "vol.tar")
    assert pallet(pd, "volume", "export", "-o", archive, "cv-src-vol").returncode == 0
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == ["dir", "dir/f", "link"]
    assert pallet(pd, "volume", "import", "cv-copy", archive).returncode == 0
    out = pallet(pd, "run", "--rm", *NONET, "-v", "cv-copy:/d", IMAGE, "sh", "-c",
                 "cat /d/link; stat -c '%u:%g %a' /d/dir")
    assert text(out) == "deep\n7:8 700\n", out.stderr
    # stdout and stdin too
    streamed = pallet(pd, "volume", "export", "cv-copy").stdout
    assert pallet(pd, "volume", "import", "cv-copy2", "-", stdin=streamed).returncode == 0
    out = pallet(pd, "run", "--rm", *NONET, "-v", "cv-copy2:/d", IMAGE, "cat", "/d/dir/f")
    assert text(out) == "deep\n"
    # into a volume with something in it: refused, the volume untouched
    again = pallet(pd, "volume", "import", "cv-copy", archive)
    assert again.returncode == 1 and b"the volume is not empty" in again.stderr
    pallet(pd, "volume", "rm", "cv-src-vol", "cv-copy", "cv-copy2")


@pytest.mark.parametrize(("entries", "words"), [
    ((("ok", "f", "1"), ("../escape", "f", "x")), "../escape: it leaves the volume"),
    ((("/etc/cv-abs", "f", "x"),), "absolute paths are not allowed"),
])
def test_import_refuses_what_leaves_the_volume(pd: Palletd, entries: tuple[
        tuple[str, str, str], ...], words: str) -> None:
    before = text(pallet(pd, "volume", "ls", "-q"))
    out = pallet(pd, "volume", "import", "cv-evil", "-", stdin=make_tar(*entries))
    assert out.returncode == 1 and words.encode() in out.stderr, out.stderr
    assert text(pallet(pd, "volume", "ls", "-q")) == before  # the volume it made is gone
    assert not os.path.exists("/etc/cv-abs")


def test_import_keeps_symlinked_paths_inside(pd: Palletd) -> None:
    """A symlink to / then a file through it: the file lands in the volume's own /, or
    nowhere, never on the host."""
    host = f"/tmp/cv-through-link-{os.getpid()}"
    tar = make_tar(("up", "l", "/tmp"), ("up/" + os.path.basename(host), "f", "x"))
    pallet(pd, "volume", "import", "cv-link", "-", stdin=tar)
    assert not os.path.exists(host)
    pallet(pd, "volume", "rm", "-f", "cv-link")
    out = pallet(pd, "volume", "import", "cv-garbage", "-", stdin=b"not a tar at all\n" * 64)
    assert out.returncode == 1 and b"invalid tar archive" in out.stderr
    assert b"cv-garbage" not in pallet(pd, "volume", "ls", "-q").stdout
