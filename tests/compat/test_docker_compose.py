"""docker-compose (Debian's 1.29, docker-py underneath) drives palletd unchanged: a
project network with names, a published port, a named volume, exec, logs, down -v."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator

import pytest

from tests.compat.test_docker_cli_networks import fetch, free_port
from tests.support.palletd import Palletd, palletd_with_image

pytestmark = pytest.mark.root

IMAGE = "pallet-test/busybox:compose"
COMPOSE = """\
version: "3.8"
services:
  web:
    image: {image}
    command: ["sh", "-c", "mkdir -p /www && cat /data/greeting > /www/index.html && \
exec httpd -f -p 80 -h /www"]
    ports: ["127.0.0.1:{port}:80"]
    volumes: ["data:/data"]
    depends_on: [seed]
  seed:
    image: {image}
    command: ["sh", "-c", "echo hello from compose > /data/greeting"]
    volumes: ["data:/data"]
  client:
    image: {image}
    command: ["sleep", "300"]
volumes:
  data: {{}}
"""


@pytest.fixture(scope="module")
def pd() -> Iterator[Palletd]:
    with palletd_with_image("pallet-test-compose-", IMAGE, 'CMD ["sh"]') as d:
        yield d


def compose(pd: Palletd, workdir: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker-compose", "-p", "ptc", *args], cwd=workdir, env=pd.env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_compose_up_exec_logs_down(pd: Palletd, tmp_path: os.PathLike[str]) -> None:
    port = free_port()
    work = str(tmp_path)
    with open(os.path.join(work, "docker-compose.yml"), "w") as f:
        f.write(COMPOSE.format(image=IMAGE, port=port))
    try:
        out = compose(pd, work, "up", "-d")
        assert out.returncode == 0, out.stderr
        assert fetch(f"http://127.0.0.1:{port}/") == "hello from compose\n"
        out = compose(pd, work, "exec", "-T", "client", "wget", "-q", "-O-", "http://web/")
        assert out.stdout == "hello from compose\n", out.stderr
        out = compose(pd, work, "ps")
        assert "ptc_web_1" in out.stdout and f"127.0.0.1:{port}->80/tcp" in out.stdout
        nets = json.loads(pd.docker("network", "inspect", "ptc_default").stdout)[0]
        assert {c["Name"] for c in nets["Containers"].values()} == {"ptc_web_1",
                                                                     "ptc_client_1"}
        out = compose(pd, work, "logs", "--no-color", "seed")
        assert out.returncode == 0, out.stderr
    finally:
        out = compose(pd, work, "down", "-v", "-t", "1")
    assert out.returncode == 0, out.stderr
    assert pd.docker("ps", "-aq").stdout == ""
    assert "ptc_default" not in pd.docker("network", "ls").stdout
    assert "ptc_data" not in pd.docker("volume", "ls").stdout


def test_compose_builds_a_service(pd: Palletd, tmp_path: os.PathLike[str]) -> None:
    """`build:` goes through docker-py's build API to POST /build."""
    work = str(tmp_path)
    os.makedirs(os.path.join(work, "app"))
    with open(os.path.join(work, "app", "Dockerfile"), "w") as f:
        f.write(f"FROM {IMAGE}\nARG WHO=nobody\nRUN echo built for $WHO > /msg\n"
                'CMD ["cat", "/msg"]\n')
    with open(os.path.join(work, "docker-compose.yml"), "w") as f:
        f.write('version: "3.8"\nservices:\n  app:\n    build:\n      context: ./app\n'
                "      args: {WHO: compose}\n    image: pallet-test/compose-built:1\n")
    try:
        out = compose(pd, work, "build")
        assert out.returncode == 0, out.stdout + out.stderr
        assert "Successfully tagged pallet-test/compose-built:1" in out.stdout + out.stderr
        out = compose(pd, work, "run", "--rm", "app")
        assert out.stdout == "built for compose\n", out.stdout + out.stderr
    finally:
        compose(pd, work, "down", "--rmi", "all", "-t", "1")
        pd.docker("image", "prune", "-f", check=False)
    assert pd.docker("ps", "-aq").stdout == ""
    assert "compose-built" not in pd.docker("images", "-a").stdout
