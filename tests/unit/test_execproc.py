"""exec's process: built from config.json and the flags as runc's getProcess does."""

from __future__ import annotations

import os

import pytest

from pallet.errors import InvalidArgument, NotFound, SystemFailure
from pallet.oci.spec import Process
from pallet.runtime import execproc

CONFIG = {
    "terminal": True,
    "user": {"uid": 0, "gid": 5, "additionalGids": [10]},
    "args": ["sh"],
    "env": ["PATH=/bin", "TERM=xterm"],
    "cwd": "/",
    "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"],
                     "permitted": ["CAP_KILL"], "ambient": ["CAP_KILL"]},
    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
    "noNewPrivileges": True,
}


def test_starts_from_the_config_process() -> None:
    p = execproc.build_process(CONFIG, ["ls", "-l"])
    assert p["args"] == ["ls", "-l"]
    assert p["env"] == CONFIG["env"] and p["cwd"] == "/" and p["rlimits"] == CONFIG["rlimits"]
    assert p["noNewPrivileges"] is True
    assert p["terminal"] is False  # only -t gives a terminal, whatever the config says
    assert CONFIG["args"] == ["sh"]  # the config is not modified
    Process(p)  # and the result is a valid process


def test_flags_override_and_add() -> None:
    p = execproc.build_process(
        CONFIG, ["id"], cwd="/tmp", env=["TERM=dumb", "FOO=1"], tty=True, user="1000:1001",
        additional_gids=["44"], apparmor="prof", process_label="label", no_new_privs=False)
    assert p["cwd"] == "/tmp"
    assert p["env"] == ["PATH=/bin", "TERM=dumb", "FOO=1"]
    assert p["terminal"] is True
    assert p["user"] == {"uid": 1000, "gid": 1001, "additionalGids": [10, 44]}
    assert p["apparmorProfile"] == "prof" and p["selinuxLabel"] == "label"
    assert p["noNewPrivileges"] is False


def test_user_without_gid_keeps_the_configs() -> None:
    assert execproc.build_process(CONFIG, ["id"], user="7")["user"]["gid"] == 5  # type: ignore[index]


def test_cap_adds_to_bounding_effective_permitted_not_inheritable() -> None:
    c = execproc.build_process(CONFIG, ["id"], caps=["CAP_NET_RAW"])["capabilities"]
    assert isinstance(c, dict)
    for name in ("bounding", "effective", "permitted"):
        assert c[name] == ["CAP_KILL", "CAP_NET_RAW"]
    # ambient only where the config has an inheritable set (runc: ambient needs it)
    assert c["ambient"] == ["CAP_KILL"] and "inheritable" not in c
    with_inh = dict(CONFIG, capabilities={"inheritable": [], "ambient": []})
    c2 = execproc.build_process(with_inh, ["id"], caps=["CAP_NET_RAW"])["capabilities"]
    assert isinstance(c2, dict) and c2["ambient"] == ["CAP_NET_RAW"]


def test_cap_without_capabilities_in_the_config() -> None:
    cfg = {k: v for k, v in CONFIG.items() if k != "capabilities"}
    c = execproc.build_process(cfg, ["id"], caps=["CAP_SYS_ADMIN"])["capabilities"]
    assert c == {n: ["CAP_SYS_ADMIN"] for n in ("bounding", "effective", "permitted")}


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"user": "root"}, "bad uid"),
    ({"user": "0:wheel"}, "bad gid"),
    ({"user": "-1"}, "bad uid"),
    ({"additional_gids": ["-3"]}, "additional-gids must be a positive number -3"),
    ({"env": ["NOEQUALS"]}, "missing '='"),
])
def test_bad_flags(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        execproc.build_process(CONFIG, ["id"], **kwargs)  # type: ignore[arg-type]


def test_args_are_required() -> None:
    with pytest.raises(InvalidArgument, match="exec args cannot be empty"):
        execproc.build_process(CONFIG, [])


def test_merge_env_keeps_first_place_and_last_value() -> None:
    assert execproc.merge_env(["A=1", "B=2", "A=3"], ["B=4", "C=5"]) == ["A=3", "B=4", "C=5"]


def test_sub_cgroup_paths(tmp_path: str) -> None:
    base = str(tmp_path)
    cpu = os.path.join(base, "cpu,cpuacct", "ctr")
    mem = os.path.join(base, "memory", "ctr")
    for d in (cpu, mem):
        os.makedirs(os.path.join(d, "sub"))
    paths = {"cpu": cpu, "cpuacct": cpu, "memory": mem}
    assert execproc.sub_cgroup_paths(paths, []) == paths
    # naming one of two co-mounted controllers moves both
    assert execproc.sub_cgroup_paths(paths, ["cpu:sub"]) == {
        "cpu": f"{cpu}/sub", "cpuacct": f"{cpu}/sub", "memory": mem}
    assert execproc.sub_cgroup_paths(paths, ["sub"]) == {
        "cpu": f"{cpu}/sub", "cpuacct": f"{cpu}/sub", "memory": f"{mem}/sub"}
    with pytest.raises(InvalidArgument, match="inside the container"):
        execproc.sub_cgroup_paths(paths, ["memory:../../x"])
    with pytest.raises(InvalidArgument, match="not in use"):
        execproc.sub_cgroup_paths(paths, ["pids:sub"])
    with pytest.raises(InvalidArgument, match="multiple times"):
        execproc.sub_cgroup_paths(paths, ["memory:sub", "memory:sub"])
    with pytest.raises(InvalidArgument, match="missing <controller>"):
        execproc.sub_cgroup_paths(paths, ["sub", "memory:sub"])
    with pytest.raises(NotFound):
        execproc.sub_cgroup_paths(paths, ["memory:nosuch"])


def test_child_errors_cross_the_pipe_with_their_class() -> None:
    err = execproc._decode_error(execproc._encode_error(
        InvalidArgument('exec: "x": executable file not found in $PATH')))
    assert type(err) is InvalidArgument
    assert str(err) == 'exec: "x": executable file not found in $PATH'
    oserr = execproc._decode_error(execproc._encode_error(
        PermissionError(1, "Operation not permitted", "/proc/self/attr/exec")))
    assert type(oserr) is SystemFailure
    assert str(oserr) == "Operation not permitted: /proc/self/attr/exec"
    assert not execproc._encode_error(ValueError("x")).startswith(execproc.JOINED)
