"""The pallet CLI's image verbs against a private palletd."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.support.palletd import Palletd, palletd  # noqa: F401 - the fixture
from tests.support.runtime import busybox_template

pytestmark = pytest.mark.root


def pallet(d: Palletd, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "pallet.cli.main", *args], cwd=REPO,
                          env={**os.environ, "DOCKER_HOST": d.host}, input=stdin,
                          capture_output=True, timeout=60, check=False)
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(),
                                       proc.stderr.decode())


def test_import_list_tag_history_rmi(palletd: Palletd) -> None:  # noqa: F811
    tar = subprocess.run(["tar", "-C", busybox_template(), "-c", "."], capture_output=True,
                         check=True).stdout
    out = pallet(palletd, "import", "-c", 'CMD ["sh"]', "-", "pallet-test/cli:1", stdin=tar)
    assert out.returncode == 0, out.stderr
    image_id = out.stdout.strip()
    assert image_id.startswith("sha256:")
    lines = pallet(palletd, "images").stdout.splitlines()
    assert lines[0].split()[:3] == ["REPOSITORY", "TAG", "IMAGE"]
    assert any(line.split()[:3] == ["pallet-test/cli", "1", image_id[7:19]] for line in lines)
    assert pallet(palletd, "tag", "pallet-test/cli:1", "pallet-test/cli:2").returncode == 0
    fmt = pallet(palletd, "images", "--format", "{{.Repository}}:{{.Tag}}", "pallet-test/cli")
    assert sorted(fmt.stdout.split()) == ["pallet-test/cli:1", "pallet-test/cli:2"]
    assert pallet(palletd, "image", "inspect", "-f", "{{json .Config.Cmd}}",
                  "pallet-test/cli:1").stdout == '["sh"]\n'
    assert pallet(palletd, "history", "-q", "pallet-test/cli:1").stdout == f"{image_id[7:19]}\n"
    rm = pallet(palletd, "rmi", "pallet-test/cli:2", "pallet-test/cli:1", "pallet-test/nosuch")
    assert rm.returncode == 1 and "No such image: pallet-test/nosuch" in rm.stderr
    assert rm.stdout.splitlines()[:2] == ["Untagged: pallet-test/cli:2",
                                          "Untagged: pallet-test/cli:1"]
    assert f"Deleted: {image_id}" in rm.stdout
    missing = pallet(palletd, "image", "inspect", "pallet-test/cli:1")
    assert missing.returncode == 1 and missing.stderr == "Error: No such image: pallet-test/cli:1\n"


def test_bootstrap_busybox(palletd: Palletd) -> None:  # noqa: F811
    out = pallet(palletd, "image", "bootstrap", "busybox:pallet-test")
    assert out.returncode == 0, out.stderr
    image_id = out.stdout.strip()
    info = pallet(palletd, "image", "inspect", "-f",
                  "{{json .Config.Cmd}} {{json .RepoTags}} {{.GraphDriver.Data.UpperDir}}",
                  "busybox:pallet-test").stdout.split()
    assert info[0] == '["sh"]' and info[1] == '["busybox:pallet-test"]'
    assert os.path.islink(os.path.join(info[2], "bin", "sh"))
    assert os.path.isfile(os.path.join(info[2], "etc", "passwd"))
    bad = pallet(palletd, "image", "bootstrap", "alpine")
    assert bad.returncode == 1 and "no built-in bootstrap for 'alpine'" in bad.stderr
    assert pallet(palletd, "rmi", image_id).returncode == 0


def test_is_static() -> None:
    from pallet.engine.bootstrap import is_static

    assert is_static("/bin/busybox") is True
    assert is_static(sys.executable if os.path.exists(sys.executable) else "/bin/sh") is False


def test_bootstrap_debian(palletd: Palletd) -> None:  # noqa: F811
    """debootstrap minbase from the mirror apt uses (~1 minute): a real Debian userland."""
    out = pallet(palletd, "image", "bootstrap", "debian:bookworm")
    assert out.returncode == 0, out.stderr
    upper = pallet(palletd, "image", "inspect", "-f", "{{.GraphDriver.Data.UpperDir}}",
                   "debian:bookworm").stdout.strip()
    with open(os.path.join(upper, "etc", "debian_version")) as f:
        assert f.read().startswith("12.")
    assert os.path.isfile(os.path.join(upper, "usr", "bin", "apt-get"))
    assert os.listdir(os.path.join(upper, "var", "lib", "apt", "lists")) in ([], ["partial"],
                                                                           ["lock", "partial"])
    assert pallet(palletd, "rmi", "debian:bookworm").returncode == 0
