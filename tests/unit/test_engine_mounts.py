"""-v, --mount, --volumes-from and VOLUME read as dockerd reads them (engine/mounts.py),
the runtime-spec mounts made of them, and the volume records' rules (no root needed)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from pallet.engine import mounts, ocispec
from pallet.engine.config import DaemonConfig
from pallet.engine.events import EventBus
from pallet.engine.volumes import VolumeService, image_may_hold
from pallet.engine.volumetar import check_name
from pallet.errors import Conflict, InvalidArgument, NotFound, NotSupported


def test_binds_and_named_volumes() -> None:
    b = mounts.parse_bind("/srv/data:/data:ro,z")
    assert (b.type, b.source, b.target, b.readonly, b.mode, b.propagation) == \
        ("bind", "/srv/data", "/data", True, "ro,z", "rprivate")
    assert b.create_source  # -v makes a missing host dir, as dockerd does
    assert mounts.parse_bind("/a:/b:rshared").propagation == "rshared"
    v = mounts.parse_bind("cache:/var/cache")
    assert (v.type, v.source, v.target, v.mode, v.copy, v.driver) == \
        ("volume", "cache", "/var/cache", "z", True, "local")
    assert not mounts.parse_bind("cache:/c:nocopy").copy
    anon = mounts.parse_bind("/scratch/")
    assert (anon.type, anon.source, anon.target) == ("volume", "", "/scratch")


@pytest.mark.parametrize(("raw", "words"), [
    ("", "invalid volume specification: ''"),
    (":/x", "invalid volume specification: ':/x'"),
    ("/data:ro", "invalid volume specification: '/data:ro'"),
    ("a:b:c:d", "invalid volume specification: 'a:b:c:d'"),
    ("/a:/b:bogus", "invalid mode: bogus"),
    ("/a:/b:ro,rw", "invalid mode: ro,rw"),
    ("/a:rel", "mount path must be absolute"),
    ("/a:/", "destination can't be '/'"),
    ("v:/d:rshared", 'invalid mount config for type "volume": field BindOptions must not '
                     "be specified"),
    ("bad!name:/d", 'create bad!name: "bad!name" includes invalid characters for a local '
                    'volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed'),
    ("x:/d", "includes invalid characters"),  # one character is too short a name
])
def test_bad_binds(raw: str, words: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        mounts.parse_bind(raw)
    assert words in str(exc.value)


def test_mount_entries() -> None:
    b = mounts.parse_mount({"Type": "bind", "Source": "/h", "Target": "/c", "ReadOnly": True,
                            "BindOptions": {"Propagation": "rslave", "NonRecursive": True}},
                           exists=lambda p: True)
    assert (b.readonly, b.propagation, b.nonrecursive, b.create_source, b.mode) == \
        (True, "rslave", True, False, "")
    v = mounts.parse_mount({"Type": "volume", "Source": "v1", "Target": "/d", "VolumeOptions": {
        "NoCopy": True, "Labels": {"a": "b"}, "Subpath": "sub/dir",
        "DriverConfig": {"Name": "local", "Options": {"type": "tmpfs", "device": "tmpfs"}}}})
    assert (v.copy, v.labels, v.subpath, v.driver_opts["type"]) == \
        (False, {"a": "b"}, "sub/dir", "tmpfs")
    t = mounts.parse_mount({"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {
        "SizeBytes": 64 << 20, "Mode": 0o1777, "Options": [["exec"]]}})
    assert t.tmpfs == "mode=1777,size=64m,exec"


@pytest.mark.parametrize(("m", "words"), [
    ({"Type": "bind", "Target": "/c"}, 'type "bind": field Source must not be empty'),
    ({"Type": "bind", "Source": "/nope", "Target": "/c"},
     "bind source path does not exist: /nope"),
    ({"Type": "bind", "Source": "rel", "Target": "/c"}, "'rel' mount path must be absolute"),
    ({"Type": "bind", "Source": "/h", "Target": "/c", "BindOptions": {"Propagation": "x"}},
     "invalid propagation mode: x"),
    ({"Type": "bind", "Source": "/h", "Target": "/c", "VolumeOptions": {"NoCopy": True}},
     "field VolumeOptions must not be specified"),
    ({"Type": "volume", "Target": "/d", "ReadOnly": True},
     "must not set ReadOnly mode when using anonymous volumes"),
    ({"Type": "volume", "Source": "v1", "Target": "/d",
      "BindOptions": {"Propagation": "rshared"}},
     "field BindOptions must not be specified"),
    ({"Type": "volume", "Source": "v1", "Target": "/d",
      "VolumeOptions": {"Subpath": "../up"}}, "subpath must be a relative path"),
    ({"Type": "volume", "Source": "v1", "Target": "/d",
      "VolumeOptions": {"DriverConfig": {"Options": {"nope": "1"}}}}, 'invalid option: "nope"'),
    ({"Type": "volume", "Source": "v1", "Target": "/d",
      "VolumeOptions": {"DriverConfig": {"Name": "nfs-plugin"}}},
     'plugin "nfs-plugin" not found'),
    ({"Type": "tmpfs", "Source": "x", "Target": "/t"}, "field Source must not be specified"),
    ({"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"Options": [["suid"]]}},
     "invalid option: suid"),
    ({"Type": "volume", "Source": "v1"}, "field Target must not be empty"),
    ({"Type": "nope", "Target": "/t"}, 'type "nope": mount type unknown'),
])
def test_bad_mount_entries(m: dict[str, Any], words: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        mounts.parse_mount(m, exists=lambda p: p == "/h")
    assert words in str(exc.value)


def test_image_mounts_say_they_are_not_there() -> None:
    with pytest.raises(NotSupported):
        mounts.parse_mount({"Type": "image", "Source": "busybox", "Target": "/i"})


def test_volumes_from() -> None:
    assert mounts.parse_volumes_from("data") == ("data", "rw")
    assert mounts.parse_volumes_from("data:ro") == ("data", "ro")
    for bad in ("", "data:rshared", "data:nocopy", "data:x"):
        with pytest.raises(InvalidArgument):
            mounts.parse_volumes_from(bad)


def test_plan_in_dockerds_order() -> None:
    other = [mounts.point(mounts.parse_bind("shared:/shared"), name="shared", source="/v",
                          driver="local"),
             mounts.point(mounts.parse_bind("/h:/over"))]
    hc = {"Binds": ["/host:/over", "named:/n"], "Tmpfs": {"/run": ""},
          "Mounts": [{"Type": "tmpfs", "Target": "/t"}]}
    plan = mounts.plan(hc, ["/n", "/anon", "/run", "/shared"], [(other, "ro")])
    by_dest = {e["Destination"] if isinstance(e, dict) else e.target: e for e in plan}
    assert set(by_dest) == {"/shared", "/over", "/n", "/t", "/anon"}
    inherited = by_dest["/shared"]
    assert isinstance(inherited, dict) and inherited["RW"] is False
    assert not inherited["Spec"]["Copy"]  # no copy-up into another container's volume
    over = by_dest["/over"]
    assert isinstance(over, mounts.Spec) and over.source == "/host"  # a bind wins
    anon = by_dest["/anon"]
    assert isinstance(anon, mounts.Spec) and anon.type == "volume" and not anon.source


@pytest.mark.parametrize("hc", [
    {"Binds": ["a1:/d", "b1:/d"]},
    {"Binds": ["a1:/d"], "Mounts": [{"Type": "tmpfs", "Target": "/d"}]},
    {"Binds": ["/h:/run"], "Tmpfs": {"/run": ""}},
])
def test_duplicate_mount_points(hc: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument, match="Duplicate mount point: /"):
        mounts.plan(hc, [])


def test_points_inspect_and_runtime_spec() -> None:
    p = mounts.point(mounts.parse_bind("/srv:/data:ro"))
    assert mounts.view(p) == {"Type": "bind", "Source": "/srv", "Destination": "/data",
                              "Mode": "ro", "RW": False, "Propagation": "rprivate"}
    assert mounts.oci_mount(p, "/srv") == {"destination": "/data", "type": "bind",
                                           "source": "/srv",
                                           "options": ["rbind", "ro", "rprivate"]}
    v = mounts.point(mounts.parse_bind("cache:/c"), name="cache", source="/vol/_data",
                     driver="local")
    assert mounts.view(v) == {"Type": "volume", "Name": "cache", "Source": "/vol/_data",
                              "Destination": "/c", "Driver": "local", "Mode": "z", "RW": True,
                              "Propagation": ""}
    t = mounts.point(mounts.parse_mount({"Type": "tmpfs", "Target": "/t",
                                         "TmpfsOptions": {"SizeBytes": 1000}}))
    assert mounts.oci_mount(t, "tmpfs")["options"] == ["noexec", "nosuid", "nodev",
                                                       "size=1000"]
    nr = mounts.point(mounts.parse_mount({"Type": "bind", "Source": "/h", "Target": "/b",
                                          "BindOptions": {"NonRecursive": True}}))
    assert mounts.oci_mount(nr, "/h")["options"][0] == "bind"


def test_user_mounts_go_parents_first() -> None:
    ctx = ocispec.Context(cid="c" * 64, rootfs="/merged", mounts=[
        {"destination": "/a/b/c", "type": "bind", "source": "/x", "options": ["rbind"]},
        {"destination": "/a", "type": "bind", "source": "/y", "options": ["rbind"]},
    ])
    spec = ocispec.build({"Cmd": ["sh"]}, {"Tmpfs": {"/a/b": "size=1m"}}, ctx)
    dests = [m["destination"] for m in spec["mounts"]]
    assert dests.index("/a") < dests.index("/a/b") < dests.index("/a/b/c")


def test_local_driver_options() -> None:
    mounts.check_local_options("v", {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"})
    for opts, words in (({"type": "tmpfs"}, 'missing required option: "device"'),
                        ({"o": "bind"}, "missing required option"),
                        ({"size": "1g"}, "quota size requested but no quota support"),
                        ({"bogus": "1"}, 'invalid option: "bogus"')):
        with pytest.raises(InvalidArgument, match=words):
            mounts.check_local_options("v", opts)


def test_archive_names() -> None:
    assert check_name("./a/b") == "a/b" and check_name("./") == "."
    for bad in ("/etc/passwd", "../x", "a/../../x"):
        with pytest.raises(InvalidArgument):
            check_name(bad)


# --- the volume records (plain volumes need no mount, so no root) ---------------------------

@pytest.fixture
def svc(tmp_path: Path) -> VolumeService:
    return VolumeService(DaemonConfig(data_root=str(tmp_path), exec_root=str(tmp_path / "r")),
                         EventBus())


def test_create_list_inspect_remove(svc: VolumeService, tmp_path: Path) -> None:
    v = svc.create("data1", labels={"team": "a"})
    assert v["Mountpoint"] == str(tmp_path / "volumes" / "data1" / "_data")
    assert (v["Driver"], v["Scope"], v["Labels"], v["Options"]) == \
        ("local", "local", {"team": "a"}, {})
    assert svc.create("data1") == v  # again: the same volume
    anon = svc.create()
    assert len(anon["Name"]) == 64 and mounts.ANONYMOUS_LABEL in anon["Labels"]
    names = [x["Name"] for x in svc.listing({})["Volumes"]]
    assert sorted(names) == sorted(["data1", anon["Name"]])
    assert [x["Name"] for x in svc.listing({"label": ["team=a"]})["Volumes"]] == ["data1"]
    assert [x["Name"] for x in svc.listing({"name": ["^data"]})["Volumes"]] == ["data1"]
    with pytest.raises(InvalidArgument, match="invalid filter 'nope'"):
        svc.listing({"nope": ["1"]})
    svc.remove("data1")
    assert not os.path.exists(tmp_path / "volumes" / "data1")
    with pytest.raises(NotFound, match="get data1: no such volume"):
        svc.remove("data1")
    svc.remove("data1", force=True)  # force: a missing volume is no error
    with pytest.raises(NotFound):
        svc.create("v2", driver="nfs")


def test_in_use_and_prune(svc: VolumeService) -> None:
    svc.create("named")
    anon = svc.create()["Name"]
    svc.references = lambda name: ["c" * 64] if name == "named" else []
    with pytest.raises(Conflict, match=r"remove named: volume is in use - \[c{64}\]"):
        svc.remove("named")
    assert [x["Name"] for x in svc.listing({"dangling": ["true"]})["Volumes"]] == [anon]
    assert svc.prune({})["VolumesDeleted"] == [anon]  # anonymous ones only
    svc.create("idle")
    assert svc.prune({"all": ["true"]})["VolumesDeleted"] == ["idle"]  # not "named": in use


def test_claim_holds_and_unclaim_cleans(svc: VolumeService) -> None:
    plan = mounts.plan({"Binds": ["made:/m"]}, ["/anon"])
    points, made = svc.claim("c" * 64, plan)
    assert sorted(made) == sorted([p["Name"] for p in points])
    with pytest.raises(Conflict):  # a create under way holds what it names
        svc.remove("made")
    svc.unclaim("c" * 64, made)
    assert svc.listing({})["Volumes"] == []


def test_sweep_removes_what_no_record_names(svc: VolumeService, tmp_path: Path) -> None:
    os.makedirs(tmp_path / "volumes" / "halfmade" / "_data")
    svc.create("kept")
    again = VolumeService(DaemonConfig(data_root=str(tmp_path), exec_root=str(tmp_path / "r")),
                          EventBus())
    assert sorted(os.listdir(tmp_path / "volumes")) == ["kept"]
    assert [x["Name"] for x in again.listing({})["Volumes"]] == ["kept"]


def test_image_may_hold(tmp_path: Path) -> None:
    low, up = tmp_path / "low", tmp_path / "up"
    (low / "srv" / "data").mkdir(parents=True)
    (up / "var").mkdir(parents=True)
    (up / "var" / "run").symlink_to("/run")
    layers = [str(up), str(low)]
    assert image_may_hold(layers, "/srv/data")
    assert image_may_hold(layers, "/var/run/x")  # through a symlink: only a mount can tell
    assert not image_may_hold(layers, "/srv/other")
    assert not image_may_hold(layers, "/nothing/here")
