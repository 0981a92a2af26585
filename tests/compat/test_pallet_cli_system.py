"""The pallet CLI against a private palletd: version, info, system df, events, errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.support.palletd import Palletd, palletd  # noqa: F401 - the fixture

pytestmark = pytest.mark.root


def pallet(d: Palletd | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **({"DOCKER_HOST": d.host} if d else {})}
    return subprocess.run([sys.executable, "-m", "pallet.cli.main", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)


def test_version_and_info(palletd: Palletd) -> None:  # noqa: F811
    out = pallet(palletd, "version")
    assert out.returncode == 0, out.stderr
    assert "Server: pallet" in out.stdout and "API version:      1.44" in out.stdout
    assert pallet(palletd, "version", "--format", "{{.Server.ApiVersion}}").stdout == "1.44\n"
    info = pallet(palletd, "info")
    assert info.returncode == 0 and f" Docker Root Dir: {palletd.data_root}\n" in info.stdout
    assert pallet(palletd, "-H", palletd.host, "info", "-f", "{{.OSType}}").stdout == "linux\n"


def test_system_df_table(palletd: Palletd) -> None:  # noqa: F811
    lines = pallet(palletd, "system", "df").stdout.splitlines()
    assert lines[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    assert [line.split()[0] for line in lines[1:]] == ["Images", "Containers", "Local",
                                                       "Build"]


def test_events_until_returns(palletd: Palletd) -> None:  # noqa: F811
    out = pallet(palletd, "events", "--since", "1", "--until", "2")
    assert out.returncode == 0 and out.stdout == ""
    bad = pallet(palletd, "events", "--filter", "nosuch=1", "--until", "1")
    assert bad.returncode == 1
    assert bad.stderr == "Error response from daemon: invalid filter 'nosuch'\n"


def test_errors_as_docker_prints_them() -> None:
    out = pallet(None, "-H", "unix:///nonexistent/pallet.sock", "version")
    assert out.returncode == 1 and "Cannot connect to the pallet daemon" in out.stderr
    assert pallet(None, "frobnicate").returncode == 125
    assert pallet(None, "version", "--bogus").returncode == 125
