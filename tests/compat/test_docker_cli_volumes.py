"""Volumes and mounts through the real docker CLI and docker-py: what a user types, what
a user sees. Containers run with --network none: volumes have nothing to do with it, and
no veth is made per run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

import docker
import pytest

from tests.compat.test_docker_cli_images import import_busybox
from tests.support.leftovers import mounts as mounts_with
from tests.support.palletd import Palletd, start_palletd, stop_palletd

pytestmark = pytest.mark.root

IMAGE = "pallet-test/busybox:vol"
SEEDED = "pallet-test/seeded:vol"  # VOLUME /data, with content there
NONET = ("--network", "none")


class Daemon:
    """A private palletd that a test may restart on the same directories."""

    def __init__(self) -> None:
        self.base = tempfile.mkdtemp(prefix="pallet-test-vol-")
        self.pd = start_palletd(self.base)

    def restart(self) -> None:
        """palletd only: its monitor, and so the running containers, carry on."""
        stop_palletd(self.pd, monitor=False)
        self.pd = start_palletd(self.base)


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    d = Daemon()
    try:
        import_busybox(d.pd, IMAGE, 'CMD ["sh"]')
        d.pd.docker("run", *NONET, "--name", "seed", IMAGE, "sh", "-c",
                    "mkdir -p /data/sub && echo seeded > /data/f && ln -s f /data/link && "
                    "chown 123:456 /data/sub && chmod 750 /data/sub")
        d.pd.docker("commit", "--change", "VOLUME /data", "seed", SEEDED)
        d.pd.docker("rm", "seed")
        yield d
    finally:
        pd = d.pd
        pd.docker("rm", "-f", "-v", *pd.docker("ps", "-aq").stdout.split(), check=False)
        pd.docker("volume", "rm", "-f", *pd.docker("volume", "ls", "-q").stdout.split(),
                  check=False)
        stop_palletd(pd)
        left = mounts_with(d.base)
        shutil.rmtree(d.base, ignore_errors=True)
        assert left == [], left  # no volume stays mounted


@pytest.fixture
def pd(daemon: Daemon) -> Palletd:
    return daemon.pd


def run(pd: Palletd, *args: str) -> subprocess.CompletedProcess[str]:
    return pd.docker("run", "--rm", *NONET, *args, check=False)


def volumes(pd: Palletd) -> list[str]:
    return sorted(pd.docker("volume", "ls", "-q").stdout.split())


def test_volume_verbs(pd: Palletd) -> None:
    assert pd.docker("volume", "create", "--label", "team=a", "vv-one").stdout == "vv-one\n"
    anon = pd.docker("volume", "create").stdout.strip()
    assert len(anon) == 64
    out = pd.docker("volume", "ls").stdout.splitlines()
    assert out[0].split() == ["DRIVER", "VOLUME", "NAME"] and "local     vv-one" in out
    assert pd.docker("volume", "ls", "-q", "--filter", "label=team=a").stdout == "vv-one\n"
    assert pd.docker("volume", "ls", "-q", "--filter", "name=vv-").stdout == "vv-one\n"
    info = json.loads(pd.docker("volume", "inspect", "vv-one").stdout)[0]
    assert info["Mountpoint"] == os.path.join(pd.data_root, "volumes", "vv-one", "_data")
    assert (info["Driver"], info["Scope"], info["Labels"]) == ("local", "local", {"team": "a"})
    assert pd.docker("volume", "inspect", "-f", "{{.Labels}}", anon).stdout == \
        "map[com.docker.volume.anonymous:]\n"
    bad = pd.docker("volume", "create", "no/slash", check=False)
    assert bad.returncode == 1 and 'includes invalid characters for a local volume name' \
        in bad.stderr
    assert pd.docker("volume", "rm", "vv-one", anon).stdout.split() == ["vv-one", anon]
    gone = pd.docker("volume", "rm", "vv-one", check=False)
    assert gone.returncode == 1 and "get vv-one: no such volume" in gone.stderr
    assert pd.docker("volume", "rm", "-f", "vv-one").returncode == 0


def test_data_written_by_one_container_is_read_by_the_next(pd: Palletd,
                                                           tmp_path: os.PathLike[str]) -> None:
    assert run(pd, "-v", "vv-data:/data", IMAGE, "sh", "-c", "echo kept > /data/f").returncode \
        == 0
    assert run(pd, "-v", "vv-data:/data:ro", IMAGE, "cat", "/data/f").stdout == "kept\n"
    out = run(pd, "--mount", "source=vv-data,target=/d,readonly", IMAGE, "sh", "-c",
              "touch /d/x 2>/dev/null || echo refused")
    assert out.stdout == "refused\n"
    host = os.path.join(tmp_path, "host")
    os.mkdir(host)
    with open(os.path.join(host, "h"), "w") as f:
        f.write("from host\n")
    made = os.path.join(tmp_path, "made", "by", "run")
    out = run(pd, "-v", f"{host}:/h:ro,z", "-v", f"{made}:/m", IMAGE, "sh", "-c",
              "cat /h/h; touch /h/x 2>/dev/null || echo ro; echo w > /m/w")
    assert out.stdout == "from host\nro\n", out.stderr
    assert not os.path.exists(os.path.join(host, "x"))
    with open(os.path.join(made, "w")) as f:  # -v makes a missing host dir, as dockerd
        assert f.read() == "w\n"
    pd.docker("volume", "rm", "vv-data")


def test_image_content_is_copied_into_new_volumes(pd: Palletd) -> None:
    out = run(pd, "-v", "vv-seeded:/data", SEEDED, "sh", "-c",
              "cat /data/f; readlink /data/link; stat -c '%u:%g %a' /data/sub")
    assert out.stdout == "seeded\nf\n123:456 750\n", out.stderr
    # it is in the volume: another image, without that content, sees it
    assert run(pd, "-v", "vv-seeded:/v", IMAGE, "cat", "/v/f").stdout == "seeded\n"
    # a volume with something in it is left as it is; nocopy copies nothing
    run(pd, "-v", "vv-seeded:/data", IMAGE, "sh", "-c", "echo mine > /data/f")
    assert run(pd, "-v", "vv-seeded:/data", SEEDED, "cat", "/data/f").stdout == "mine\n"
    assert run(pd, "-v", "vv-empty:/data:nocopy", SEEDED, "ls", "-A", "/data").stdout == ""
    # VOLUME makes an anonymous volume with the content; rm -v removes it, not named ones
    before = volumes(pd)
    cid = pd.docker("create", *NONET, SEEDED, "cat", "/data/f").stdout.strip()
    assert pd.docker("start", "-a", cid).stdout == "seeded\n"
    (anon,) = [v for v in volumes(pd) if v not in before]
    mounts = json.loads(pd.docker("inspect", cid).stdout)[0]["Mounts"]
    assert mounts == [{"Type": "volume", "Name": anon, "Source": os.path.join(
        pd.data_root, "volumes", anon, "_data"), "Destination": "/data", "Driver": "local",
        "Mode": "", "RW": True, "Propagation": ""}]
    pd.docker("rm", "-v", cid)
    assert volumes(pd) == before
    # run --rm takes its anonymous volumes with it
    assert run(pd, SEEDED, "true").returncode == 0 and volumes(pd) == before
    pd.docker("volume", "rm", "vv-seeded", "vv-empty")


def test_tmpfs_is_empty_at_each_start(pd: Palletd) -> None:
    cid = pd.docker("create", *NONET, "--tmpfs", "/t1", "--mount",
                    "type=tmpfs,target=/t2,tmpfs-size=1m", IMAGE, "sh", "-c",
                    "ls -A /t1 /t2; touch /t1/a /t2/b").stdout.strip()
    try:
        for _ in range(2):
            assert pd.docker("start", "-a", cid).stdout == "/t1:\n\n/t2:\n"
    finally:
        pd.docker("rm", cid)
    # a local volume of type tmpfs: mounted while used, gone with its last user
    pd.docker("volume", "create", "--opt", "type=tmpfs", "--opt", "device=tmpfs",
              "--opt", "o=size=1m", "vv-tmp")
    data = os.path.join(pd.data_root, "volumes", "vv-tmp", "_data")
    out = run(pd, "-v", "vv-tmp:/t", IMAGE, "sh", "-c", "ls -A /t; df -k /t | tail -1; "
              "touch /t/x")
    assert out.stdout.split()[:2] == ["tmpfs", "1024"], out.stderr
    assert run(pd, "-v", "vv-tmp:/t", IMAGE, "ls", "-A", "/t").stdout == ""
    assert mounts_with(data) == []
    pd.docker("volume", "rm", "vv-tmp")


def test_volumes_from_and_in_use(pd: Palletd) -> None:
    src = pd.docker("create", *NONET, "--name", "vv-src", "-v", "vv-shared:/shared",
                    "-v", "/anon", IMAGE, "true").stdout.strip()
    try:
        assert run(pd, "--volumes-from", "vv-src", IMAGE, "sh", "-c",
                   "echo w > /shared/f && ls -d /anon").stdout == "/anon\n"
        out = run(pd, "--volumes-from", "vv-src:ro", IMAGE, "sh", "-c",
                  "cat /shared/f; touch /shared/g 2>/dev/null || echo refused")
        assert out.stdout == "w\nrefused\n"
        busy = pd.docker("volume", "rm", "vv-shared", check=False)
        assert busy.returncode == 1
        assert busy.stderr == ("Error response from daemon: remove vv-shared: volume is in "
                               f"use - [{src}]\n")
        client = docker.DockerClient(base_url=pd.host)
        with pytest.raises(docker.errors.APIError) as exc:
            client.volumes.get("vv-shared").remove()
        assert exc.value.status_code == 409
        # named by a container (running or not): not dangling
        assert "vv-shared" not in pd.docker("volume", "ls", "-q", "-f",
                                           "dangling=true").stdout
    finally:
        pd.docker("rm", "-v", src)
    assert pd.docker("volume", "ls", "-q", "-f", "dangling=true").stdout == "vv-shared\n"
    pd.docker("volume", "rm", "vv-shared")


def test_bad_specs_are_refused_and_leave_nothing(pd: Palletd) -> None:
    before = (pd.docker("ps", "-aq").stdout, volumes(pd))
    for args, words in (
        (["-v", "bad!name:/d"], 'create bad!name: "bad!name" includes invalid characters'),
        (["-v", "vv-ok:/d:bogus"], "invalid mode: bogus"),
        (["-v", "vv-a:/d", "-v", "vv-b:/d"], "Duplicate mount point: /d"),
        (["-v", "vv-a:/"], "destination can't be '/'"),
        (["--mount", "type=bind,source=/no/such/dir,target=/d"],
         'invalid mount config for type "bind": bind source path does not exist: '
         "/no/such/dir"),
        (["--mount", "type=volume,target=/d,readonly"],
         "must not set ReadOnly mode when using anonymous volumes"),
        (["--mount", "type=volume,source=vv-a,target=/d,volume-opt=bogus=1"],
         'invalid option: "bogus"'),
        (["--volumes-from", "vv-nobody"], "No such container: vv-nobody"),
    ):
        out = run(pd, *args, IMAGE, "true")
        assert out.returncode == 125 and words in out.stderr, (args, out.stderr)
    assert (pd.docker("ps", "-aq").stdout, volumes(pd)) == before


def test_prune(pd: Palletd) -> None:
    pd.docker("volume", "create", "vv-named")
    anon = pd.docker("volume", "create").stdout.strip()
    out = pd.docker("volume", "prune", "-f").stdout
    assert out.startswith(f"Deleted Volumes:\n{anon}\n") and "Total reclaimed space" in out
    assert "vv-named" in volumes(pd)
    assert "vv-named" in pd.docker("volume", "prune", "-af").stdout
    assert "vv-named" not in volumes(pd)


def test_docker_py(pd: Palletd) -> None:
    client = docker.DockerClient(base_url=pd.host)
    vol = client.volumes.create("vv-py", labels={"via": "docker-py"})
    assert vol.attrs["Labels"] == {"via": "docker-py"}
    assert [v.name for v in client.volumes.list(filters={"label": "via"})] == ["vv-py"]
    out = client.containers.run(IMAGE, ["sh", "-c", "echo py > /d/f"], remove=True,
                                network_mode="none",
                                volumes={"vv-py": {"bind": "/d", "mode": "rw"}})
    assert out == b""
    out = client.containers.run(IMAGE, ["cat", "/d/f"], remove=True, network_mode="none",
                                volumes=["vv-py:/d:ro"])
    assert out == b"py\n"
    assert client.volumes.get("vv-py").attrs["Mountpoint"].endswith("/vv-py/_data")
    client.volumes.get("vv-py").remove()
    with pytest.raises(docker.errors.NotFound):
        client.volumes.get("vv-py")


def test_volume_content_survives_a_palletd_restart(daemon: Daemon) -> None:
    pd = daemon.pd
    run(pd, "-v", "vv-durable:/d", IMAGE, "sh", "-c", "echo durable > /d/f")
    pd.docker("volume", "create", "--opt", "type=tmpfs", "--opt", "device=tmpfs", "vv-held")
    cid = pd.docker("run", "-d", *NONET, "-v", "vv-held:/t", IMAGE, "sh", "-c",
                    "echo live > /t/f; sleep 60").stdout.strip()
    try:
        daemon.restart()
        pd = daemon.pd
        assert run(pd, "-v", "vv-durable:/d", IMAGE, "cat", "/d/f").stdout == "durable\n"
        # the running container still holds its volume: mounted, and in use
        assert pd.docker("exec", cid, "cat", "/t/f").stdout == "live\n"
        assert pd.docker("volume", "rm", "vv-held", check=False).returncode == 1
    finally:
        pd.docker("rm", "-f", cid)
    assert mounts_with(os.path.join(pd.data_root, "volumes", "vv-held")) == []
    pd.docker("volume", "rm", "vv-held", "vv-durable")


def test_ps_filters_by_volume(pd: Palletd) -> None:
    pd.docker("run", "-d", *NONET, "--name", "vf1", "-v", "vv-filter:/keep", IMAGE,
              "sleep", "300")
    try:
        for flt in ("volume=vv-filter", "volume=/keep"):
            names = pd.docker("ps", "--format", "{{.Names}}", "--filter", flt).stdout.split()
            assert names == ["vf1"], flt
        assert pd.docker("ps", "-q", "--filter", "volume=vv-nosuch").stdout == ""
    finally:
        pd.docker("rm", "-f", "vf1")
        pd.docker("volume", "rm", "vv-filter")
