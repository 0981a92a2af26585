"""HostConfig -> OCI config, as dockerd makes it (reference/dockerd-20.10)."""

from __future__ import annotations

import json
import os

import pytest

from pallet.engine import ocispec
from pallet.engine.containercontrol import parse_signal
from pallet.engine.containers import merge_config, resolve_user
from pallet.errors import InvalidArgument

# What dockerd 20.10 wrote for a container (captured; see tests/data/README)
REF = os.path.join(os.path.dirname(__file__), "..", "data",
                   "oci-config-generated-by-dockerd.json")


def ctx() -> ocispec.Context:
    return ocispec.Context(cid="c" * 64, rootfs="/merged", files={"hosts": "/x/hosts"})


def test_defaults_match_dockerd() -> None:
    spec = ocispec.build({"Cmd": ["sh"], "Env": ["A=b"]}, {}, ctx())
    proc = spec["process"]
    assert proc["args"] == ["sh"] and proc["cwd"] == "/"
    assert proc["env"] == ["PATH=" + ocispec.DEFAULT_PATH, "HOSTNAME=cccccccccccc", "A=b"]
    assert proc["capabilities"]["bounding"] == list(ocispec.DEFAULT_CAPS)
    assert len(ocispec.DEFAULT_CAPS) == 14
    assert spec["hostname"] == "cccccccccccc"
    lx = spec["linux"]
    assert lx["maskedPaths"] == list(ocispec.MASKED_PATHS)
    assert lx["readonlyPaths"] == list(ocispec.READONLY_PATHS)
    assert lx["cgroupsPath"] == "/pallet/" + "c" * 64
    assert {n["type"] for n in lx["namespaces"]} == {"mount", "network", "uts", "pid", "ipc"}
    assert lx["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"
    assert lx["sysctl"]["net.ipv4.ip_unprivileged_port_start"] == "0"
    dests = [m["destination"] for m in spec["mounts"]]
    assert dests[:6] == ["/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue"]
    assert "/etc/hosts" in dests


def test_same_as_the_captured_dockerd_config() -> None:
    with open(REF) as f:
        ref = json.load(f)
    spec = ocispec.build({"Cmd": ["true"]}, {"Memory": 64 << 20, "NanoCpus": 500_000_000,
                                             "PidsLimit": 50}, ctx())
    assert spec["process"]["capabilities"] == ref["process"]["capabilities"]
    assert spec["linux"]["resources"]["memory"] == {"limit": 67108864, "swap": 134217728}
    assert spec["linux"]["resources"]["cpu"] == {"period": 100000, "quota": 50000}
    assert spec["linux"]["resources"]["pids"] == ref["linux"]["resources"]["pids"]
    assert spec["linux"]["resources"]["devices"] == ref["linux"]["resources"]["devices"]
    assert spec["linux"]["maskedPaths"] == ref["linux"]["maskedPaths"]
    assert spec["linux"]["seccomp"]["syscalls"] == ref["linux"]["seccomp"]["syscalls"]
    assert [m["destination"] for m in spec["mounts"][:7]] == \
        [m["destination"] for m in ref["mounts"][:7]]


def test_privileged_and_caps() -> None:
    spec = ocispec.build({"Cmd": ["sh"]}, {"Privileged": True}, ctx())
    assert "seccomp" not in spec["linux"] and "maskedPaths" not in spec["linux"]
    assert "CAP_SYS_ADMIN" in spec["process"]["capabilities"]["bounding"]
    assert spec["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    caps = ocispec.capabilities(["sys_admin", "CAP_NET_ADMIN"], ["chown"], False)
    assert "CAP_SYS_ADMIN" in caps and "CAP_NET_ADMIN" in caps and "CAP_CHOWN" not in caps
    assert ocispec.capabilities(None, ["ALL"], False) == []
    with pytest.raises(InvalidArgument):
        ocispec.capabilities(["CAP_NOPE"], None, False)
    prof = ocispec.seccomp_profile(caps)
    allowed = {n for r in prof["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" for n in r["names"]}
    assert {"mount", "unshare", "setns"} <= allowed


def test_host_config_fields() -> None:
    hc = {"ReadonlyRootfs": True, "Tmpfs": {"/run": "size=1m"}, "PidMode": "host",
          "SecurityOpt": ["no-new-privileges", "seccomp=unconfined"],
          "Ulimits": [{"Name": "nofile", "Soft": 100, "Hard": 200}],
          "Sysctls": {"net.ipv4.ip_forward": "1"}, "ShmSize": 1 << 20,
          "DeviceCgroupRules": ["c 42:* rmw"]}
    spec = ocispec.build({"Cmd": ["sh"], "Tty": True}, hc, ctx())
    assert spec["root"]["readonly"] is True
    assert "pid" not in {n["type"] for n in spec["linux"]["namespaces"]}
    assert spec["process"]["noNewPrivileges"] is True and "seccomp" not in spec["linux"]
    assert spec["process"]["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 200, "soft": 100}]
    assert "TERM=xterm" in spec["process"]["env"]
    mounts = {m["destination"]: m for m in spec["mounts"]}
    assert mounts["/run"]["options"] == ["noexec", "nosuid", "nodev", "size=1m"]
    assert f"size={1 << 20}" in mounts["/dev/shm"]["options"]
    assert {"allow": True, "type": "c", "major": 42, "access": "rmw"} in \
        spec["linux"]["resources"]["devices"]
    assert spec["linux"]["sysctl"]["net.ipv4.ip_forward"] == "1"


@pytest.mark.parametrize("hc", [
    {"SecurityOpt": ["bogus=1"]}, {"Ulimits": [{"Name": "nope", "Soft": 1, "Hard": 1}]},
    {"DeviceCgroupRules": ["x 1:1 r"]}, {"CgroupnsMode": "weird"},
])
def test_bad_host_config(hc: dict[str, object]) -> None:
    with pytest.raises(InvalidArgument):
        ocispec.build({"Cmd": ["sh"]}, hc, ctx())


def test_merge_config_like_dockerd() -> None:
    image = {"Env": ["PATH=/bin", "A=1"], "Cmd": ["sh"], "Entrypoint": ["/init"],
             "WorkingDir": "/w", "Labels": {"x": "1"}, "StopSignal": "SIGQUIT"}
    cfg = merge_config({"Image": "i", "Env": ["A=2", "B=3"], "Labels": {"y": "2"}}, image)
    assert cfg["Env"] == ["PATH=/bin", "A=2", "B=3"]
    assert cfg["Entrypoint"] == ["/init"] and cfg["Cmd"] == ["sh"]
    assert cfg["WorkingDir"] == "/w" and cfg["Labels"] == {"x": "1", "y": "2"}
    assert cfg["StopSignal"] == "SIGQUIT"
    # an explicit entrypoint drops the image's CMD
    cfg = merge_config({"Image": "i", "Entrypoint": ["echo"]}, image)
    assert cfg["Entrypoint"] == ["echo"] and cfg["Cmd"] is None
    cfg = merge_config({"Image": "i", "Cmd": ["ls"]}, image)
    assert cfg["Entrypoint"] == ["/init"] and cfg["Cmd"] == ["ls"]


def test_signals() -> None:
    assert parse_signal("SIGTERM") == parse_signal("TERM") == parse_signal("15") == 15
    assert parse_signal(None, 9) == 9
    for bad in ("SIGNOPE", "0", "99"):
        with pytest.raises(InvalidArgument):
            parse_signal(bad)


def test_resolve_user(tmp_path: os.PathLike[str]) -> None:
    etc = os.path.join(tmp_path, "etc")
    os.mkdir(etc)
    with open(os.path.join(etc, "passwd"), "w") as f:
        f.write("root:x:0:0::/root:/bin/sh\nwww:x:33:34::/var/www:/bin/sh\n")
    with open(os.path.join(etc, "group"), "w") as f:
        f.write("root:x:0:\nwww:x:34:\nextra:x:50:www\n")
    root = str(tmp_path)
    assert resolve_user(root, "", []) == (0, 0, [])
    assert resolve_user(root, "www", []) == (33, 34, [50])
    assert resolve_user(root, "33:extra", ["7"]) == (33, 50, [50, 7])
    assert resolve_user(root, "1000", []) == (1000, 0, [])
    with pytest.raises(InvalidArgument, match="unable to find user nobody"):
        resolve_user(root, "nobody", [])
