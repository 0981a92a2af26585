"""The docker CLIs and docker-py against palletd: version, info, ping, errors, events."""

from __future__ import annotations

import json
import os
import stat

import docker
import pytest

from tests.support.palletd import Palletd, palletd  # noqa: F401 - the fixture

pytestmark = pytest.mark.root


def test_docker_version_negotiates_with_palletd(palletd: Palletd) -> None:  # noqa: F811
    out = palletd.docker("version", "--format", "{{json .}}").stdout
    v = json.loads(out)
    assert v["Server"]["Platform"]["Name"] == "pallet"
    assert v["Server"]["ApiVersion"] == "1.44"
    assert v["Client"]["ApiVersion"] == "1.44"  # downgraded from the client's newer one


def test_debian_docker_20_10_client(palletd: Palletd) -> None:  # noqa: F811
    out = palletd.docker("version", cli="/usr/bin/docker").stdout
    client, _, server = out.partition("Server: pallet")
    assert server, out
    assert " API version:       1.41" in client  # the 20.10 client's own maximum
    assert "API version:      1.44 (minimum version 1.24)" in server


def test_docker_info(palletd: Palletd) -> None:  # noqa: F811
    info = json.loads(palletd.docker("info", "--format", "{{json .}}").stdout)
    assert info["OSType"] == "linux"
    assert info["NCPU"] == os.cpu_count()
    assert info["CgroupDriver"] == "cgroupfs"
    assert info["DockerRootDir"] == palletd.data_root
    assert info["ID"]


def test_docker_py(palletd: Palletd) -> None:  # noqa: F811
    client = docker.DockerClient(base_url=palletd.host, version="auto")
    try:
        assert client.ping() is True
        assert client.version()["ApiVersion"] == "1.44"
        assert client.info()["OSType"] == "linux"
        df = client.df()
        assert df["Images"] == [] and "LayersSize" in df
    finally:
        client.close()


def test_ping_headers_and_versions(palletd: Palletd) -> None:  # noqa: F811
    for method in ("GET", "HEAD"):
        status, headers, body = palletd.request(method, "/_ping")
        assert status == 200
        assert headers["Api-Version"] == "1.44" and headers["Ostype"] == "linux"
        assert headers["Docker-Experimental"] == "false" and headers["Builder-Version"] == "1"
        assert body == (b"OK" if method == "GET" else b"")
    assert palletd.request("GET", "/v1.24/version")[0] == 200
    status, _, body = palletd.request("GET", "/v1.99/version")
    assert status == 400 and b"is too new" in body
    status, _, body = palletd.request("GET", "/v1.12/version")
    assert status == 400 and b"is too old" in body
    status, _, body = palletd.request("GET", "/v1.44/nosuch")
    assert status == 404 and json.loads(body) == {"message": "page not found"}


def test_events_until_and_bad_filters(palletd: Palletd) -> None:  # noqa: F811
    status, _, body = palletd.request("GET", "/events?since=1&until=2")
    assert status == 200 and body == b""
    status, _, body = palletd.request("GET", '/events?filters={"nosuch":["x"]}')
    assert status == 400 and json.loads(body)["message"] == "invalid filter 'nosuch'"
    status, _, body = palletd.request("GET", "/events?filters=notjson")
    assert status == 400


def test_socket_is_root_only(palletd: Palletd) -> None:  # noqa: F811
    st = os.stat(palletd.socket)
    assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_uid == 0


def test_tcp_only_with_tls(tmp_path: str) -> None:
    import subprocess
    import sys

    from tests.conftest import REPO

    proc = subprocess.run([sys.executable, "-m", "pallet.api.daemon", "-H", "tcp://127.0.0.1:0",
                           "--data-root", f"{tmp_path}/d", "--exec-root", f"{tmp_path}/r"],
                          capture_output=True, text=True, timeout=30, cwd=REPO)
    assert proc.returncode == 1
    assert "only with TLS client certificates" in proc.stderr
