"""pallet.oci.spec: a config.json parsed into typed objects, or one error naming the field."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from pallet.errors import InvalidArgument
from pallet.oci import spec as ocispec
from pallet.oci.defaults import default_spec


def doc(**changes: Any) -> dict[str, Any]:
    d: dict[str, Any] = copy.deepcopy(default_spec())
    d.update(changes)
    return d


def parse(d: dict[str, Any]) -> ocispec.Spec:
    return ocispec.parse(json.dumps(d).encode())


def refused(d: dict[str, Any] | bytes | str) -> str:
    raw = d if isinstance(d, (bytes, str)) else json.dumps(d)
    with pytest.raises(InvalidArgument) as info:
        ocispec.parse(raw)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def test_default_spec_parses_into_typed_objects() -> None:
    s = parse(doc())
    assert s.oci_version.startswith("1.")
    assert s.process is not None and s.root is not None
    assert s.process.args == ["sh"] and s.process.cwd == "/"
    assert s.process.user.uid == 0 and s.process.user.gid == 0
    assert s.process.no_new_privileges is True
    assert s.process.capabilities is not None
    assert s.process.capabilities.get("effective") == [
        "CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    assert s.process.capabilities.get("inheritable") == []
    assert [(r.type, r.soft, r.hard) for r in s.process.rlimits] == [
        ("RLIMIT_NOFILE", 1024, 1024)]
    assert s.process.env_value("TERM") == "xterm" and s.process.env_value("NOPE") is None
    assert s.root.path == "rootfs" and s.root.readonly is True
    assert s.hostname == "pallet"
    assert [m.destination for m in s.mounts][:2] == ["/proc", "/dev"]
    assert [n.type for n in s.linux.namespaces] == ["pid", "network", "ipc", "uts", "mount"]
    assert s.linux.namespace("user") is None
    mnt = s.linux.namespace("mount")
    assert mnt is not None and mnt.path == ""
    assert "/proc/keys" in s.linux.masked_paths and "/proc/sys" in s.linux.readonly_paths
    assert s.linux.resources is not None
    assert s.hooks.get("prestart") == []


def test_raw_is_the_document() -> None:
    d = doc(annotations={"a": "b"})
    s = parse(d)
    assert s.raw == d and s.annotations == {"a": "b"}


def test_minimal_document() -> None:
    s = ocispec.parse(b'{"ociVersion": "1.0.2"}')
    assert s.process is None and s.root is None and s.mounts == []
    assert s.linux.namespaces == [] and s.linux.resources is None


@pytest.mark.parametrize("raw, needle", [
    (b"{not json", "invalid JSON"),
    (b'{"ociVersion": "1.0.0"} trailing', "invalid JSON"),
    (b"", "invalid JSON"),
    (b"\xff\xfe", "invalid JSON"),
    (b"[]", "must be a JSON object"),
    (b'"1.0"', "must be a JSON object"),
])
def test_malformed_documents(raw: bytes, needle: str) -> None:
    assert needle in refused(raw)


def test_oci_version() -> None:
    assert "ociVersion: missing" in refused({"process": {"args": ["x"]}})
    assert "unsupported version '2.0.0'" in refused(doc(ociVersion="2.0.0"))
    assert "ociVersion: must be a string" in refused(doc(ociVersion=1))


def with_process(**changes: Any) -> dict[str, Any]:
    d = doc()
    d["process"].update(changes)
    return d


def with_linux(**changes: Any) -> dict[str, Any]:
    d = doc()
    d["linux"].update(changes)
    return d


@pytest.mark.parametrize("change, needle", [
    ({"args": []}, "process.args: must not be empty"),
    ({"args": None}, "process.args: must not be empty"),
    ({"args": "sh"}, "process.args: must be an array of strings"),
    ({"args": ["sh", 1]}, "process.args: must be an array of strings"),
    ({"cwd": "relative/dir"}, "process.cwd: must be an absolute path"),
    ({"env": {"A": "b"}}, "process.env: must be an array of strings"),
    ({"terminal": "yes"}, "process.terminal: must be true or false"),
    ({"user": {"uid": -1, "gid": 0}}, "process.user.uid: must be >= 0"),
    ({"user": {"uid": "0", "gid": 0}}, "process.user.uid: must be an integer"),
    ({"user": {"uid": True, "gid": 0}}, "process.user.uid: must be an integer"),
    ({"user": "root"}, "process.user: must be an object"),
    ({"capabilities": {"bounding": ["CAP_NOPE"]}},
     "process.capabilities.bounding: unknown capability 'CAP_NOPE'"),
    ({"capabilities": {"effective": "CAP_KILL"}},
     "process.capabilities.effective: must be an array of strings"),
    ({"rlimits": [{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]},
     "process.rlimits[0].type: unknown rlimit 'RLIMIT_BOGUS'"),
    ({"rlimits": [{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 5}]},
     "soft limit 10 exceeds hard limit 5"),
    ({"rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1, "hard": 1},
                  {"type": "RLIMIT_NOFILE", "soft": 2, "hard": 2}]},
     "process.rlimits: duplicate RLIMIT_NOFILE"),
    ({"oomScoreAdj": 1001}, "process.oomScoreAdj: must be between -1000 and 1000"),
    ({"ioPriority": {"class": "IOPRIO_CLASS_NOPE"}}, "unknown class 'IOPRIO_CLASS_NOPE'"),
    ({"ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": 8}}, "must be between 0 and 7"),
    ({"scheduler": {"policy": "SCHED_NOPE"}}, "unknown policy 'SCHED_NOPE'"),
    ({"scheduler": {"policy": "SCHED_OTHER", "flags": ["X"]}}, "unknown flag 'X'"),
    ({"commandLine": "cmd.exe"}, "process.commandLine: only meaningful on Windows"),
    ({"consoleSize": {"height": -1, "width": 80}}, "process.consoleSize.height: must be >= 0"),
])
def test_process_errors_name_the_field(change: dict[str, Any], needle: str) -> None:
    assert needle in refused(with_process(**change))


def test_process_must_be_an_object() -> None:
    assert "process: must be an object" in refused(doc(process=["sh"]))


@pytest.mark.parametrize("change, needle", [
    ({"namespaces": [{"type": "pid"}, {"type": "bogus"}]},
     "linux.namespaces[1].type: unknown namespace 'bogus'"),
    ({"namespaces": [{"type": "pid"}, {"type": "pid"}]},
     "linux.namespaces: duplicate namespace 'pid'"),
    ({"namespaces": [{"type": "user"}]},
     "a new user namespace needs linux.uidMappings and gidMappings"),
    ({"uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
      "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]},
     "linux.uidMappings: given without a user namespace"),
    ({"namespaces": [{"type": "user"}],
      "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 0}],
      "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]},
     "linux.uidMappings[0].size: must be >= 1"),
    ({"timeOffsets": {"monotonic": {"secs": 1}}}, "linux.timeOffsets: needs a new time namespace"),
    ({"namespaces": [{"type": "time"}], "timeOffsets": {"realtime": {"secs": 1}}},
     "linux.timeOffsets: unknown clock 'realtime'"),
    ({"devices": [{"path": "dev/x", "type": "c", "major": 1, "minor": 3}]},
     "linux.devices[0].path: must be an absolute path inside the container"),
    ({"devices": [{"path": "/dev/../../x", "type": "c", "major": 1, "minor": 3}]},
     "linux.devices[0].path: must be an absolute path inside the container"),
    ({"devices": [{"path": "/dev/x", "type": "z", "major": 1, "minor": 3}]},
     "linux.devices[0].type: must be one of c, b, u, p"),
    ({"devices": [{"path": "/dev/x", "type": "c"}]},
     "linux.devices[0]: major and minor are required for type c"),
    ({"rootfsPropagation": "sideways"}, "linux.rootfsPropagation: unknown propagation 'sideways'"),
    ({"sysctl": {"net.ipv4.ip_forward": 1}}, "linux.sysctl.net.ipv4.ip_forward: must be a string"),
    ({"maskedPaths": ["proc/keys"]}, "bad path 'proc/keys'"),
    ({"readonlyPaths": ["/proc/../../etc"]}, "bad path '/proc/../../etc'"),
    ({"personality": {"domain": "LINUX64"}}, "linux.personality.domain: unknown domain 'LINUX64'"),
    ({"personality": {"domain": "LINUX", "flags": ["SHORT_INODE"]}},
     "linux.personality.flags: no flags are supported"),
    ({"seccomp": ["SCMP_ACT_ALLOW"]}, "linux.seccomp: must be an object"),
    ({"cgroupsPath": 7}, "linux.cgroupsPath: must be a string"),
])
def test_linux_errors_name_the_field(change: dict[str, Any], needle: str) -> None:
    assert needle in refused(with_linux(**change))


def test_user_namespace_with_mappings() -> None:
    s = parse(with_linux(
        namespaces=[{"type": "user"}, {"type": "mount"}, {"type": "uts"}],
        uidMappings=[{"containerID": 0, "hostID": 100000, "size": 65536}],
        gidMappings=[{"containerID": 0, "hostID": 100000, "size": 65536}],
    ))
    assert [(m.container_id, m.host_id, m.size) for m in s.linux.uid_mappings] == [
        (0, 100000, 65536)]
    # joining an existing user namespace needs no mappings
    s = parse(with_linux(namespaces=[{"type": "user", "path": "/proc/1/ns/user"},
                                     {"type": "uts"}]))
    user = s.linux.namespace("user")
    assert user is not None and user.path == "/proc/1/ns/user"


@pytest.mark.parametrize("mount, needle", [
    ({"destination": "../../etc", "type": "bind", "source": "/etc"},
     "escapes the container's root"),
    ({"destination": "/a/../../b", "type": "tmpfs"}, "escapes the container's root"),
    ({"destination": "", "type": "tmpfs"}, "mounts[7].destination: must not be empty"),
    ({"type": "tmpfs"}, "mounts[7].destination: must not be empty"),
    ({"destination": "/x", "options": "ro"}, "mounts[7].options: must be an array of strings"),
    ({"destination": "/x", "type": "bind", "source": "/tmp",
      "uidMappings": [{"containerID": 0, "hostID": 1, "size": 1}]},
     "mounts[7]: uidMappings and gidMappings must be given together"),
])
def test_mount_errors(mount: dict[str, Any], needle: str) -> None:
    d = doc()
    d["mounts"].append(mount)
    assert len(d["mounts"]) == 8
    assert needle in refused(d)


def test_relative_mount_destination_is_from_the_root() -> None:
    d = doc()
    d["mounts"].append({"destination": "data/x", "type": "tmpfs", "source": "tmpfs"})
    assert parse(d).mounts[-1].destination == "/data/x"


def test_escapes() -> None:
    assert ocispec.escapes("../x")
    assert ocispec.escapes("/a/../../x")
    assert not ocispec.escapes("/a/../b")
    assert not ocispec.escapes("/a/./b/..")
    assert not ocispec.escapes("/")


@pytest.mark.parametrize("hooks, needle", [
    ({"prestart": [{"path": "relative/hook"}]}, "hooks.prestart[0].path: must be an absolute path"),
    ({"poststop": [{"path": "/bin/true", "timeout": 0}]},
     "hooks.poststop[0].timeout: must be greater than zero"),
    ({"poststart": [{"path": "/bin/true", "args": "x"}]},
     "hooks.poststart[0].args: must be an array of strings"),
    ({"createRuntime": {"path": "/bin/true"}}, "hooks.createRuntime: must be an array"),
])
def test_hook_errors(hooks: dict[str, Any], needle: str) -> None:
    assert needle in refused(doc(hooks=hooks))


def test_hooks_parse_in_kind_order() -> None:
    s = parse(doc(hooks={
        "prestart": [{"path": "/a", "args": ["a", "1"], "env": ["X=1"], "timeout": 5}],
        "poststop": [{"path": "/b"}, {"path": "/c"}],
    }))
    (pre,) = s.hooks.get("prestart")
    assert (pre.path, pre.args, pre.env, pre.timeout) == ("/a", ["a", "1"], ["X=1"], 5)
    assert [h.path for h in s.hooks.get("poststop")] == ["/b", "/c"]
    assert s.hooks.get("startContainer") == []


def test_root_errors() -> None:
    assert "root.path: must not be empty" in refused(doc(root={"path": ""}))
    assert "root.readonly: must be true or false" in refused(
        doc(root={"path": "rootfs", "readonly": "no"}))


def test_hostname_needs_a_uts_namespace() -> None:
    d = with_linux(namespaces=[{"type": "pid"}, {"type": "mount"}])
    assert "hostname: setting it needs a new uts namespace" in refused(d)


def test_annotations_must_be_strings() -> None:
    assert "annotations.a: must be a string" in refused(doc(annotations={"a": 1}))
