"""docker import/images/tag/inspect/history/rmi/prune against palletd, and docker-py."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator

import docker
import pytest

from tests.support.palletd import Palletd, palletd  # noqa: F401 - the fixture
from tests.support.runtime import busybox_template

pytestmark = pytest.mark.root


def import_busybox(d: Palletd, name: str, *changes: str) -> str:
    tar = subprocess.run(["tar", "-C", busybox_template(), "-c", "."], capture_output=True,
                         check=True).stdout
    args = ["docker", "import", "-m", "busybox rootfs"]
    for c in changes:
        args += ["-c", c]
    out = subprocess.run([*args, "-", name], input=tar, env=d.env, capture_output=True,
                         check=True, timeout=60)
    return out.stdout.decode().strip()


@pytest.fixture
def image(palletd: Palletd) -> Iterator[str]:  # noqa: F811
    image_id = import_busybox(palletd, "pallet-test/busybox:1", 'CMD ["sh"]', "ENV A=b",
                              "LABEL team=pallet", "WORKDIR /tmp")
    yield image_id
    palletd.docker("rmi", "-f", image_id, check=False)


def test_import_and_inspect(palletd: Palletd, image: str) -> None:  # noqa: F811
    assert image.startswith("sha256:")
    info = json.loads(palletd.docker("image", "inspect", "pallet-test/busybox:1").stdout)[0]
    assert info["Id"] == image
    assert info["RepoTags"] == ["pallet-test/busybox:1"]
    assert info["Config"]["Cmd"] == ["sh"] and info["Config"]["Env"] == ["A=b"]
    assert info["Config"]["Labels"] == {"team": "pallet"}
    assert info["Config"]["WorkingDir"] == "/tmp"
    assert info["Os"] == "linux" and info["Comment"] == "busybox rootfs"
    assert len(info["RootFS"]["Layers"]) == 1 and info["Size"] > 1_000_000
    # the unpacked layer really holds the rootfs
    upper = info["GraphDriver"]["Data"]["UpperDir"]
    assert os.path.isfile(os.path.join(upper, "bin", "busybox"))


def test_images_tag_and_filters(palletd: Palletd, image: str) -> None:  # noqa: F811
    palletd.docker("tag", "pallet-test/busybox:1", "localhost:5000/pallet-test/bb")
    fmt = "{{.Repository}}:{{.Tag}} {{.ID}}"
    lines = palletd.docker("images", "--format", fmt).stdout.split("\n")
    assert f"pallet-test/busybox:1 {image[7:19]}" in lines
    assert f"localhost:5000/pallet-test/bb:latest {image[7:19]}" in lines
    only = palletd.docker("images", "--filter", "reference=localhost:5000/*/*", "-q").stdout
    assert only.split() == [image[7:19]]
    labelled = palletd.docker("images", "--filter", "label=team=pallet", "-q").stdout
    assert image[7:19] in labelled.split()
    assert palletd.docker("images", "--filter", "label=team=other", "-q").stdout == ""


def test_history(palletd: Palletd, image: str) -> None:  # noqa: F811
    rows = palletd.docker("history", "--format", "{{.ID}}|{{.Comment}}",
                          "pallet-test/busybox:1").stdout.split()
    assert rows == [f"{image[7:19]}|busybox"] or rows[0].startswith(image[7:19])


def test_rmi_untags_then_deletes(palletd: Palletd, image: str) -> None:  # noqa: F811
    palletd.docker("tag", image, "pallet-test/other:2")
    refused = palletd.docker("rmi", image[7:19], check=False)
    assert refused.returncode == 1
    assert "must be forced" in refused.stderr and "multiple repositories" in refused.stderr
    out = palletd.docker("rmi", "pallet-test/other:2").stdout
    assert out.strip() == "Untagged: pallet-test/other:2"  # the image stays
    out = palletd.docker("rmi", "pallet-test/busybox:1").stdout.splitlines()
    assert out[0] == "Untagged: pallet-test/busybox:1"
    assert f"Deleted: {image}" in out
    assert palletd.docker("images", "-q").stdout == ""
    missing = palletd.docker("image", "inspect", image, check=False)
    assert missing.returncode == 1 and "No such image" in missing.stderr


def test_prune_removes_dangling_only(palletd: Palletd, image: str) -> None:  # noqa: F811
    dangling = import_busybox(palletd, "", "CMD [\"true\"]")
    out = palletd.docker("image", "prune", "-f").stdout
    assert f"deleted: {dangling}" in out
    assert palletd.docker("images", "-q").stdout.split() == [image[7:19]]


def test_bad_input(palletd: Palletd) -> None:  # noqa: F811
    before = palletd.docker("images", "-q").stdout
    bad = subprocess.run(["docker", "import", "-", "pallet-test/bad:1"], input=b"not a tar",
                         env=palletd.env, capture_output=True, timeout=60)
    assert bad.returncode == 1 and b"not a valid tar archive" in bad.stderr
    change = subprocess.run(["docker", "import", "-c", "FROB x", "-", "pallet-test/bad:2"],
                            input=b"", env=palletd.env, capture_output=True, timeout=60)
    assert change.returncode == 1 and b"FROB is not a valid change command" in change.stderr
    assert palletd.docker("tag", "nosuch", "x", check=False).returncode == 1
    assert palletd.docker("images", "-q").stdout == before  # nothing half-made


def test_docker_py_images(palletd: Palletd, image: str) -> None:  # noqa: F811
    client = docker.DockerClient(base_url=palletd.host, version="auto")
    try:
        img = client.images.get("pallet-test/busybox:1")
        assert img.id == image and img.tags == ["pallet-test/busybox:1"]
        assert img.tag("pallet-test/py", "t") is True
        names = {t for i in client.images.list() for t in i.tags}
        assert {"pallet-test/busybox:1", "pallet-test/py:t"} <= names
        client.images.remove("pallet-test/py:t")
        with pytest.raises(docker.errors.ImageNotFound):
            client.images.get("pallet-test/nosuch")
    finally:
        client.close()


def test_events_and_df_follow_images(palletd: Palletd, image: str) -> None:  # noqa: F811
    import time

    since = f"{time.time():.6f}"  # after the fixture's import
    palletd.docker("tag", image, "pallet-test/evt:1")
    palletd.docker("rmi", "pallet-test/evt:1")
    until = str(time.time() + 1)
    out = palletd.docker("events", "--since", since, "--until", until, "--filter", "type=image",
                         "--format", "{{.Action}} {{.Actor.Attributes.name}}").stdout
    assert out.splitlines() == ["tag pallet-test/evt:1", "untag pallet-test/evt:1"]
    df = json.loads(palletd.docker("system", "df", "--format", "{{json .}}").stdout.splitlines()[0])
    assert df["Type"] == "Images" and int(df["TotalCount"]) >= 1
    info = json.loads(palletd.docker("info", "--format", "{{json .}}").stdout)
    assert info["Images"] >= 1


def test_df_tells_shared_layers_as_dockerd(palletd: Palletd, image: str) -> None:  # noqa: F811
    """/system/df gives each image's SharedSize (bytes of layers another image has too),
    which the docker CLI needs to tell what removing unused images would free."""
    def df_images() -> dict[str, dict[str, int]]:
        df = json.loads(palletd.request("GET", "/v1.44/system/df")[2])
        return {i["Id"]: i for i in df["Images"]}

    alone = df_images()[image]
    assert alone["SharedSize"] == 0 and alone["Containers"] == 0
    palletd.docker("run", "-d", "--name", "df-user", image, "sh", "-c",
                   "echo x > /added; sleep 60")
    try:
        palletd.docker("exec", "df-user", "test", "-f", "/added")
        child = palletd.docker("commit", "df-user", "pallet-test/df-child:1").stdout.strip()
        images = df_images()
        assert images[image]["Containers"] == 1
        # every layer of the base is in the child too; the child's own layer is not shared
        assert images[image]["SharedSize"] == images[image]["Size"]
        assert images[child]["SharedSize"] == images[image]["Size"] < images[child]["Size"]
        listed = json.loads(palletd.request("GET", "/v1.44/images/json?shared-size=1")[2])
        assert {i["Id"]: i["SharedSize"] for i in listed}[child] == images[image]["Size"]
        plain = json.loads(palletd.request("GET", "/v1.44/images/json")[2])
        assert {i["SharedSize"] for i in plain} == {-1}  # computed only when asked, as moby
    finally:
        palletd.docker("rm", "-f", "df-user", check=False)
        palletd.docker("rmi", "-f", "pallet-test/df-child:1", check=False)
