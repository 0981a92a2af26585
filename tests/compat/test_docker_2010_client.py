"""Debian's docker.io 20.10 client (API 1.41) against palletd: the image verbs."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import pytest

from tests.compat.test_pull_push import Clients
from tests.support.palletd import Palletd, palletd  # noqa: F401 - the fixture
from tests.support.registry import Registry, registry  # noqa: F401 - the fixture

pytestmark = pytest.mark.root

OLD = "/usr/bin/docker"


def old(c: Clients, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([OLD, *args], env=c.env, capture_output=True, text=True, timeout=60,
                          check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker 20.10 {' '.join(args)}: {proc.stdout}\n{proc.stderr}")
    return proc


def test_image_verbs_with_the_2010_client(palletd: Palletd,  # noqa: F811
                                          registry: Registry) -> None:  # noqa: F811
    if not os.path.exists(OLD):
        pytest.fail("Debian's docker.io client is missing: test.sh installs docker.io")
    cfg = tempfile.mkdtemp(prefix="pallet-test-dockercfg-")
    c = Clients(palletd, cfg)
    name = f"{registry.host}/pallet/old"
    image_id = c.make_image(f"{name}:1")
    try:
        assert "API version:      1.44" in old(c, "version").stdout
        rows = [line.split()[:3] for line in old(c, "images").stdout.splitlines()]
        assert [name, "1", image_id[7:19]] in rows
        old(c, "tag", f"{name}:1", f"{name}:2")
        assert old(c, "image", "inspect", "-f", "{{.Id}}", f"{name}:2").stdout.strip() == image_id
        assert image_id[7:19] in old(c, "history", "-q", f"{name}:1").stdout
        assert "Pushed" in old(c, "push", f"{name}:1").stdout
        tar = os.path.join(cfg, "saved.tar")
        old(c, "save", "-o", tar, f"{name}:1")
        old(c, "rmi", f"{name}:1", f"{name}:2")
        assert f"Loaded image: {name}:1" in old(c, "load", "-i", tar).stdout
        old(c, "rmi", f"{name}:1")
        pulled = old(c, "pull", f"{name}:1").stdout
        assert f"Status: Downloaded newer image for {name}:1" in pulled
        assert old(c, "image", "inspect", "-f", "{{.Id}}", f"{name}:1").stdout.strip() == image_id
        assert "Images: " in old(c, "info").stdout
    finally:
        old(c, "rmi", "-f", image_id, check=False)
        shutil.rmtree(cfg, ignore_errors=True)
