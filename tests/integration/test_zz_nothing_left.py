"""Runs last (by name): the whole test run left nothing on the host.

Every fixture checks its own container; this is the net under them: no state dir in
the default root made by a test, no cgroup named like a test, no mount of a test
directory, no process living in a test bundle.
"""

from __future__ import annotations

import glob
import os

import pytest

from pallet.runtime.state import DEFAULT_ROOT
from tests.support.leftovers import cgroup_dirs, mounts, processes_in, state_dirs

pytestmark = pytest.mark.root

MARK = "pallet-test"


@pytest.fixture
def test_dirs(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Where tests keep bundles: pytest's base temp dir and the open dirs of userns tests."""
    return [str(tmp_path_factory.getbasetemp()), *glob.glob(f"/tmp/{MARK}-userns-*")]


def test_no_state_dirs_in_the_default_root() -> None:
    assert state_dirs(DEFAULT_ROOT, MARK) == []


def test_no_test_cgroups() -> None:
    assert cgroup_dirs(MARK) == []


def test_no_test_mounts(test_dirs: list[str]) -> None:
    assert mounts(MARK) == []
    for d in test_dirs:
        assert mounts(d) == [], d


def test_no_processes_in_test_bundles(test_dirs: list[str]) -> None:
    found = [p for d in test_dirs for p in processes_in(d)]
    # and anything whose root or cwd names a test (a bundle made elsewhere)
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        for link in ("cwd", "root"):
            try:
                target = os.readlink(f"/proc/{name}/{link}")
            except OSError:
                continue
            if MARK in target:
                found.append((int(name), f"{link} -> {target}"))
    assert found == []


def test_no_userns_test_dirs_left(test_dirs: list[str]) -> None:
    assert test_dirs[1:] == []


def test_no_test_monitor_left(test_dirs: list[str]) -> None:
    """Every test palletd (and with it its DNS listeners) and its pallet-monitor was shut
    down with its containers."""
    marks = [MARK.encode(), *(d.encode() for d in test_dirs)]
    left = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        daemon = b"pallet.monitor" in argv or b"pallet.api.daemon" in argv
        if daemon and any(m in a for a in argv for m in marks):
            left.append((int(name), argv))
    assert left == []


def test_no_test_network_left() -> None:
    """No bridge, veth, firewall table, netns or DNS listener of a test palletd."""
    import re
    import subprocess

    from tests.conftest import LINKS_AT_START

    now = set(os.listdir("/sys/class/net"))
    pallets = {n for n in now - LINKS_AT_START if n.startswith(("pbr-", "pveth", "pt"))}
    assert sorted(pallets) == []
    assert [n for n in now if re.fullmatch(r"pt[0-9a-f]{8}", n)] == []
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True,
                            check=True).stdout
    assert [t for t in tables.split() if t.startswith("pallet_t")] == []
    # netns files of test daemons live under their dirs: test_no_test_mounts covers them
